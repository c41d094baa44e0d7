"""The ISA-18.2 alarm state machine: one transition table, pure logic, no I/O.

States and transitions follow ISA-18.2 (domain.md 3.6). As OPC UA Part 9 does
with ActiveState beside ShelvingState, SuppressedState and OutOfServiceState,
the process condition (active or inactive) is kept apart from the annunciation
state: it goes on changing while an alarm is Shelved, Suppressed or
Out-of-service, and decides where the alarm lands when it comes back
(active: Unacknowledged, inactive: Normal). The table is therefore keyed by
(state, process condition, event).

Shelved, Suppressed and Out-of-service are flat states, as in the ISA-18.2
diagram, ranked Out-of-service > Suppressed > Shelved: a higher one replaces a
lower one (suppression logic must not fail because an operator shelved the
alarm), a lower one is refused in a higher one (shelving a suppressed alarm
would hide nothing). The optional Latched state is not implemented: no alarm
of this runtime needs it, and it would add a Reset event to every path.

Nothing here reads a clock: the caller passes process time with each event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from flexctl.errors import FlexctlError


class AlarmState(StrEnum):
    """The ISA-18.2 alarm states; the value is the display name."""

    Normal = "Normal"
    Unacknowledged = "Unacknowledged"
    Acknowledged = "Acknowledged"
    ReturnedToNormalUnacknowledged = "Returned-to-normal-unacknowledged"
    Shelved = "Shelved"
    Suppressed = "Suppressed"
    OutOfService = "Out-of-service"


class ProcessCondition(StrEnum):
    """Whether the process is past the alarm limit (OPC UA ActiveState)."""

    Inactive = "Inactive"
    Active = "Active"


class AlarmEvent(StrEnum):
    """What can happen to an alarm; the value is the display name."""

    Activate = "Activate"
    Clear = "Clear"
    Acknowledge = "Acknowledge"
    Shelve = "Shelve"
    Unshelve = "Unshelve"
    ShelveExpiry = "Shelve expiry"
    Suppress = "Suppress"
    Unsuppress = "Unsuppress"
    RemoveFromService = "Remove from service"
    ReturnToService = "Return to service"


# Short names for the table only.
_S, _C, _E = AlarmState, ProcessCondition, AlarmEvent
_ACT, _INACT = _C.Active, _C.Inactive

Situation = tuple[AlarmState, ProcessCondition]

# The one table: (state, process condition, event) -> (state, process condition).
# Rows grouped by state. Whatever is not here is refused.
TRANSITIONS: Mapping[tuple[AlarmState, ProcessCondition, AlarmEvent], Situation] = MappingProxyType(
    {
        # A: Normal (inactive, acknowledged)
        (_S.Normal, _INACT, _E.Activate): (_S.Unacknowledged, _ACT),
        (_S.Normal, _INACT, _E.Shelve): (_S.Shelved, _INACT),
        (_S.Normal, _INACT, _E.Suppress): (_S.Suppressed, _INACT),
        (_S.Normal, _INACT, _E.RemoveFromService): (_S.OutOfService, _INACT),
        # B: Unacknowledged (active)
        (_S.Unacknowledged, _ACT, _E.Acknowledge): (_S.Acknowledged, _ACT),
        (_S.Unacknowledged, _ACT, _E.Clear): (_S.ReturnedToNormalUnacknowledged, _INACT),
        (_S.Unacknowledged, _ACT, _E.Shelve): (_S.Shelved, _ACT),
        (_S.Unacknowledged, _ACT, _E.Suppress): (_S.Suppressed, _ACT),
        (_S.Unacknowledged, _ACT, _E.RemoveFromService): (_S.OutOfService, _ACT),
        # C: Acknowledged (active)
        (_S.Acknowledged, _ACT, _E.Clear): (_S.Normal, _INACT),
        (_S.Acknowledged, _ACT, _E.Shelve): (_S.Shelved, _ACT),
        (_S.Acknowledged, _ACT, _E.Suppress): (_S.Suppressed, _ACT),
        (_S.Acknowledged, _ACT, _E.RemoveFromService): (_S.OutOfService, _ACT),
        # D: Returned-to-normal-unacknowledged (inactive)
        (_S.ReturnedToNormalUnacknowledged, _INACT, _E.Acknowledge): (_S.Normal, _INACT),
        (_S.ReturnedToNormalUnacknowledged, _INACT, _E.Activate): (_S.Unacknowledged, _ACT),
        (_S.ReturnedToNormalUnacknowledged, _INACT, _E.Shelve): (_S.Shelved, _INACT),
        (_S.ReturnedToNormalUnacknowledged, _INACT, _E.Suppress): (_S.Suppressed, _INACT),
        (_S.ReturnedToNormalUnacknowledged, _INACT, _E.RemoveFromService): (
            _S.OutOfService,
            _INACT,
        ),
        # F: Shelved; the condition goes on changing, leaving lands where it says
        (_S.Shelved, _INACT, _E.Activate): (_S.Shelved, _ACT),
        (_S.Shelved, _ACT, _E.Clear): (_S.Shelved, _INACT),
        (_S.Shelved, _INACT, _E.Unshelve): (_S.Normal, _INACT),
        (_S.Shelved, _ACT, _E.Unshelve): (_S.Unacknowledged, _ACT),
        (_S.Shelved, _INACT, _E.ShelveExpiry): (_S.Normal, _INACT),
        (_S.Shelved, _ACT, _E.ShelveExpiry): (_S.Unacknowledged, _ACT),
        (_S.Shelved, _INACT, _E.Suppress): (_S.Suppressed, _INACT),
        (_S.Shelved, _ACT, _E.Suppress): (_S.Suppressed, _ACT),
        (_S.Shelved, _INACT, _E.RemoveFromService): (_S.OutOfService, _INACT),
        (_S.Shelved, _ACT, _E.RemoveFromService): (_S.OutOfService, _ACT),
        # G: Suppressed (by design)
        (_S.Suppressed, _INACT, _E.Activate): (_S.Suppressed, _ACT),
        (_S.Suppressed, _ACT, _E.Clear): (_S.Suppressed, _INACT),
        (_S.Suppressed, _INACT, _E.Unsuppress): (_S.Normal, _INACT),
        (_S.Suppressed, _ACT, _E.Unsuppress): (_S.Unacknowledged, _ACT),
        (_S.Suppressed, _INACT, _E.RemoveFromService): (_S.OutOfService, _INACT),
        (_S.Suppressed, _ACT, _E.RemoveFromService): (_S.OutOfService, _ACT),
        # H: Out-of-service
        (_S.OutOfService, _INACT, _E.Activate): (_S.OutOfService, _ACT),
        (_S.OutOfService, _ACT, _E.Clear): (_S.OutOfService, _INACT),
        (_S.OutOfService, _INACT, _E.ReturnToService): (_S.Normal, _INACT),
        (_S.OutOfService, _ACT, _E.ReturnToService): (_S.Unacknowledged, _ACT),
    }
)

#: The states an operator sees on the alarm summary.
ANNUNCIATED: frozenset[AlarmState] = frozenset(
    {_S.Unacknowledged, _S.Acknowledged, _S.ReturnedToNormalUnacknowledged}
)
#: The states that take an alarm off the summary whatever the process does.
REMOVED: frozenset[AlarmState] = frozenset({_S.Shelved, _S.Suppressed, _S.OutOfService})
#: Events that need a named user and a reason in the record. Taking an alarm out
#: of service hides it longer than shelving does, so it needs both as well.
ATTRIBUTED: frozenset[AlarmEvent] = frozenset({_E.Acknowledge, _E.Shelve, _E.RemoveFromService})

_ALLOWED: Mapping[Situation, frozenset[AlarmEvent]] = MappingProxyType(
    {
        (state, cond): frozenset(e for (s, c, e) in TRANSITIONS if s is state and c is cond)
        for state in AlarmState
        for cond in ProcessCondition
    }
)


def allowed_events(state: AlarmState, condition: ProcessCondition) -> frozenset[AlarmEvent]:
    """The events :data:`TRANSITIONS` accepts in ``state`` with ``condition``."""
    return _ALLOWED[(state, condition)]


def _names(events: frozenset[AlarmEvent]) -> str:
    # Declaration order, so the message reads the same every time.
    return ", ".join(e.value for e in AlarmEvent if e in events) or "none"


class IllegalAlarmEvent(FlexctlError):
    """An event the alarm's state does not accept; the alarm is left as it was."""

    def __init__(
        self,
        alarm: str,
        state: AlarmState,
        condition: ProcessCondition,
        event: AlarmEvent,
        detail: str = "",
    ) -> None:
        self.alarm = alarm
        self.state = state
        self.condition = condition
        self.event = event
        self.allowed = allowed_events(state, condition)
        why = detail or f"allowed: {_names(self.allowed)}"
        super().__init__(
            f"alarm {alarm}: {event.value} is not allowed while {state.value}"
            f" and {condition.value.lower()} ({why})"
        )


