"""``serve_batch``: the entry point a CLI command (``flexctl serve``) calls.

A sketch of the caller::

    signatures = Signatures(store, clock)
    prompter = NorthboundPrompter(signatures)
    executor = Executor(batch, runtime.drivers, clock=clock, journal=journal,
                        prompter=prompter, historian=historian)
    state = await serve_batch(executor, store, line=runtime,
                              certificate_dir=Path("pki"), ready=print_endpoint)

The batch is started by a person calling Start over OPC UA; ``serve_batch``
returns its final state once that run has ended, and stops serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from flexctl.northbound.server import DEFAULT_ENDPOINT, LineSource, SupervisorServer
from flexctl.record.users import UserStore
from flexctl.supervisor.alarms import AlarmMonitor
from flexctl.supervisor.batch_state import BatchState
from flexctl.supervisor.executor import Executor


async def serve_batch(
    executor: Executor,
    store: UserStore,
    *,
    line: LineSource,
    certificate_dir: Path,
    endpoint: str = DEFAULT_ENDPOINT,
    alarms: AlarmMonitor | None = None,
    allow_insecure_loopback: bool = False,
    trusted_clients: Path | None = None,
    refresh_s: float = 1.0,
    linger_s: float = 0.0,
    ready: Callable[[SupervisorServer], object] | None = None,
) -> BatchState:
    """Serve ``executor``'s batch over OPC UA until a run started by a client ends.

    Args:
        executor: the batch's executor; give it a
            :class:`~flexctl.northbound.prompter.NorthboundPrompter` so that
            its prompts are answered over OPC UA (AnswerPrompt).
        store: the users who log in and sign, and the audit trail.
        line: the running line (or its description) whose devices are shown.
        certificate_dir: where the server's certificate and key are kept.
        endpoint: where to listen (``opc.tcp://host:port/path``; port 0: a free one).
        alarms: the alarms operators acknowledge and shelve here.
        allow_insecure_loopback: also serve without message security (loopback only).
        trusted_clients: a folder of the only client certificates accepted.
        refresh_s: wall seconds between two refreshes of link states and runtime
            (a display rate, not process logic: no device is asked anything).
        linger_s: wall seconds to go on serving after the run ended, so a console
            waiting for the final state sees it before its session drops.
        ready: called with the server once it listens (its ``endpoint`` names the port).

    Returns:
        The batch's final state (Complete, Stopped or Aborted).
    """
    if not refresh_s > 0:
        raise ValueError(f"refresh_s must be > 0, got {refresh_s!r}")
    server = SupervisorServer(
        line,
        executor,
        store,
        certificate_dir=certificate_dir,
        endpoint=endpoint,
        alarms=alarms,
        allow_insecure_loopback=allow_insecure_loopback,
        trusted_clients=trusted_clients,
    )
    async with server:
        if ready is not None:
            ready(server)
        refresher = asyncio.get_running_loop().create_task(
            _refresh(server, refresh_s), name="flexctl-northbound-refresh"
        )
        try:
            state = await server.runner.wait()
            await server.linger(linger_s)
            return state
        finally:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)


async def _refresh(server: SupervisorServer, every: float) -> None:
    while True:
        await asyncio.sleep(every)  # wall time: how often a console's figures move
        server.refresh()
