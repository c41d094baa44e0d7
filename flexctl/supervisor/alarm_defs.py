"""Alarm definitions: which signal, which limit, how soon, how urgent.

One :class:`AlarmDefinition` is one limit on one ``device.signal``, high or
low; a signal with both limits has two definitions (as ISA-18.2 rationalises
each alarm on its own). Definitions come from YAML (a list under ``alarms:``)
through :func:`parse_alarms`, which reports every problem as a
:class:`~flexctl.errors.ConfigurationError` naming file, line and column.

.. code-block:: yaml

    alarms:
      - name: TAH-101
        signal: bioreactor.temperature
        kind: high
        limit: 37.5
        deadband: 0.2
        on_delay: 30 s
        priority: high
        interlock: true
        message: Culture temperature high
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from flexctl.errors import ConfigurationError, FlexctlError, Where
from flexctl.procedure.duration import MAX_SECONDS, DurationError, parse_duration
from flexctl.profile import check_keys, where_in
from flexctl.yamlpos import load_file, require_mapping, where_of


class AlarmKind(StrEnum):
    """Which side of the limit is abnormal; the value is the display name."""

    High = "High"
    Low = "Low"


class AlarmPriority(StrEnum):
    """ISA-18.2 priorities, most urgent first; the value is the display name."""

    Critical = "Critical"
    High = "High"
    Medium = "Medium"
    Low = "Low"

    @property
    def rank(self) -> int:
        """0 for Critical up to 3 for Low: sorts the most urgent first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {priority: rank for rank, priority in enumerate(AlarmPriority)}

ALARM_KEYS = (
    "name",
    "signal",
    "kind",
    "limit",
    "deadband",
    "on_delay",
    "off_delay",
    "priority",
    "interlock",
    "message",
)
REQUIRED_KEYS = ("name", "signal", "kind", "limit", "priority")

# Tag-like names (TAH-101, do_low): they appear on screens, in the record and in messages.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Where a plain dict (no YAML positions) is said to be.
_SOMEWHERE = Where("<alarms>")
_E = TypeVar("_E", bound=StrEnum)


