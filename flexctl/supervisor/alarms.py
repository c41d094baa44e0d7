"""The alarm monitor: limits, deadbands and delays over process time, plus alarm KPIs.

:class:`AlarmMonitor` owns the :class:`~flexctl.supervisor.alarm_defs.AlarmDefinition`
list and one :class:`~flexctl.supervisor.alarm_states.AlarmStateMachine` per
alarm. The engine feeds it signal values with the process time they were read
at, passes on operator actions, journals the transitions it gets back and holds
the batch while :meth:`AlarmMonitor.interlocking` is not empty. No I/O, no
clock: every method takes ``now`` from the caller, and ``now`` never goes back.

KPIs for the batch report (ISA-18.2 / EEMUA 191) count activations, i.e.
alarms annunciated by the process going past a limit (an activation while
Shelved, Suppressed or Out-of-service reaches no operator and is not counted):

* a flood is a stretch of process time during which the last ``flood_window``
  seconds (default 10 min) held more than ``flood_limit`` (10) activations;
* an alarm chatters if it activated ``chatter_count`` (3) or more times within
  ``chatter_window`` seconds (1 min).

Windows are half-open, (t - window, t]: three activations at 0, 30 and 60 s are
not three within one minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from flexctl.errors import FlexctlError
from flexctl.profile import Value
from flexctl.record.journal import SYSTEM
from flexctl.supervisor.alarm_defs import AlarmDefinition, AlarmPriority, InvalidAlarmDefinition
from flexctl.supervisor.alarm_states import (
    ANNUNCIATED,
    AlarmEvent,
    AlarmState,
    AlarmStateMachine,
    AlarmTransition,
)

# Removed from the summary and from interlocking by an authorised decision (design
# logic, maintenance). Shelving is an operator's nuisance filter: it hides the
# alarm but must not bypass an interlock.
_NOT_INTERLOCKING = frozenset({AlarmState.Suppressed, AlarmState.OutOfService})


class UnknownAlarm(FlexctlError, LookupError):
    """An alarm name that no definition has."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no alarm named {name!r}")


class ProcessTimeWentBack(FlexctlError, ValueError):
    """``now`` earlier than a time the monitor has already been given."""

    def __init__(self, now: float, latest: float) -> None:
        self.now = now
        self.latest = latest
        super().__init__(f"process time went back: {now:g} after {latest:g}")


@dataclass(frozen=True)
class AlarmStatus:
    """A snapshot of one alarm for a summary screen or a report.

    ``since`` is when it last became Unacknowledged (by activating or by coming
    back from Shelved, Suppressed or Out-of-service) while it is annunciated.
    """

    definition: AlarmDefinition
    state: AlarmState
    active: bool
    since: float | None
    value: float | None
    shelved_until: float | None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def priority(self) -> AlarmPriority:
        return self.definition.priority


@dataclass(frozen=True)
class FloodPeriod:
    """A flood: ``start`` is the activation that made it, ``end`` when the count fell back.

    For the last flood ``end`` may lie after the latest activation: it is when
    the flood ends if nothing else activates.
    """

    start: float
    end: float


@dataclass(frozen=True)
class AlarmKpis:
    """Alarm KPIs for the batch report."""

    activations: Mapping[str, int]
    floods: tuple[FloodPeriod, ...]
    chattering: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.activations.values())

    @property
    def flood_count(self) -> int:
        return len(self.floods)


def flood_periods(times: Sequence[float], *, window: float, limit: int) -> list[FloodPeriod]:
    """The floods in ``times``: stretches where (t - window, t] holds more than ``limit``.

    A sweep over the moments the windowed count changes: +1 at each activation,
    -1 ``window`` later, all changes at one moment applied together.
    """
    starts = sorted(times)
    ends = [t + window for t in starts]
    periods: list[FloodPeriod] = []
    i = j = count = 0
    flood_start: float | None = None
    while j < len(ends):
        moment = min(starts[i], ends[j]) if i < len(starts) else ends[j]
        while i < len(starts) and starts[i] == moment:
            count += 1
            i += 1
        while j < len(ends) and ends[j] == moment:
            count -= 1
            j += 1
        if flood_start is None and count > limit:
            flood_start = moment
        elif flood_start is not None and count <= limit:
            periods.append(FloodPeriod(flood_start, moment))
            flood_start = None
    return periods


def chatters(times: Sequence[float], *, window: float, count: int) -> bool:
    """True if ``count`` of ``times`` fall within one half-open ``window``."""
    ordered = sorted(times)
    return any(
        ordered[i + count - 1] - ordered[i] < window for i in range(len(ordered) - count + 1)
    )


