"""``flexctl resume BATCH``: go on with a batch whose supervisor died, from its journal.

The batch is read back from the record store: the procedure and line as they
were run (the stored copies; the files on disk are used only if unchanged),
its parameters and seed, and its journal, which says what finished and what
was under way (:mod:`flexctl.supervisor.resumption`). It is checked like a new
run (a procedure that fails validation never starts), then continues on the
same line. Process time goes on from the journal's last entry.

``flexctl run`` does the same by itself when the store holds an unfinished
batch of the procedure on the same line, if its devices outlived the
supervisor: hardware, or twins in their own process (``--twins external``).
Twins that ran in the supervisor's process ended with it, so such a batch
cannot go on; the run says so and starts a new batch.

Exit status as for ``flexctl run``; 2 also for an unknown batch or one that
has already ended.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flexctl.cli.run import (
    DEFAULT_DB,
    DEFAULT_MONITOR,
    EXIT_BAD_INPUT,
    TWIN_CHOICES,
    Plan,
    _period,
    _plan,
    _print_problems,
    run_plan,
)

if TYPE_CHECKING:
    from flexctl.errors import ConfigurationError
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import BatchInfo


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "resume",
        help="go on with a batch whose supervisor died, from its journal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("batch", help="the batch id")
    parser.add_argument(
        "--db", type=Path, default=Path(DEFAULT_DB), help=f"the record store (default {DEFAULT_DB})"
    )
    parser.add_argument("--twins", choices=TWIN_CHOICES, default=None)
    parser.add_argument("--endpoints", type=Path, default=None)
    parser.add_argument("--auto-sign", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--monitor-period", type=_period, default=_period(DEFAULT_MONITOR), metavar="DURATION"
    )
    parser.set_defaults(handler=resume)


async def resume(args: argparse.Namespace) -> int:
    from flexctl.errors import ConfigurationError, Where
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    if not args.db.exists():
        raise ConfigurationError(Where(str(args.db)), "no such record store")
    try:
        with SqliteStore(args.db, create=False) as store:
            info = store.batch(args.batch)
            planned = _resume_plan(store, info, args)
    except RecordError as exc:
        raise ConfigurationError(Where(str(args.db)), str(exc)) from None
    if isinstance(planned, list):
        _print_problems(f"flexctl resume {args.batch}", planned)
        return EXIT_BAD_INPUT
    outcome = await run_plan(planned)
    return outcome.exit_code


def unfinished_plan(
    plan: Plan, args: argparse.Namespace, *, out: TextIO | None = None
) -> Plan | list[ConfigurationError] | None:
    """For ``flexctl run``: the plan that resumes the store's unfinished batch, if one should.

    An unfinished batch of the same procedure on the same line is resumed when
    no ``--batch-id`` was given or it names that batch, and its devices outlived
    the supervisor; None: start the new batch as planned.
    """
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    if not plan.db.exists():
        return None
    try:
        with SqliteStore(plan.db, create=False) as store:
            for info in reversed(store.batches(line=plan.line.name)):
                if info.procedure_name != plan.procedure.name or not _unfinished(store, info):
                    continue
                if args.batch_id is not None and args.batch_id != info.batch_id:
                    continue
                if plan.twins != "external" and not plan.hardware:
                    print(
                        f"flexctl run: batch {info.batch_id} is unfinished, but its twins ran "
                        "in its supervisor's process and ended with it: it cannot go on "
                        "(run with --twins external to keep twins across a restart)",
                        file=sys.stderr,
                    )
                    return None
                print(f"flexctl run: resuming unfinished batch {info.batch_id}", file=out)
                return _resume_plan(store, info, args)
    except RecordError:
        return None  # not a store: the run itself reports it
    return None


def _unfinished(store: SqliteStore, info: BatchInfo) -> bool:
    from flexctl.record.journal import EntryKind
    from flexctl.supervisor.batch_state import FINAL, BatchState

    states = [
        e.entry.payload.get("new")
        for e in store.journal_entries(info.batch_id)
        if e.entry.kind is EntryKind.BATCH_STATE
    ]
    return bool(states) and BatchState(str(states[-1])) not in FINAL


def _resume_plan(
    store: SqliteStore, info: BatchInfo, args: argparse.Namespace
) -> Plan | list[ConfigurationError]:
    """The batch's plan, checked again as a run's, with its journal to go on from."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.procedure.loader import parse_procedure
    from flexctl.procedure.model import ParameterType
    from flexctl.supervisor.resumption import NothingToResume, replay

    entries = store.journal(info.batch_id).entries()
    stored = parse_procedure(info.procedure_text, info.procedure_path).procedure
    durations = {
        name
        for name, param in (stored.parameters.items() if stored is not None else ())
        if param.type is ParameterType.DURATION
    }
    ns = argparse.Namespace(
        procedure=_as_run(info.procedure_path, info.procedure_text, "procedure.yaml"),
        line=str(_as_run(info.line_path, info.line_text, "line.yaml")),
        param=[
            _param_text(name, value, duration=name in durations)
            for name, value in info.parameters.items()
        ],
        seed=info.seed,
        speed=getattr(args, "speed", None),
        twins=args.twins,
        endpoints=args.endpoints,
        auto_sign=args.auto_sign,
        batch_id=info.batch_id,
        monitor_period=args.monitor_period,
        db=Path(store.location),
    )
    planned = _plan(ns)
    if not isinstance(planned, Plan):
        return planned
    try:
        resumption = replay(planned.procedure, entries)
    except NothingToResume as exc:
        return [ConfigurationError(Where(info.batch_id), str(exc))]
    from flexctl.supervisor.batch_state import FINAL

    if resumption.state in FINAL:
        return [
            ConfigurationError(
                Where(info.batch_id), f"the batch has ended ({resumption.state.value})"
            )
        ]
    first = entries[0]
    epoch = first.utc - timedelta(seconds=first.process_time)
    return dataclasses.replace(
        planned,
        resume=resumption,
        clock_start=_process_time_now(planned, epoch, resumption.last_time),
        epoch=epoch,
    )


def _process_time_now(plan: Plan, epoch: datetime, last: float) -> float:
    """Where process time stands now: the time the supervisor was down has passed too.

    On wall time (hardware, or scaled twins in their own process) the devices
    went on while the supervisor was down, so process time counts from the
    batch's epoch on the wall clock (a scaled clock's epoch is the wall time of
    its process time 0). A virtual clock has no wall time: it goes on from the
    journal's last entry.
    """
    if plan.clock == "virtual":
        return last
    factor = plan.speed if plan.clock == "scaled" else 1.0
    return max(last, (datetime.now(UTC) - epoch).total_seconds() * factor)


def _as_run(path: str, text: str, name: str) -> Path:
    """The file as it was run: the one on disk if unchanged, else the stored copy."""
    on_disk = Path(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if on_disk.is_file() and hashlib.sha256(on_disk.read_bytes()).hexdigest() == digest:
        return on_disk
    copy = Path(tempfile.mkdtemp(prefix="flexctl-resume-")) / name
    copy.write_text(text, encoding="utf-8")
    return copy


def _param_text(name: str, value: object, *, duration: bool) -> str:
    """A stored parameter value as ``--param`` text (durations were stored in seconds)."""
    if duration:
        return f"{name}={value!r} s"
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, float) and math.isfinite(value):
        return f"{name}={value!r}"
    return f"{name}={value}"
