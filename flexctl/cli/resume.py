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
    from flexctl.record.lock import supervisor_lock
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    if not args.db.exists():
        raise ConfigurationError(Where(str(args.db)), "no such record store")
    try:
        with supervisor_lock(args.db):
            with SqliteStore(args.db, create=False) as store:
                info = store.batch(args.batch)
                planned = _resume_plan(store, info, args)
            if isinstance(planned, list):
                _print_problems(f"flexctl resume {args.batch}", planned)
                return EXIT_BAD_INPUT
            outcome = await run_plan(planned)
            return outcome.exit_code
    except RecordError as exc:
        raise ConfigurationError(Where(str(args.db)), str(exc)) from None


def unfinished_plan(
    plan: Plan, args: argparse.Namespace, *, out: TextIO | None = None
) -> Plan | list[ConfigurationError] | None:
    """For ``flexctl run``: the plan that resumes the store's unfinished batch, if one should.

    The newest unfinished batch on the plan's line whose devices outlived its
    supervisor is resumed when the run names no other batch and asks for the
    same procedure file and parameters; asked for anything else, the run is
    refused (exit 2): the line is busy with that batch. None: start the new
    batch as planned (no such batch; or only batches whose in-process twins
    ended with their supervisor, which cannot go on: said on stderr).
    """
    from flexctl.errors import ConfigurationError, Where
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    if not plan.db.exists():
        return None
    try:
        with SqliteStore(plan.db, create=False) as store:
            for info in reversed(store.batches(line=plan.line.name)):
                if not _unfinished(store, info):
                    continue
                if _in_process_twins(info):
                    print(
                        f"flexctl run: batch {info.batch_id} is unfinished, but its twins ran "
                        "in its supervisor's process and ended with it: it cannot go on",
                        file=sys.stderr,
                    )
                    continue
                why = _differs(plan, args, info)
                if why:
                    return [
                        ConfigurationError(
                            Where(str(plan.db)),
                            f"line {plan.line.name} is busy with unfinished batch "
                            f"{info.batch_id} ({why}): go on with it (flexctl resume "
                            f"{info.batch_id}) until it ends",
                        )
                    ]
                print(f"flexctl run: resuming unfinished batch {info.batch_id}", file=out)
                return _resume_plan(store, info, args)
    except RecordError:
        return None  # not a store: the run itself reports it
    return None


def _in_process_twins(info: BatchInfo) -> bool:
    """Whether any device of the batch was a twin in its supervisor's own process."""
    return any(device.get("origin") == "twin" for device in info.devices.values())


def _differs(plan: Plan, args: argparse.Namespace, info: BatchInfo) -> str:
    """What the run asks for that the unfinished batch is not ("" if nothing)."""
    if args.batch_id is not None and args.batch_id != info.batch_id:
        return f"this run asks for batch {args.batch_id}"
    if plan.procedure.name != info.procedure_name:
        return f"it runs procedure {info.procedure_name}"
    on_disk = Path(plan.procedure.file).read_bytes()
    if hashlib.sha256(on_disk).hexdigest() != info.procedure_sha256:
        return "it runs another version of the procedure file"
    given = {p.partition("=")[0].strip() for p in args.param}
    changed = sorted(name for name in given if plan.values.get(name) != info.parameters.get(name))
    return f"its parameters {', '.join(changed)} differ" if changed else ""


def _unfinished(store: SqliteStore, info: BatchInfo) -> bool:
    """Started and not ended (Idle, a never-started or reset batch, is not unfinished)."""
    from flexctl.record.journal import EntryKind
    from flexctl.supervisor.batch_state import FINAL, BatchState

    states = [
        e.entry.payload["new"]
        for e in store.journal_entries(info.batch_id)
        if e.entry.kind is EntryKind.BATCH_STATE and "new" in e.entry.payload
    ]
    if not states:
        return False
    last = BatchState(str(states[-1]))
    return last not in FINAL and last is not BatchState.Idle


def _resume_plan(
    store: SqliteStore, info: BatchInfo, args: argparse.Namespace
) -> Plan | list[ConfigurationError]:
    """The batch's plan, checked again as a run's, with its journal to go on from."""
    from flexctl.errors import ConfigurationError, Where
    from flexctl.procedure.loader import parse_procedure
    from flexctl.procedure.model import ParameterType
    from flexctl.supervisor.resumption import NothingToResume, replay

    if _in_process_twins(info):
        return [
            ConfigurationError(
                Where(info.batch_id),
                "its twins ran in its supervisor's process and ended with it: the devices' "
                "state is gone, so the batch cannot go on",
            )
        ]
    external = any(d.get("origin") == "external twin" for d in info.devices.values())
    # Stored copies of changed files go beside the store, one folder per batch (reused).
    copies = Path(store.location).parent / ".flexctl-resume" / info.batch_id
    entries = store.journal(info.batch_id).entries()
    stored = parse_procedure(info.procedure_text, info.procedure_path).procedure
    durations = {
        name
        for name, param in (stored.parameters.items() if stored is not None else ())
        if param.type is ParameterType.DURATION
    }
    ns = argparse.Namespace(
        procedure=_as_run(info.procedure_path, info.procedure_text, copies / "procedure.yaml"),
        line=str(_as_run(info.line_path, info.line_text, copies / "line.yaml")),
        param=[
            _param_text(name, value, duration=name in durations)
            for name, value in info.parameters.items()
        ],
        seed=info.seed,
        speed=getattr(args, "speed", None),
        twins=args.twins or ("external" if external else None),
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


def _as_run(path: str, text: str, copy: Path) -> Path:
    """The file as it was run: the one on disk if unchanged, else the stored copy at ``copy``."""
    on_disk = Path(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if on_disk.is_file() and hashlib.sha256(on_disk.read_bytes()).hexdigest() == digest:
        return on_disk
    copy.parent.mkdir(parents=True, exist_ok=True)
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