@dataclass
class _Tracked:
    """One alarm's machine and the monitor's bookkeeping for it."""

    definition: AlarmDefinition
    machine: AlarmStateMachine
    past_since: float | None = None  # on-delay running since
    back_since: float | None = None  # off-delay running since
    value: float | None = None
    since: float | None = None
    activations: list[float] = field(default_factory=list)

    def status(self) -> AlarmStatus:
        return AlarmStatus(
            definition=self.definition,
            state=self.machine.state,
            active=self.machine.active,
            since=self.since,
            value=self.value,
            shelved_until=self.machine.shelved_until,
        )


class AlarmMonitor:
    """Limit alarms over a set of definitions, driven by the caller's process time."""

    def __init__(
        self,
        definitions: Iterable[AlarmDefinition],
        *,
        flood_window: float = 600.0,
        flood_limit: int = 10,
        chatter_window: float = 60.0,
        chatter_count: int = 3,
    ) -> None:
        for label, window in (("flood_window", flood_window), ("chatter_window", chatter_window)):
            if not 0 < window < math.inf:
                raise ValueError(f"{label} must be a finite number of seconds > 0, not {window!r}")
        if flood_limit < 0 or chatter_count < 1:
            raise ValueError("flood_limit must be >= 0 and chatter_count >= 1")
        self.flood_window = flood_window
        self.flood_limit = flood_limit
        self.chatter_window = chatter_window
        self.chatter_count = chatter_count
        self._alarms: dict[str, _Tracked] = {}
        for definition in definitions:
            if definition.name in self._alarms:
                raise InvalidAlarmDefinition(definition.name, "name", "defined twice")
            self._alarms[definition.name] = _Tracked(definition, AlarmStateMachine(definition.name))
        self._latest = -math.inf
        self._activations: list[float] = []  # every counted activation, in order

    @property
    def definitions(self) -> tuple[AlarmDefinition, ...]:
        return tuple(t.definition for t in self._alarms.values())

    def status(self, name: str) -> AlarmStatus:
        """The snapshot of alarm ``name``."""
        return self._get(name).status()

    # ---------------------------------------------------------------- the process

    def update(
        self, signal_values: Mapping[str, Value | None], now: float
    ) -> list[AlarmTransition]:
        """Apply limits, deadbands and delays to the values read at ``now``.

        ``signal_values`` maps ``device.signal`` to its value. An alarm whose
        signal is missing, or is no finite number, is left as it was: a lost
        link is the interlocks' business, and a gap in readings neither starts
        nor stops a delay.
        """
        self._tick(now)
        transitions: list[AlarmTransition] = []
        for tracked in self._alarms.values():
            raw = signal_values.get(tracked.definition.signal)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                continue
            if not math.isfinite(raw):
                continue
            tracked.value = float(raw)
            event = self._edge(tracked, tracked.value, now)
            if event is not None:
                transitions.append(self._apply(tracked, event, now, user=SYSTEM))
        return transitions

    @staticmethod
    def _edge(tracked: _Tracked, value: float, now: float) -> AlarmEvent | None:
        """The process event ``value`` causes, once its delay has run out."""
        definition = tracked.definition
        if not tracked.machine.active:
            tracked.back_since = None
            if not definition.past(value):
                tracked.past_since = None
                return None
            if tracked.past_since is None:
                tracked.past_since = now
            if now - tracked.past_since >= definition.on_delay:
                tracked.past_since = None
                return AlarmEvent.Activate
            return None
        tracked.past_since = None
        if not definition.back(value):
            tracked.back_since = None
            return None
        if tracked.back_since is None:
            tracked.back_since = now
        if now - tracked.back_since >= definition.off_delay:
            tracked.back_since = None
            return AlarmEvent.Clear
        return None

    def expire(self, now: float) -> list[AlarmTransition]:
        """Unshelve every alarm whose shelve has run out by ``now``."""
        self._tick(now)
        return [
            self._apply(tracked, AlarmEvent.ShelveExpiry, now, user=SYSTEM)
            for tracked in self._alarms.values()
            if tracked.machine.state is AlarmState.Shelved
            and tracked.machine.shelved_until is not None
            and tracked.machine.shelved_until <= now
        ]

    # ---------------------------------------------------------------- operators

    def acknowledge(self, name: str, *, user: str, reason: str, now: float) -> AlarmTransition:
        """Acknowledge alarm ``name`` (a user and a reason are required)."""
        return self._operator(name, AlarmEvent.Acknowledge, now=now, user=user, reason=reason)

    def shelve(
        self, name: str, *, user: str, reason: str, until: float, now: float
    ) -> AlarmTransition:
        """Shelve alarm ``name`` until process time ``until`` (user and reason required)."""
        return self._operator(
            name, AlarmEvent.Shelve, now=now, user=user, reason=reason, until=until
        )

    def unshelve(
        self, name: str, *, now: float, user: str = SYSTEM, reason: str = ""
    ) -> AlarmTransition:
        """Put a shelved alarm back before its shelve runs out."""
        return self._operator(name, AlarmEvent.Unshelve, now=now, user=user, reason=reason)

    def suppress(
        self, name: str, *, now: float, user: str = SYSTEM, reason: str = ""
    ) -> AlarmTransition:
        """Suppress alarm ``name`` by design (logic: the equipment is not in use)."""
        return self._operator(name, AlarmEvent.Suppress, now=now, user=user, reason=reason)

    def unsuppress(
        self, name: str, *, now: float, user: str = SYSTEM, reason: str = ""
    ) -> AlarmTransition:
        """End the suppression of alarm ``name``."""
        return self._operator(name, AlarmEvent.Unsuppress, now=now, user=user, reason=reason)

    def remove_from_service(
        self, name: str, *, user: str, reason: str, now: float
    ) -> AlarmTransition:
        """Take alarm ``name`` out of service for maintenance (user and reason required)."""
        return self._operator(name, AlarmEvent.RemoveFromService, now=now, user=user, reason=reason)

    def return_to_service(
        self, name: str, *, now: float, user: str = SYSTEM, reason: str = ""
    ) -> AlarmTransition:
        """Return alarm ``name`` to service."""
        return self._operator(name, AlarmEvent.ReturnToService, now=now, user=user, reason=reason)

    # ---------------------------------------------------------------- views

    def active(self) -> list[AlarmStatus]:
        """Alarms to annunciate, most urgent first, then oldest first, then by name."""
        return self._sorted(t for t in self._alarms.values() if t.machine.state in ANNUNCIATED)

    def interlocking(self) -> list[AlarmStatus]:
        """Interlock alarms whose process condition is active and that are in service.

        A shelved interlock alarm still interlocks: shelving hides an alarm from
        the operator, it does not bypass a hold. Suppressed (by design) and
        Out-of-service alarms do not.
        """
        return self._sorted(
            t
            for t in self._alarms.values()
            if t.definition.interlock
            and t.machine.active
            and t.machine.state not in _NOT_INTERLOCKING
        )

    def kpis(self) -> AlarmKpis:
        """Activations per alarm, floods and chattering alarms so far."""
        activations = {name: len(t.activations) for name, t in self._alarms.items()}
        chattering = tuple(
            name
            for name, t in self._alarms.items()
            if chatters(t.activations, window=self.chatter_window, count=self.chatter_count)
        )
        floods = flood_periods(self._activations, window=self.flood_window, limit=self.flood_limit)
        return AlarmKpis(MappingProxyType(activations), tuple(floods), chattering)

    # ---------------------------------------------------------------- inside

    def _get(self, name: str) -> _Tracked:
        tracked = self._alarms.get(name)
        if tracked is None:
            raise UnknownAlarm(name)
        return tracked

    def _tick(self, now: float) -> None:
        if now < self._latest:
            raise ProcessTimeWentBack(now, self._latest)
        self._latest = now

    def _operator(
        self,
        name: str,
        event: AlarmEvent,
        *,
        now: float,
        user: str,
        reason: str,
        until: float | None = None,
    ) -> AlarmTransition:
        tracked = self._get(name)
        if now < self._latest:
            raise ProcessTimeWentBack(now, self._latest)
        transition = self._apply(tracked, event, now, user=user, reason=reason, until=until)
        self._latest = now  # only once accepted: a refused action leaves no mark
        return transition

    def _apply(
        self,
        tracked: _Tracked,
        event: AlarmEvent,
        now: float,
        *,
        user: str,
        reason: str = "",
        until: float | None = None,
    ) -> AlarmTransition:
        transition = tracked.machine.apply(
            event, now=now, user=user, reason=reason, value=tracked.value, until=until
        )
        if transition.new is AlarmState.Unacknowledged:
            if transition.old is not AlarmState.Unacknowledged:
                tracked.since = now
            if event is AlarmEvent.Activate:
                tracked.activations.append(now)
                self._activations.append(now)
        elif transition.new not in ANNUNCIATED:
            tracked.since = None
        return transition

    @staticmethod
    def _sorted(alarms: Iterable[_Tracked]) -> list[AlarmStatus]:
        statuses = [t.status() for t in alarms]
        statuses.sort(
            key=lambda s: (
                s.priority.rank,
                math.inf if s.since is None else s.since,
                s.name,
            )
        )
        return statuses
