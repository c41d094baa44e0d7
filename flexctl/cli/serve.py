"""``flexctl serve``: bring the line up with one batch loaded and serve it over OPC UA.

The batch is planned and checked as ``flexctl run`` does (bad input: every
problem, exit 2, nothing started); then the line comes up, the batch is created
in the record store, and the supervisor listens (``serving: opc.tcp://...``).
Nothing runs until a person calls Start (``flexctl console``); prompts wait
for a person's signed answer over OPC UA (the simulation user never signs
here). Process time is wall time x ``--speed`` (default 1), so a person can
follow it.

People log in with the users of the record store (``flexctl users add``); with
no enabled user nobody could start the batch, so nothing starts (exit 2).

Exit status: 0 the batch is Complete; 1 it ended Stopped or Aborted; 2 bad
input; 143 SIGTERM (the server stops, the batch's workers are cancelled).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flexctl.cli.run import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    Plan,
    _finish_record,
    _journal_origins,
    _make_clock,
    _open_store,
    _plan,
    _print_problems,
    _start_record,
    _user,
    add_batch_arguments,
    make_executor,
)

if TYPE_CHECKING:
    from flexctl.cli.progress import Output
    from flexctl.northbound.server import SupervisorServer
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.supervisor.batch_state import BatchState

#: The standard OPC UA port, on loopback: a console on the same machine by default.
DEFAULT_ENDPOINT: Final = "opc.tcp://127.0.0.1:4840/flexctl"
EXIT_SIGTERM: Final = 143
#: Wall seconds between two refreshes of link states and runtime (a display rate).
REFRESH_S: Final = 1.0
DEFAULT_LINGER: Final = 3.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve one batch over OPC UA and wait for a person to start it (flexctl console)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_batch_arguments(parser, speed_help="(default 1)", speed_default=1.0)
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"where to listen (default {DEFAULT_ENDPOINT}; port 0: a free one)",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="the server's certificate folder (default: 'pki' beside the store; made if missing)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=DEFAULT_LINGER,
        metavar="SECONDS",
        help=f"wall seconds to go on serving once the batch has ended, so consoles read its "
        f"final state (default {DEFAULT_LINGER:g})",
    )
    parser.add_argument(
        "--insecure-loopback",
        action="store_true",
        help="also offer an endpoint without message security (loopback endpoints only)",
    )
    # What flexctl run's planning reads and serve fixes: in-process twins, people sign.
    parser.set_defaults(handler=serve, twins=None, endpoints=None, auto_sign=False)


async def serve(args: argparse.Namespace) -> int:
    """``flexctl serve`` itself: the exit status."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.record.lock import StoreBusy, supervisor_lock

    planned = _plan(args, people_answer=True)
    if not isinstance(planned, Plan):
        _print_problems(f"flexctl serve {args.procedure}", planned)
        return EXIT_BAD_INPUT
    pki = args.pki if args.pki is not None else planned.db.parent / "pki"
    try:
        with supervisor_lock(planned.db):
            store = _open_store(planned)
            if not any(not user.disabled for user in store.users()):
                store.close()
                print(
                    f"flexctl serve: no enabled user in {planned.db}: nobody could log in to "
                    f"start the batch; add one first: flexctl users add USER --name "
                    f"'Printed Name' --role qa --db {planned.db} (the first user holds qa; "
                    "then others --by that user)",
                    file=sys.stderr,
                )
                return EXIT_BAD_INPUT
            return await _serve(planned, store, args, pki)
    except (StoreBusy, FileNotFoundError) as exc:
        raise ConfigurationError(Where(str(planned.db)), str(exc)) from None


async def _serve(plan: Plan, store: SqliteStore, args: argparse.Namespace, pki: Path) -> int:
    """Bring the line up, serve the batch until a run started over OPC UA ends."""
    from flexctl.cli.progress import ObservedJournal, Output, Progress
    from flexctl.line_runtime import LineRuntime
    from flexctl.northbound import NorthboundPrompter
    from flexctl.northbound.serve import serve_batch
    from flexctl.record.historian import Historian
    from flexctl.record.signing import Signatures
    from flexctl.supervisor.batch_state import BatchState
    from flexctl.supervisor.executor import Batch

    actor = _user()
    stream = Output()
    clock = _make_clock(plan)
    journal = ObservedJournal()
    journal.subscribe(Progress(plan.procedure, stream))
    batch = Batch(plan.batch_id, plan.procedure, plan.values)
    historian = Historian(store)
    task = asyncio.current_task()
    assert task is not None
    sigterm = _Sigterm(task)
    sigterm.install()
    _header(plan, stream, actor)
    state: BatchState | None = None
    try:
        async with LineRuntime(plan.line, clock, seed=plan.seed) as runtime:
            journal.inner = _start_record(
                plan, store, runtime, clock=clock, actor=actor, out=stream
            )
            _journal_origins(plan, journal, clock, runtime.describe())
            prompter = NorthboundPrompter(Signatures(store, clock))
            executor = make_executor(
                plan, batch, runtime, journal=journal, historian=historian, prompter=prompter
            )

            def ready(server: SupervisorServer) -> None:
                stream.line(f"serving: {server.endpoint}")
                stream.line("waiting for a person to start the batch (flexctl console: start)")

            state = await serve_batch(
                executor,
                store,
                line=runtime,
                certificate_dir=pki,
                endpoint=args.endpoint,
                allow_insecure_loopback=args.insecure_loopback,
                refresh_s=REFRESH_S,
                linger_s=args.linger,
                ready=ready,
            )
    except asyncio.CancelledError:
        if not sigterm.received or task.uncancel() > 0:
            raise
    finally:
        sigterm.remove()
        _finish_record(plan, journal, historian, store, stream)
    if sigterm.received:
        print(
            f"flexctl serve: SIGTERM; batch {plan.batch_id} is {batch.state.value}",
            file=sys.stderr,
        )
        return EXIT_SIGTERM
    stream.line(f"batch {plan.batch_id} ended {state.value if state else batch.state.value}")
    return EXIT_OK if state is BatchState.Complete else EXIT_FAILED


def _header(plan: Plan, out: Output, actor: str) -> None:
    p = plan.procedure
    out.line(f"flexctl serve: {p.name} {p.version}, batch {plan.batch_id}, by {actor}")
    out.line(
        f"line {plan.line.name}: {len(plan.line.devices)} devices, seed {plan.seed}; "
        f"clock scaled, wall time x {plan.speed:g}; prompts are signed by people over OPC UA"
    )


class _Sigterm:
    """SIGTERM (a service manager stopping serve): cancel the task, close the record, exit 143."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.received = False
        self._installed = False

    def install(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_signal)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
            return
        self._installed = True

    def remove(self) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            self._installed = False

    def _on_signal(self) -> None:
        self.received = True
        self.task.cancel()