class MissingAttribution(FlexctlError, ValueError):
    """An operator event without the user or reason the record needs."""

    def __init__(self, alarm: str, event: AlarmEvent, missing: tuple[str, ...]) -> None:
        self.alarm = alarm
        self.event = event
        self.missing = missing
        super().__init__(
            f"alarm {alarm}: {event.value} needs a user and a reason"
            f" (missing: {', '.join(missing)})"
        )


class InvalidShelveTime(FlexctlError, ValueError):
    """A shelve without a finite expiry after now, or an expiry given to another event."""

    def __init__(self, alarm: str, message: str) -> None:
        self.alarm = alarm
        super().__init__(f"alarm {alarm}: {message}")


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """One accepted event, as the journal records it.

    ``old`` and ``new`` may be equal: the process condition of a Shelved,
    Suppressed or Out-of-service alarm changes without changing its state.
    ``active`` is the process condition after the event, ``value`` the signal
    value that caused it or was last seen, ``until`` the expiry of a shelve.
    """

    alarm: str
    old: AlarmState
    new: AlarmState
    event: AlarmEvent
    time: float
    active: bool
    user: str = ""
    reason: str = ""
    value: float | None = None
    until: float | None = None

    def payload(self) -> dict[str, str | float | bool | None]:
        """The transition as plain JSON data for a journal entry."""
        return {
            "alarm": self.alarm,
            "old": self.old.value,
            "new": self.new.value,
            "event": self.event.value,
            "time": self.time,
            "active": self.active,
            "user": self.user,
            "reason": self.reason,
            "value": self.value,
            "until": self.until,
        }


