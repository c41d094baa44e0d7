"""Device profiles: which signal and command lives at which address.

A profile binds a driver's signal and command names to addresses on one kind
of transport. This module reads the parts every transport shares (type, unit,
limits, enum, writable, command arguments); the transport kind reads its own
address keys (``node``, ``table``/``address``, ``query``/``reply`` ...).
Twin servers read the same profile, so a twin is served exactly where the
driver looks for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from flexctl.errors import ConfigurationError, OutOfRangeError, ProtocolError, Where
from flexctl.yamlpos import PosDict, PosList, load_file, require_mapping, where_of

Value: TypeAlias = bool | int | float | str
"""What a signal carries once decoded: enum signals carry their member's name."""

TRANSPORTS = ("opcua", "modbus", "serial")

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
VALUE_TYPES: tuple[str, ...] = ("bool", *_INT_RANGES, "float32", "float64", "string")
FLOAT32_MAX = 3.4028234663852886e38

_ALIASES = {"float": "float64", "double": "float64", "int": "int32", "str": "string"}

GENERIC_SIGNAL_KEYS = frozenset(
    {"type", "unit", "writable", "limits", "enum", "description", "tolerance"}
)
GENERIC_COMMAND_KEYS = frozenset({"args", "description", "returns"})
GENERIC_PROFILE_KEYS = frozenset({"device", "transport", "signals", "commands", "description"})


def canonical_type(name: str, where: Where) -> str:
    """The canonical value type for a profile's ``type:``, or a configuration error."""
    canon = _ALIASES.get(name, name)
    if canon not in VALUE_TYPES:
        expected = ", ".join((*VALUE_TYPES, *_ALIASES))
        raise ConfigurationError(where, f"unknown type {name!r} (expected one of {expected})")
    return canon


def int_range(type_name: str) -> tuple[int, int] | None:
    return _INT_RANGES.get(type_name)


@dataclass(frozen=True)
class SignalSpec:
    """The transport-independent description of one signal."""

    name: str
    type: str
    where: Where
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    unit: str | None = None
    writable: bool = False
    limits: tuple[float, float] | None = None
    enum: tuple[str, ...] | None = None
    tolerance: float | None = None
    description: str = ""

    @property
    def wire_type(self) -> str:
        """The type on the wire: an enum travels as its member's index."""
        return self.type

    @property
    def numeric(self) -> bool:
        """Whether its values are numbers (a band or a limit alarm can watch it)."""
        return self.enum is None and self.type not in ("bool", "string")

    def decode(self, wire: Any, device: str = "") -> Value:
        """Turn what the transport read into the signal's value."""
        if self.enum is not None:
            if isinstance(wire, bool) or not isinstance(wire, int):
                raise ProtocolError(device, f"{self.name}: expected an enum index, got {wire!r}")
            if not 0 <= wire < len(self.enum):
                raise ProtocolError(
                    device, f"{self.name}: enum index {wire} outside 0..{len(self.enum) - 1}"
                )
            return self.enum[wire]
        return coerce(self.type, wire, self.name, device)

    def encode(self, value: Value) -> Value:
        """Turn a value into what goes on the wire; wrong type or range is OutOfRangeError."""
        if self.enum is not None:
            if isinstance(value, str):
                if value not in self.enum:
                    raise OutOfRangeError(
                        f"{self.name}: {value!r} is not one of {', '.join(self.enum)}"
                    )
                return self.enum.index(value)
            if isinstance(value, int) and not isinstance(value, bool):
                if not 0 <= value < len(self.enum):
                    raise OutOfRangeError(f"{self.name}: enum index {value} out of range")
                return value
            raise OutOfRangeError(f"{self.name}: expected one of {', '.join(self.enum)}")
        return check_value(self.type, value, self.name)

    def check_limits(self, value: Value) -> None:
        """Refuse a value outside the profile's limits (before anything is sent)."""
        if self.limits is None or isinstance(value, str | bool):
            return
        low, high = self.limits
        if not low <= value <= high:
            unit = f" {self.unit}" if self.unit else ""
            raise OutOfRangeError(
                f"{self.name}: {value:g}{unit} is outside the limits [{low:g}, {high:g}]{unit}"
            )


