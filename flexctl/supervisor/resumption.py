"""Where a batch stood when its supervisor died, read back from its journal.

The executor journals before it acts (a COMMAND entry before the command is
sent, a STEP_START before the step runs) and after (COMMAND_RESULT, STEP_END),
so the journal alone tells what finished, what was under way, and which
command may or may not have reached its device. :func:`replay` reads that;
:meth:`Executor.run` with ``resume=`` continues from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flexctl.procedure.model import Procedure
from flexctl.profile import Value
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.supervisor.batch_state import BatchState
from flexctl.supervisor.interlocks import parse_alarms


@dataclass(frozen=True)
class SentCommand:
    """A step's device command journaled as sent, with no result journaled."""

    device: str
    method: str
    args: Mapping[str, Value]


@dataclass(frozen=True)
class Resumption:
    """A batch as its journal left it."""

    state: BatchState
    last_time: float
    #: step id -> the result fields of its latest ``done`` end
    results: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    attempts: Mapping[str, int] = field(default_factory=dict)
    #: the step started and not ended, if any, and the process time it started (its
    #: first start since it last ended: a crash does not end it, so a wait keeps its deadline)
    interrupted: str | None = None
    interrupted_at: float | None = None
    #: that step's command journaled as sent without a result
    sent: SentCommand | None = None
    #: device -> its alarms as last journaled
    alarms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def done(self) -> frozenset[str]:
        return frozenset(self.results)


class NothingToResume(ValueError):
    """The journal holds no started batch."""


def replay(procedure: Procedure, entries: Sequence[JournalEntry]) -> Resumption:
    """Read ``entries`` (one batch's journal, oldest first) into a :class:`Resumption`."""
    state: BatchState | None = None
    results: dict[str, dict[str, Value]] = {}
    attempts: dict[str, int] = {}
    open_step: str | None = None
    open_at: float | None = None
    sent: SentCommand | None = None
    alarms: dict[str, tuple[str, ...]] = {}
    steps = {s.id for s in procedure.steps()}
    last = 0.0
    for entry in entries:
        last = max(last, entry.process_time)
        p = entry.payload
        if entry.kind is EntryKind.BATCH_STATE and "new" in p:
            state = BatchState(str(p["new"]))
        elif entry.kind is EntryKind.STEP_START and entry.step in steps:
            if entry.step != open_step:  # not the same step started again after a crash
                open_at = entry.process_time
            open_step, sent = entry.step, None
            attempts[entry.step] = max(attempts.get(entry.step, 0), _int(p.get("attempt")))
        elif entry.kind is EntryKind.STEP_END and entry.step in steps:
            if p.get("result") == "done":
                fields = p.get("fields")
                results[entry.step] = dict(fields) if isinstance(fields, dict) else {}  # type: ignore[arg-type]
            if entry.step == open_step:
                open_step, open_at, sent = None, None, None
        elif entry.kind is EntryKind.COMMAND and entry.step == open_step and "method" in p:
            args = p.get("args")
            sent = SentCommand(
                entry.device,
                str(p["method"]),
                dict(args) if isinstance(args, dict) else {},  # type: ignore[arg-type]
            )
        elif entry.kind is EntryKind.COMMAND_RESULT and entry.step == open_step:
            sent = None  # answered (a result or an error): its outcome is in the journal
        elif entry.kind is EntryKind.ALARM and entry.device:
            alarms[entry.device] = parse_alarms(",".join(str(a) for a in _list(p.get("active"))))
    if state is None or state is BatchState.Idle:
        raise NothingToResume("the journal holds no started batch")
    return Resumption(
        state=state,
        last_time=last,
        results=results,
        attempts=attempts,
        interrupted=open_step,
        interrupted_at=open_at,
        sent=sent,
        alarms=alarms,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
