"""What a twin model offers to the generic protocol servers.

A model is protocol-free physics: it knows tags (named values) and methods, and
computes its state lazily from the clock when a tag is read or written. The
servers in :mod:`simulators.servers` put any model behind a real wire protocol,
using the same profile the driver uses, so profile signal names are tag names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from flexctl.errors import FlexctlError
from flexctl.profile import Value


class UnknownTagError(FlexctlError, LookupError):
    """The model has no such tag or method (a server answers: unknown address)."""


class TwinModel(Protocol):
    """A simulated device as the servers see it.

    ``write`` and ``call`` raise :class:`flexctl.errors.OutOfRangeError` for a
    value the device would refuse and :class:`flexctl.errors.DeviceBusyError`
    when it is busy; the servers answer those with the protocol's own error.
    """

    def tags(self) -> frozenset[str]:
        """Every tag name the model can read."""
        ...

    def methods(self) -> frozenset[str]:
        """Every method name the model can run."""
        ...

    def read(self, tag: str) -> Value: ...

    def write(self, tag: str, value: Value) -> None: ...

    def call(self, method: str, args: Sequence[Value]) -> list[Value]: ...