def coerce(type_name: str, wire: Any, name: str, device: str = "") -> Value:
    """Read side: accept what a wire library returned for ``type_name`` or say why not."""
    if type_name == "bool":
        if isinstance(wire, bool):
            return wire
        if isinstance(wire, int) and wire in (0, 1):
            return bool(wire)
    elif type_name == "string":
        if isinstance(wire, str):
            return wire
    elif type_name in _INT_RANGES:
        if isinstance(wire, int) and not isinstance(wire, bool):
            return wire
    elif isinstance(wire, int | float) and not isinstance(wire, bool):
        return float(wire)
    raise ProtocolError(device, f"{name}: expected a {type_name} value, got {wire!r}")


def check_value(type_name: str, value: Value, name: str) -> Value:
    """Write side: the value as ``type_name`` wants it, or OutOfRangeError."""
    if type_name == "bool":
        if isinstance(value, bool):
            return value
    elif type_name == "string":
        if isinstance(value, str):
            return value
    elif type_name in _INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = _INT_RANGES[type_name]
            if not low <= value <= high:
                raise OutOfRangeError(f"{name}: {value} does not fit {type_name} [{low}, {high}]")
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise OutOfRangeError(f"{name}: {value} does not fit a float") from None
        if not math.isfinite(value):
            raise OutOfRangeError(f"{name}: {value} is not a finite number")
        if type_name == "float32" and abs(value) > FLOAT32_MAX:
            raise OutOfRangeError(f"{name}: {value:g} does not fit float32 (max {FLOAT32_MAX:g})")
        return value
    raise OutOfRangeError(f"{name}: expected a {type_name} value, got {value!r}")


@dataclass(frozen=True)
class CommandSpec:
    """The transport-independent description of one command."""

    name: str
    where: Where
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    args: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Profile:
    """A parsed profile: generic parts checked; address keys left to the transport kind."""

    name: str
    device: str
    transport: str
    signals: Mapping[str, SignalSpec]
    commands: Mapping[str, CommandSpec]
    settings: Mapping[str, Any]
    where: Where

    def signal(self, name: str) -> SignalSpec:
        try:
            return self.signals[name]
        except KeyError:
            raise ConfigurationError(
                self.where, f"profile {self.name} has no signal {name!r}"
            ) from None

    def command(self, name: str) -> CommandSpec:
        try:
            return self.commands[name]
        except KeyError:
            raise ConfigurationError(
                self.where, f"profile {self.name} has no command {name!r}"
            ) from None


def load_profile(path: Path) -> Profile:
    """Load and check the generic part of a profile file."""
    data = load_file(path)
    top = require_mapping(data, Where(str(path), 1, 1), "profile")
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    return parse_profile(top, name)


def parse_profile(top: PosDict, name: str) -> Profile:
    device = _text(top, "device", required=True)
    transport = _text(top, "transport", required=True)
    if transport not in TRANSPORTS:
        raise ConfigurationError(
            top.at("transport"),
            f"unknown transport {transport!r} (expected one of {', '.join(TRANSPORTS)})",
        )
    signals_raw = top.get("signals", PosDict())
    signals_map = require_mapping(signals_raw, top.at("signals"), "signals")
    signals = {
        sig_name: _parse_signal(sig_name, spec, signals_map.at(sig_name))
        for sig_name, spec in signals_map.items()
    }
    commands_raw = top.get("commands", PosDict())
    commands_map = require_mapping(commands_raw, top.at("commands"), "commands")
    commands = {
        cmd_name: _parse_command(cmd_name, spec, commands_map.at(cmd_name))
        for cmd_name, spec in commands_map.items()
    }
    settings = PosDict((k, v) for k, v in top.items() if k not in GENERIC_PROFILE_KEYS)
    settings.where = top.where
    settings.key_where = {k: top.key_at(k) for k in settings}
    settings.value_where = {k: top.at(k) for k in settings}
    return Profile(
        name=name,
        device=device,
        transport=transport,
        signals=signals,
        commands=commands,
        settings=settings,
        where=top.where,
    )


