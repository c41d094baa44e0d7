"""The rows of a batch report: one small frozen dataclass per thing the record shows.

Every time is a :class:`Moment`: the process time the clock gave, the same time
counted from the batch's start (shown as ``d03 14:20``), and the UTC time it
stands for. Payload details stay JSON data, exactly as the journal holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from flexctl.record.journal import JSONValue
from flexctl.report.wording import stamp

Details = Mapping[str, JSONValue]


@dataclass(frozen=True)
class Moment:
    """When something happened: process time (raw and since the start) and UTC."""

    process_time: float
    elapsed: float
    utc: datetime

    @property
    def stamp(self) -> str:
        """Process time since the batch's start as ``d03 14:20``."""
        return stamp(self.elapsed)


@dataclass(frozen=True)
class Timebase:
    """Makes moments relative to the batch's start (the Idle -> Running transition)."""

    started: float

    def at(self, process_time: float, utc: datetime) -> Moment:
        return Moment(process_time, process_time - self.started, utc)


@dataclass(frozen=True)
class ParameterRow:
    """A batch parameter: ``default`` is None when the journal does not say."""

    name: str
    value: JSONValue
    unit: str
    type: str
    default: bool | None


@dataclass(frozen=True)
class DeviceRow:
    """A device of the batch's line, as its driver described it when the batch was made."""

    name: str
    driver: str
    profile: str
    transport: str
    source: str
    serial: str
    origin: str
    #: Further plain values the driver gave (firmware, state ...).
    other: Details = field(default_factory=dict)
    #: The driver's own description of the device (signals, commands), as stored.
    described: Details = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One run of a step: a step runs again after a hold and a restart.

    ``number`` is None for a step a person declared done without running it.
    ``result`` is ``done``, ``failed``, ``interrupted`` or ``running`` (no end yet).
    """

    number: int | None
    start: Moment | None
    end: Moment | None
    result: str
    fields: Details = field(default_factory=dict)
    reason: str = ""
    error: str = ""
    actor: str = ""
    #: The device commands this attempt sent, with the argument values sent.
    sent: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepRow:
    """A step of the procedure and every attempt at it (none: not run)."""

    unit_procedure: str
    step: str
    kind: str
    action: str
    description: str
    attempts: tuple[Attempt, ...] = ()
    planned: bool = True

    @property
    def result(self) -> str:
        return self.attempts[-1].result if self.attempts else "not run"


@dataclass(frozen=True)
class UnitRow:
    """A unit procedure and its steps, in procedure order."""

    name: str
    steps: tuple[StepRow, ...]

    @property
    def complete(self) -> bool:
        return bool(self.steps) and all(step.result == "done" for step in self.steps)


@dataclass(frozen=True)
class Signature:
    """An e-signature with its 21 CFR 11.50 manifestation and its binding check.

    ``binding`` is ``intact`` (the recomputed SHA-256 equals the stored one),
    ``broken`` (it does not: what was signed changed after signing) or
    ``unverifiable`` (what was signed is not all in the journal); ``binding_note`` says why.
    """

    at: Moment
    unit_procedure: str
    step: str
    user: str
    printed_name: str
    signed_at: str
    meaning: str
    role: str
    value: JSONValue
    simulated: bool
    text: str
    sha256: str
    recomputed: str
    binding: str
    binding_note: str = ""


@dataclass(frozen=True)
class RejectedEntry:
    """A prompt answer refused by its entry check (the person was asked again)."""

    at: Moment
    unit_procedure: str
    step: str
    actor: str
    value: JSONValue
    why: str


@dataclass(frozen=True)
class StateChange:
    """A batch state transition, or a command the state machine refused (``refused``)."""

    at: Moment
    actor: str
    command: str
    old: str
    new: str
    reason: str
    refused: str = ""


@dataclass(frozen=True)
class Deviation:
    at: Moment
    unit_procedure: str
    step: str
    device: str
    actor: str
    deviation: str
    message: str
    details: Details = field(default_factory=dict)


@dataclass(frozen=True)
class InterlockEvent:
    """An interlock trip (``reason`` and ``action`` set) or event (armed, out of band ...)."""

    at: Moment
    unit_procedure: str
    device: str
    interlock: str
    event: str
    reason: str
    action: str
    details: Details = field(default_factory=dict)

    @property
    def tripped(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class AlarmChange:
    at: Moment
    device: str
    raised: tuple[str, ...]
    cleared: tuple[str, ...]
    active: tuple[str, ...]


@dataclass(frozen=True)
class CommandError:
    """A device command that failed or was not sent."""

    at: Moment
    unit_procedure: str
    step: str
    device: str
    command: str
    error: str


@dataclass(frozen=True)
class Measurement:
    """A ``record`` step's value."""

    at: Moment
    unit_procedure: str
    step: str
    device: str
    expression: str
    value: JSONValue
    unit: str


@dataclass(frozen=True)
class AuditRow:
    """An audit trail record of the batch: who, what, when, old value, new value and why."""

    seq: int
    utc: datetime
    at: Moment | None
    actor: str
    action: str
    object: str
    old_value: JSONValue
    new_value: JSONValue
    reason: str