class InvalidAlarmDefinition(FlexctlError, ValueError):
    """A definition field that breaks a rule; ``field`` names it, for locating it in YAML."""

    def __init__(self, alarm: str, field: str, message: str) -> None:
        self.alarm = alarm
        self.field = field
        self.message = message
        super().__init__(f"alarm {alarm or '?'}: {message}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class AlarmDefinition:
    """One limit alarm on ``signal`` (``device.signal``).

    A High alarm is past its limit above ``limit`` and back below or at
    ``limit - deadband``; a Low alarm mirrors that. It activates once the value
    has stayed past the limit for ``on_delay`` process seconds, and clears once
    it has stayed back for ``off_delay``. An ``interlock`` alarm holds the batch.
    """

    name: str
    signal: str
    kind: AlarmKind
    limit: float
    priority: AlarmPriority
    deadband: float = 0.0
    on_delay: float = 0.0
    off_delay: float = 0.0
    interlock: bool = False
    message: str = ""
    #: where its signal is written (for a validator's messages)
    where: Where = field(default_factory=lambda: _SOMEWHERE, compare=False, repr=False)

    def __post_init__(self) -> None:
        name = self.name if isinstance(self.name, str) else ""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidAlarmDefinition(
                name,
                "name",
                f"name {self.name!r}: expected a letter, then up to 63 letters, digits, _ or -",
            )
        device, dot, signal = str(self.signal).partition(".")
        if not isinstance(self.signal, str) or not (
            dot and _IDENT.match(device) and _IDENT.match(signal)
        ):
            raise InvalidAlarmDefinition(
                name, "signal", f"signal {self.signal!r}: expected device.signal"
            )
        object.__setattr__(self, "kind", _member(AlarmKind, name, "kind", self.kind))
        object.__setattr__(
            self, "priority", _member(AlarmPriority, name, "priority", self.priority)
        )
        if not _is_number(self.limit) or not math.isfinite(self.limit):
            raise InvalidAlarmDefinition(
                name, "limit", f"limit must be a finite number, got {self.limit!r}"
            )
        if not _is_number(self.deadband) or not 0 <= self.deadband < math.inf:
            raise InvalidAlarmDefinition(
                name, "deadband", f"deadband must be a finite number >= 0, got {self.deadband!r}"
            )
        for key in ("on_delay", "off_delay"):
            delay = getattr(self, key)
            if not _is_number(delay) or not 0 <= delay <= MAX_SECONDS:
                raise InvalidAlarmDefinition(
                    name, key, f"{key} must be >= 0 s (and finite), got {delay!r}"
                )
        if not isinstance(self.interlock, bool):
            raise InvalidAlarmDefinition(
                name, "interlock", f"interlock must be true or false, got {self.interlock!r}"
            )
        if not isinstance(self.message, str):
            raise InvalidAlarmDefinition(name, "message", "message must be text")

    @property
    def device(self) -> str:
        return self.signal.partition(".")[0]

    @property
    def signal_name(self) -> str:
        return self.signal.partition(".")[2]

    @property
    def text(self) -> str:
        """The message, or a plain description when none was given."""
        if self.message:
            return self.message
        side = ">" if self.kind is AlarmKind.High else "<"
        return f"{self.signal} {side} {self.limit:g}"

    def past(self, value: float) -> bool:
        """True when ``value`` is past the limit (beyond it, not on it)."""
        if self.kind is AlarmKind.High:
            return value > self.limit
        return value < self.limit

    def back(self, value: float) -> bool:
        """True when ``value`` is back inside the limit by at least the deadband."""
        if self.kind is AlarmKind.High:
            return value <= self.limit - self.deadband
        return value >= self.limit + self.deadband


def _member(enum: type[_E], alarm: str, field: str, value: object) -> _E:
    """The member whose display name is ``value`` in any case (YAML says ``high``)."""
    if isinstance(value, str):
        for member in enum:
            if member.value.lower() == value.strip().lower():
                return member
    choices = ", ".join(member.value.lower() for member in enum)
    raise InvalidAlarmDefinition(alarm, field, f"{field} {value!r}: expected {choices}")


# ------------------------------------------------------------------ parsing YAML


def parse_alarm(raw: Any, where: Where = _SOMEWHERE) -> AlarmDefinition:
    """One definition from a YAML mapping (or a plain dict).

    Locations come from the mapping when it was loaded by
    :mod:`flexctl.yamlpos`; ``where`` stands in for a plain dict.

    Raises:
        ConfigurationError: naming the place and the problem.
    """
    where = where_of(raw, where)
    if not isinstance(raw, Mapping):
        raise ConfigurationError(where, f"alarm: expected a mapping, got {_kind_of(raw)}")
    name = raw.get("name")
    label = f"alarm {name}" if isinstance(name, str) and _NAME.match(name) else "alarm"
    check_keys(raw, ALARM_KEYS, where, label)
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise ConfigurationError(where, f"{label}: missing key {key!r}")

    def at(key: str) -> Where:
        return where_in(raw, key, where)

    fields: dict[str, Any] = {key: raw[key] for key in ALARM_KEYS if key in raw}
    for key in ("on_delay", "off_delay"):
        if key in raw:
            fields[key] = _seconds(raw[key], at(key), f"{label}: {key}")
    try:
        return AlarmDefinition(**fields, where=at("signal"))
    except InvalidAlarmDefinition as exc:
        raise ConfigurationError(at(exc.field), f"{label}: {exc.message}") from None


def parse_alarms(raw: Any, where: Where = _SOMEWHERE) -> tuple[AlarmDefinition, ...]:
    """Definitions from a YAML list of mappings; names must be unique.

    Raises:
        ConfigurationError: naming the place and the problem.
    """
    where = where_of(raw, where)
    if not isinstance(raw, list):
        raise ConfigurationError(where, f"alarms: expected a list, got {_kind_of(raw)}")
    found: dict[str, Where] = {}
    result: list[AlarmDefinition] = []
    item_at = getattr(raw, "at", None)
    for index, item in enumerate(raw):
        item_where = item_at(index) if item_at is not None else where
        definition = parse_alarm(item, item_where)
        first = found.get(definition.name)
        if first is not None:
            raise ConfigurationError(
                where_in(item, "name", item_where),
                f"alarm {definition.name}: defined twice (first at {first})",
            )
        found[definition.name] = where_in(item, "name", item_where)
        result.append(definition)
    return tuple(result)


def load_alarms(path: Path) -> tuple[AlarmDefinition, ...]:
    """Load an alarm file: a mapping with ``alarms:`` (a list) and an optional ``description``.

    Raises:
        ConfigurationError: naming file, line and column.
    """
    top = require_mapping(load_file(path), Where(str(path), 1, 1), "alarm file")
    check_keys(top, ("alarms", "description"), top.where, "alarm file")
    if "alarms" not in top:
        raise ConfigurationError(top.where, "alarm file: missing key 'alarms'")
    return parse_alarms(top["alarms"], top.at("alarms"))


def _seconds(value: Any, where: Where, what: str) -> Any:
    """A delay: a number of seconds, or text with a unit (``"2 min"``)."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise ConfigurationError(where, f"{what}: {exc.message} in {value!r}") from None
    return value


def _kind_of(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"