def _text(top: PosDict, key: str, *, required: bool = False) -> str:
    value = top.get(key)
    if value is None and required:
        raise ConfigurationError(top.where, f"missing key {key!r}")
    if not isinstance(value, str):
        raise ConfigurationError(top.at(key), f"{key}: expected text, got {value!r}")
    return value


def _parse_signal(name: str, raw: Any, where: Where) -> SignalSpec:
    spec = require_mapping(raw, where, f"signal {name}")
    type_raw = spec.get("type", "float64")
    if not isinstance(type_raw, str):
        raise ConfigurationError(spec.at("type"), f"signal {name}: type must be text")
    enum: tuple[str, ...] | None = None
    if "enum" in spec:
        members = spec["enum"]
        if (
            not isinstance(members, PosList)
            or not members
            or not all(isinstance(m, str) for m in members)
        ):
            raise ConfigurationError(
                spec.at("enum"), f"signal {name}: enum must be a non-empty list of names"
            )
        if len(set(members)) != len(members):
            raise ConfigurationError(spec.at("enum"), f"signal {name}: enum names repeat")
        enum = tuple(members)
    type_name = canonical_type(type_raw, spec.at("type"))
    if enum is not None and int_range(type_name) is None:
        if "type" in spec:
            raise ConfigurationError(
                spec.at("type"), f"signal {name}: an enum needs an integer type, got {type_raw}"
            )
        type_name = "uint16"
    limits = _limits(spec, name)
    writable = spec.get("writable", False)
    if not isinstance(writable, bool):
        raise ConfigurationError(spec.at("writable"), f"signal {name}: writable must be true/false")
    unit = spec.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise ConfigurationError(spec.at("unit"), f"signal {name}: unit must be text")
    tolerance = spec.get("tolerance")
    if tolerance is not None and (
        isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0
    ):
        raise ConfigurationError(
            spec.at("tolerance"), f"signal {name}: tolerance must be a number >= 0"
        )
    return SignalSpec(
        name=name,
        type=type_name,
        where=spec.where,
        raw=spec,
        unit=unit,
        writable=writable,
        limits=limits,
        enum=enum,
        tolerance=None if tolerance is None else float(tolerance),
        description=str(spec.get("description", "")),
    )


def _limits(spec: PosDict, name: str) -> tuple[float, float] | None:
    if "limits" not in spec:
        return None
    raw = spec["limits"]
    ok = (
        isinstance(raw, list)
        and len(raw) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw)
        and raw[0] <= raw[1]
    )
    if not ok:
        raise ConfigurationError(
            spec.at("limits"), f"signal {name}: limits must be [low, high] numbers, low <= high"
        )
    return (float(raw[0]), float(raw[1]))


def _parse_command(name: str, raw: Any, where: Where) -> CommandSpec:
    spec = require_mapping(raw, where, f"command {name}")
    args = spec.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigurationError(spec.at("args"), f"command {name}: args must be a list of names")
    return CommandSpec(
        name=name,
        where=spec.where,
        raw=spec,
        args=tuple(args),
        description=str(spec.get("description", "")),
    )


def check_keys(
    raw: Mapping[str, Any], allowed: Sequence[str] | frozenset[str], where: Where, what: str
) -> None:
    """Refuse unknown keys, naming the first one and where it is."""
    for key in raw:
        if key not in allowed:
            key_where = raw.key_at(key) if isinstance(raw, PosDict) else where
            raise ConfigurationError(
                key_where,
                f"{what}: unknown key {key!r} (expected one of {', '.join(sorted(allowed))})",
            )


def where_in(raw: Mapping[str, Any], key: str, default: Where) -> Where:
    """Where ``raw[key]`` is, when ``raw`` came from YAML."""
    if isinstance(raw, PosDict):
        return raw.at(key)
    return where_of(raw, default)
