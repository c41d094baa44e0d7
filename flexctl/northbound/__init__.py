"""The supervisor served over OPC UA (northbound): the line, the batch and its commands.

One of the edges of the house that import asyncua. :func:`serve_batch` is the
entry point for a CLI; :class:`SupervisorServer` the server itself;
:class:`NorthboundPrompter` the prompter whose prompts people answer over OPC UA
with an e-signature. Who may call what is the table in
:mod:`flexctl.northbound.roles`.
"""

from flexctl.northbound.prompter import NorthboundPrompter
from flexctl.northbound.serve import serve_batch
from flexctl.northbound.server import DEFAULT_ENDPOINT, SupervisorServer

__all__ = ["DEFAULT_ENDPOINT", "NorthboundPrompter", "SupervisorServer", "serve_batch"]