class AlarmStateMachine:
    """The state of one alarm, changed only along :data:`TRANSITIONS`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = AlarmState.Normal
        self._condition = ProcessCondition.Inactive
        self._until: float | None = None

    @property
    def state(self) -> AlarmState:
        return self._state

    @property
    def condition(self) -> ProcessCondition:
        return self._condition

    @property
    def active(self) -> bool:
        """True while the process is past the limit, whatever the state shows."""
        return self._condition is ProcessCondition.Active

    @property
    def shelved_until(self) -> float | None:
        """The process time a shelve expires, while Shelved; else None."""
        return self._until

    def allowed(self) -> frozenset[AlarmEvent]:
        """The events the current state and condition accept."""
        return allowed_events(self._state, self._condition)

    def apply(
        self,
        event: AlarmEvent,
        *,
        now: float,
        user: str = "",
        reason: str = "",
        value: float | None = None,
        until: float | None = None,
    ) -> AlarmTransition:
        """Apply ``event`` at process time ``now``; return the transition.

        Raises:
            IllegalAlarmEvent: the state does not accept ``event``, or a shelve
                expiry comes before the shelve's end (alarm unchanged).
            MissingAttribution: an :data:`ATTRIBUTED` event without user or reason.
            InvalidShelveTime: a shelve without a finite ``until`` after ``now``,
                or ``until`` with any other event.
        """
        event = AlarmEvent(event)
        target = TRANSITIONS.get((self._state, self._condition, event))
        if target is None:
            raise IllegalAlarmEvent(self.name, self._state, self._condition, event)
        if event in ATTRIBUTED:
            missing = tuple(
                field for field, text in (("user", user), ("reason", reason)) if not text.strip()
            )
            if missing:
                raise MissingAttribution(self.name, event, missing)
        self._check_until(event, now, until)
        if event is AlarmEvent.ShelveExpiry and self._until is not None and now < self._until:
            raise IllegalAlarmEvent(
                self.name,
                self._state,
                self._condition,
                event,
                f"shelved until {self._until:g}, now {now:g}",
            )
        old = self._state
        self._state, self._condition = target
        if event is AlarmEvent.Shelve:
            self._until = until
        elif self._state is not AlarmState.Shelved:
            self._until = None
        return AlarmTransition(
            alarm=self.name,
            old=old,
            new=self._state,
            event=event,
            time=now,
            active=self.active,
            user=user,
            reason=reason,
            value=value,
            until=until,
        )

    def _check_until(self, event: AlarmEvent, now: float, until: float | None) -> None:
        if event is not AlarmEvent.Shelve:
            if until is not None:
                raise InvalidShelveTime(self.name, f"{event.value} takes no expiry time")
            return
        if until is None:
            raise InvalidShelveTime(self.name, "a shelve needs an expiry time (until)")
        if not math.isfinite(until) or not until > now:
            raise InvalidShelveTime(
                self.name, f"a shelve must expire after now ({now:g}), not at {until!r}"
            )
