"""Where a batch stood when its supervisor died, read back from its journal.

The executor journals before it acts (a COMMAND entry before the command is
sent, a STEP_START before the step runs) and after (COMMAND_RESULT, STEP_END),
so the journal alone tells what finished, what was under way, and which
command may or may not have reached its device. :func:`replay` reads that;
:meth:`Executor.run` with ``resume=`` continues from it.
"""

from __future__ import annotations

import json
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
class Unknown:
    """A step command whose reply was lost: it may have acted; a person decides."""

    unit_procedure: str
    step: str
    device: str
    method: str
    error: str


#: Errors of a command whose reply was lost (it may have acted).
LOST_ERRORS = frozenset({"NotConnectedError", "CommunicationTimeout"})


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
    #: the interrupted step's result, if it was journaled before the crash (a command's
    #: result, a signature, a recorded value): the step is done, nothing is sent again
    finished: Mapping[str, Value] | None = None
    #: device -> its alarms as last journaled
    alarms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: a command of unknown outcome no person has decided on yet
    unknown: Unknown | None = None
    #: a step a person declared done (its command took effect), not yet ended
    done_by_decision: str | None = None
    #: the batch entered Holding and the hold safe states did not all run
    hold_owed: bool = False
    #: devices whose hold safe state failed since the batch last entered Holding
    unsafe: frozenset[str] = frozenset()

    @property
    def done(self) -> frozenset[str]:
        return frozenset(self.results)


class NothingToResume(ValueError):
    """The journal holds no started batch."""


def replay(procedure: Procedure, entries: Sequence[JournalEntry]) -> Resumption:
    """Read ``entries`` (one batch's journal, oldest first) into a :class:`Resumption`."""
    reader = _Reader({s.id: s.kind for s in procedure.steps()})
    for entry in entries:
        reader.read(entry)
    if reader.state is None or reader.state is BatchState.Idle:
        raise NothingToResume("the journal holds no started batch")
    return Resumption(
        state=reader.state,
        last_time=reader.last,
        results=reader.results,
        attempts=reader.attempts,
        interrupted=reader.open_step,
        interrupted_at=reader.open_at,
        sent=reader.sent,
        finished=reader.finished,
        alarms=reader.alarms,
        unknown=reader.unknown,
        done_by_decision=reader.decided_done,
        hold_owed=reader.hold_owed,
        unsafe=frozenset(reader.unsafe),
    )


@dataclass
class _Reader:
    """Reads a journal entry by entry; what it has seen so far."""

    kinds: Mapping[str, str]  # step id -> step kind
    state: BatchState | None = None
    last: float = 0.0
    results: dict[str, dict[str, Value]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    open_step: str | None = None
    open_at: float | None = None
    sent: SentCommand | None = None
    sent_value: Value = ""  # a set step's value
    finished: dict[str, Value] | None = None
    alarms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unknown: Unknown | None = None
    decided_done: str | None = None
    hold_owed: bool = False
    unsafe: set[str] = field(default_factory=set)

    def read(self, entry: JournalEntry) -> None:
        self.last = max(self.last, entry.process_time)
        p = entry.payload
        kind = entry.kind
        step = entry.step if entry.step in self.kinds else None
        if kind is EntryKind.BATCH_STATE and "new" in p:
            self._state(BatchState(str(p["new"])))
        elif kind is EntryKind.STEP_START and step:
            if step != self.open_step:  # not the same step started again after a crash
                self.open_at = entry.process_time
            self.open_step, self.sent, self.finished = step, None, None
            self.attempts[step] = max(self.attempts.get(step, 0), _int(p.get("attempt")))
        elif kind is EntryKind.STEP_END and step:
            self._step_end(step, p)
        elif kind is EntryKind.COMMAND and step and step == self.open_step:
            self._command(entry)
        elif kind is EntryKind.COMMAND_RESULT:
            self._command_result(entry, step)
        elif kind is EntryKind.SIGNATURE and step and step == self.open_step:
            self.finished = {"value": _value(p.get("value")), "signer": entry.actor}
        elif kind is EntryKind.RECORD and step and step == self.open_step:
            if self.kinds[step] == "record":
                self.finished = {"value": _value(p.get("value"))}
        elif kind is EntryKind.DEVIATION and p.get("deviation") == "command outcome decided":
            if self.unknown is not None and entry.step == self.unknown.step:
                if p.get("decision") == "done":
                    self.decided_done = self.unknown.step
                self.unknown = None
        elif kind is EntryKind.ALARM and entry.device and isinstance(p.get("active"), list):
            # a device's own alarm codes (a limit alarm's transition has "alarm" and a bool)
            self.alarms[entry.device] = parse_alarms(",".join(map(str, _list(p.get("active")))))

    def _state(self, state: BatchState) -> None:
        if state is BatchState.Holding:
            self.hold_owed, self.unsafe = True, set()
        elif state is BatchState.Held:
            self.hold_owed = False
        self.state = state

    def _step_end(self, step: str, p: Mapping[str, object]) -> None:
        if p.get("result") == "done":
            fields = p.get("fields")
            self.results[step] = dict(fields) if isinstance(fields, dict) else {}
            if self.unknown is not None and self.unknown.step == step:
                self.unknown = None
            if self.decided_done == step:
                self.decided_done = None
        if step == self.open_step:
            self.open_step, self.open_at, self.sent, self.finished = None, None, None, None

    def _command(self, entry: JournalEntry) -> None:
        p = entry.payload
        if "method" in p:
            args = p.get("args")
            self.sent = SentCommand(
                entry.device,
                str(p["method"]),
                dict(args) if isinstance(args, dict) else {},  # type: ignore[arg-type]
            )
        elif "set" in p:
            self.sent_value = _value(p.get("value"))

    def _command_result(self, entry: JournalEntry, step: str | None) -> None:
        p = entry.payload
        if p.get("method") == "safe_state":  # the hold safe states, by device
            if "error" in p:
                self.unsafe.add(entry.device)
            else:
                self.unsafe.discard(entry.device)
            return
        if step is None:
            return  # a rule's command: rules run again on their own
        lost = p.get("error_type") in LOST_ERRORS or p.get("recovered") == "unknown"
        if lost and self.kinds[step] == "command":
            self.unknown = Unknown(
                entry.unit_procedure,
                step,
                entry.device,
                str(p.get("method", "")),
                f"{p.get('error_type', '')}: {p.get('error', '')}",
            )
        if step != self.open_step:
            return
        self.sent = None  # answered: its outcome is in the journal
        if "error" in p or p.get("recovered") in ("unknown", "interrupted", "not sent"):
            return
        if "set" in p and p.get("ok") is True:
            self.finished = {"value": self.sent_value}
        elif "result" in p:
            self.finished = _fields(p.get("result"))


def _fields(result: object) -> dict[str, Value]:
    """A journaled command result as the step's fields (as the executor made them)."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return {str(k): _value(v) for k, v in result.items()}
    return {"value": _value(result)}


def _value(value: object) -> Value:
    """As the executor's ``_scalar`` made it: a scalar, else its canonical JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
