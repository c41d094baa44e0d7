"""A Modbus profile, read and checked: where each signal and command lives.

No pymodbus here: reading and checking a profile needs none.

Profile keys of a signal (besides the generic ``type``, ``unit``, ``writable``,
``limits``, ``enum`` ...)::

    temperature: {table: input, address: 0, type: float32, word_order: little}
    level:       {table: holding, address: 10, type: float64, raw: int16, scale: 0.1}

* ``table``: ``coil`` | ``discrete`` | ``input`` | ``holding`` (required).
* ``address``: 0-based, exactly as it travels on the wire (required).
* ``raw``: the register type when it differs from the value ``type`` (a scaled
  integer read as a float); defaults to ``type``.
* ``word_order`` / ``byte_order``: ``big`` (default) or ``little``; see
  :mod:`flexctl.transports.modbus_codec`.
* ``scale`` / ``offset``: engineering value = raw * scale + offset.
* ``length``: registers of a ``string`` (two bytes each, NUL padded).

A writable signal must live in a writable table (``coil`` or ``holding``).

Commands write their arguments, pull a trigger, then read their results::

    start:
      args: [rate]
      write: [{address: 20, type: float32}]        # one entry per argument
      trigger: {address: 22, value: 1}              # written last
      results: [{table: input, address: 60, type: uint32}]

``write`` and ``trigger`` entries default to the ``holding`` table (``coil`` is
allowed); ``results`` entries default to ``holding`` too and may name any table.
An entry takes ``table``, ``address``, ``type`` (the register type, required for
``write`` and ``results``), ``word_order``, ``byte_order``, ``scale``, ``offset``
and ``length``. A trigger's ``value`` is written as one uint16 register (or a
coil when ``value`` is true/false). The arguments are written first, in as few
requests as possible (FC16 over a contiguous block), then the trigger alone
(FC6, or FC5 for a coil), last, so a device acting on it finds its arguments in
place; then the results are read (batched like any read) and returned as a
list. No two entries of a command (arguments, trigger, results) may share a
register.

Profile-level keys: ``probe`` (the signal read on connect to prove the device
answers; default the first signal) and ``max_gap`` (unused addresses a batched
read may bridge; default 0, so only addresses the profile names are read).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flexctl.errors import ConfigurationError, Where
from flexctl.profile import (
    GENERIC_COMMAND_KEYS,
    GENERIC_SIGNAL_KEYS,
    CommandSpec,
    Profile,
    SignalSpec,
    canonical_type,
    check_keys,
    where_in,
)
from flexctl.transports.base import CommandAddress, SignalAddress
from flexctl.transports.modbus_codec import Codec, is_float_type, is_integer_type
from flexctl.transports.modbus_plan import (
    BIT_TABLES,
    READ_LIMITS,
    TABLES,
    WRITE_LIMITS,
    Plan,
    Span,
    plan,
)
from flexctl.yamlpos import PosList

SIGNAL_KEYS = frozenset(
    {"table", "address", "raw", "word_order", "byte_order", "scale", "offset", "length"}
)
FIELD_KEYS = frozenset(
    {
        "table",
        "address",
        "type",
        "word_order",
        "byte_order",
        "scale",
        "offset",
        "length",
        "description",
    }
)
TRIGGER_KEYS = frozenset({"table", "address", "value", "description"})
COMMAND_KEYS = frozenset({"write", "trigger", "results"})
PROFILE_KEYS = frozenset({"probe", "max_gap"})
WRITABLE_TABLES = frozenset({"coil", "holding"})

#: Longest string: it must fit one write request (FC16 carries 123 registers).
MAX_STRING_REGISTERS = WRITE_LIMITS["holding"]


@dataclass(frozen=True)
class Field:
    """A typed value at a place: a signal, a command argument, trigger or result."""

    table: str
    address: int
    codec: Codec
    type: str  # the value type handed to and from callers
    label: str  # for messages

    @property
    def width(self) -> int:
        return 1 if self.table in BIT_TABLES else self.codec.width

    @property
    def span(self) -> Span:
        return Span(self.table, self.address, self.width)


@dataclass(frozen=True)
class ModbusSignal(SignalAddress):
    """Where one signal lives in a Modbus device."""

    field: Field


@dataclass(frozen=True)
class ModbusCommand(CommandAddress):
    """Registers a command writes, its trigger and the results it reads back."""

    writes: tuple[Field, ...]
    trigger: Field | None
    trigger_value: int | bool
    results: tuple[Field, ...]


def _integer(
    raw: Mapping[str, Any], key: str, where: Where, what: str, *, low: int, high: int
) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            where_in(raw, key, where), f"{what}: {key} must be an integer in [{low}, {high}]"
        )
    return value


def _number(raw: Mapping[str, Any], key: str, where: Where, what: str, default: int) -> int | float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(where_in(raw, key, where), f"{what}: {key} must be a number")
    return value


def _order(raw: Mapping[str, Any], key: str, where: Where, what: str) -> str:
    value = raw.get(key, "big")
    if value not in ("big", "little"):
        raise ConfigurationError(
            where_in(raw, key, where), f"{what}: {key} must be big or little, got {value!r}"
        )
    return str(value)


def _place(
    raw: Mapping[str, Any], where: Where, what: str, *, default_table: str | None, writable: bool
) -> tuple[str, int]:
    """The table and 0-based address of a field."""
    if "table" not in raw and default_table is None:
        raise ConfigurationError(where, f"{what}: missing key 'table' ({', '.join(TABLES)})")
    table = raw.get("table", default_table)
    if table not in TABLES:
        raise ConfigurationError(
            where_in(raw, "table", where),
            f"{what}: table must be one of {', '.join(TABLES)}, got {table!r}",
        )
    if writable and table not in WRITABLE_TABLES:
        raise ConfigurationError(
            where_in(raw, "table", where),
            f"{what}: written, so it must live in a writable table (coil or holding), not {table}",
        )
    if "address" not in raw:
        raise ConfigurationError(where, f"{what}: missing key 'address' (0-based, as on the wire)")
    return str(table), _integer(raw, "address", where, what, low=0, high=65535)


def _named_type(raw: Mapping[str, Any], key: str, where: Where, what: str) -> str:
    if key not in raw:
        raise ConfigurationError(where, f"{what}: missing key {key!r} (the register type)")
    text = raw[key]
    if not isinstance(text, str):
        raise ConfigurationError(where_in(raw, key, where), f"{what}: {key} must be text")
    return canonical_type(text, where_in(raw, key, where))


def _value_type(
    value_type: str | None, register_type: str, *, int_scaling: bool, where: Where, what: str
) -> str:
    """What callers see for a register type: derived when not given, else checked."""
    if value_type is None:
        scaled_int = is_integer_type(register_type) and not int_scaling
        return "float64" if scaled_int else register_type
    compatible = (
        value_type == register_type
        or (
            is_float_type(value_type)
            and (is_integer_type(register_type) or is_float_type(register_type))
        )
        or (is_integer_type(value_type) and is_integer_type(register_type))
    )
    if not compatible:
        raise ConfigurationError(
            where, f"{what}: a {value_type} value cannot travel as {register_type} registers"
        )
    if is_integer_type(value_type) and not int_scaling:
        raise ConfigurationError(
            where,
            f"{what}: an integer value needs integer scale and offset (or make its type a float)",
        )
    return value_type


def _codec(raw: Mapping[str, Any], register_type: str, where: Where, what: str) -> Codec:
    """The register codec of a field in a register table."""
    scale = _number(raw, "scale", where, what, 1)
    offset = _number(raw, "offset", where, what, 0)
    if scale == 0 or not math.isfinite(scale) or not math.isfinite(offset):
        raise ConfigurationError(
            where_in(raw, "scale", where), f"{what}: scale must be finite and not 0"
        )
    if register_type in ("bool", "string") and (scale != 1 or offset != 0):
        raise ConfigurationError(
            where_in(raw, "scale" if "scale" in raw else "offset", where),
            f"{what}: scale and offset do not apply to {register_type}",
        )
    length = 0
    if register_type == "string":
        if "length" not in raw:
            raise ConfigurationError(where, f"{what}: a string needs length (registers)")
        length = _integer(raw, "length", where, what, low=1, high=MAX_STRING_REGISTERS)
    elif "length" in raw:
        raise ConfigurationError(
            where_in(raw, "length", where), f"{what}: length applies to strings only"
        )
    word_order = _order(raw, "word_order", where, what)
    byte_order = _order(raw, "byte_order", where, what)
    return Codec(register_type, word_order, byte_order, scale, offset, length)


def parse_field(
    raw: Mapping[str, Any],
    where: Where,
    what: str,
    *,
    value_type: str | None,
    register_type: str | None,
    default_table: str | None,
    writable: bool,
) -> Field:
    """Check one place (table, address, encoding) and build its codec.

    ``value_type`` is what callers see (a signal's ``type``); ``None`` derives it
    from the register type and scaling (command fields). ``register_type`` None
    reads it from the ``type`` key.
    """
    table, address = _place(raw, where, what, default_table=default_table, writable=writable)
    reg_key = "raw" if value_type is not None and "raw" in raw else "type"
    if register_type is None:
        register_type = _named_type(raw, "type", where, what)
    type_where = where_in(raw, reg_key, where)

    if table in BIT_TABLES:
        if register_type != "bool" or value_type not in (None, "bool"):
            raise ConfigurationError(type_where, f"{what}: a {table} holds one bit: type bool")
        for key in ("word_order", "byte_order", "scale", "offset", "length", "raw"):
            if key in raw:
                raise ConfigurationError(
                    where_in(raw, key, where), f"{what}: {key} does not apply to a {table}"
                )
        return Field(table, address, Codec("bool"), "bool", what)

    codec = _codec(raw, register_type, where, what)
    int_scaling = isinstance(codec.scale, int) and isinstance(codec.offset, int)
    value_type = _value_type(
        value_type, register_type, int_scaling=int_scaling, where=type_where, what=what
    )
    if address + codec.width > 65536:
        raise ConfigurationError(
            where_in(raw, "address", where),
            f"{what}: {codec.width} registers from {address} run past address 65535",
        )
    return Field(table, address, codec, value_type, what)


@dataclass(frozen=True)
class ReadRun:
    """Neighbouring values of one codec in one reply, decoded with one struct call."""

    request: int
    offset: int
    count: int
    codec: Codec
    bits: bool
    positions: tuple[int, ...]  # where each value goes in the caller's list


@dataclass(frozen=True)
class ReadProgram:
    """A batched read, planned once: the requests, then how to cut the replies."""

    fields: tuple[Field, ...]
    plan: Plan
    runs: tuple[ReadRun, ...]
    positions: tuple[int, ...]  # the runs' positions, one after the other
    in_order: bool  # positions are 0, 1, 2 ...: the decoded values need no shuffle
    owners: tuple[object, ...] = ()  # what the caller passed, kept alive with the program


def compile_read(
    fields: Sequence[Field], *, max_gap: int = 0, owners: tuple[object, ...] = ()
) -> ReadProgram:
    """Plan the requests for ``fields`` and group neighbours that decode together."""
    read_plan = plan([f.span for f in fields], max_gap=max_gap)
    order = sorted(range(len(fields)), key=lambda i: read_plan.slots[i])
    runs: list[ReadRun] = []
    for i in order:
        field = fields[i]
        request, offset = read_plan.slots[i]
        bits = field.table in BIT_TABLES
        last = runs[-1] if runs else None
        if (
            last is not None
            and not bits
            and not last.bits
            and field.codec.bulk
            and last.request == request
            and last.codec == field.codec
            and offset == last.offset + last.count * field.codec.width
        ):
            runs[-1] = ReadRun(
                request, last.offset, last.count + 1, last.codec, False, (*last.positions, i)
            )
        else:
            runs.append(ReadRun(request, offset, 1, field.codec, bits, (i,)))
    positions = tuple(p for run in runs for p in run.positions)
    return ReadProgram(
        tuple(fields),
        read_plan,
        tuple(runs),
        positions,
        positions == tuple(range(len(fields))),
        owners,
    )


def parse_signal(spec: SignalSpec) -> ModbusSignal:
    """A signal's Modbus place, checked (ConfigurationError with file:line)."""
    raw = spec.raw
    what = f"signal {spec.name}"
    check_keys(raw, GENERIC_SIGNAL_KEYS | SIGNAL_KEYS, spec.where, what)
    register_type = spec.type
    if "raw" in raw:
        if not isinstance(raw["raw"], str):
            raise ConfigurationError(where_in(raw, "raw", spec.where), f"{what}: raw must be text")
        register_type = canonical_type(raw["raw"], where_in(raw, "raw", spec.where))
    field = parse_field(
        raw,
        spec.where,
        what,
        value_type=spec.type,
        register_type=register_type,
        default_table=None,
        writable=spec.writable,
    )
    return ModbusSignal(spec, field)


def parse_command(spec: CommandSpec) -> ModbusCommand:
    """A command's registers, checked (ConfigurationError with file:line)."""
    raw = spec.raw
    what = f"command {spec.name}"
    check_keys(raw, GENERIC_COMMAND_KEYS | COMMAND_KEYS, spec.where, what)
    writes_raw = raw.get("write", [])
    if not isinstance(writes_raw, list):
        raise ConfigurationError(
            where_in(raw, "write", spec.where), f"{what}: write must be a list, one per argument"
        )
    if len(writes_raw) != len(spec.args):
        raise ConfigurationError(
            where_in(raw, "write", spec.where),
            f"{what}: {len(spec.args)} argument(s) ({', '.join(spec.args) or 'none'}) "
            f"but {len(writes_raw)} write entries",
        )
    placed: list[tuple[Field, Where]] = []  # every field of the command, where it is written
    for i, (entry, arg) in enumerate(zip(writes_raw, spec.args, strict=True)):
        at = _item_where(writes_raw, i, raw, "write", spec.where)
        placed.append(_entry(entry, at, f"{what} argument {arg}", True))
    writes = tuple(field for field, _ in placed)
    trigger: Field | None = None
    trigger_value: int | bool = 0
    if "trigger" in raw:
        trigger, trigger_value, t_where = _trigger(raw, spec.where, what)
        placed.append((trigger, t_where))
    if trigger is None and not writes:
        raise ConfigurationError(spec.where, f"{what}: needs a trigger, write entries or both")
    results_raw = raw.get("results", [])
    if not isinstance(results_raw, list):
        raise ConfigurationError(
            where_in(raw, "results", spec.where), f"{what}: results must be a list"
        )
    first_result = len(placed)
    for i, entry in enumerate(results_raw):
        at = _item_where(results_raw, i, raw, "results", spec.where)
        placed.append(_entry(entry, at, f"{what} result {i}", False))
    results = tuple(field for field, _ in placed[first_result:])
    _check_overlaps(placed)
    returns = raw.get("returns")
    if isinstance(returns, list) and len(returns) != len(results):
        raise ConfigurationError(
            where_in(raw, "returns", spec.where),
            f"{what}: returns names {len(returns)} value(s) but results has {len(results)}",
        )
    return ModbusCommand(spec, writes, trigger, trigger_value, results)


def _check_overlaps(placed: Sequence[tuple[Field, Where]]) -> None:
    """No two fields of one command may share a register (or coil).

    An argument overlapping another would be half overwritten; a trigger inside
    an argument would be written with it; a result overlapping anything reads
    back something other than a result.
    """
    for i, (field, where) in enumerate(placed):
        span = field.span
        for other, _ in placed[:i]:
            if (
                other.table == field.table
                and span.address < other.span.end
                and other.span.address < span.end
            ):
                raise ConfigurationError(
                    where,
                    f"{field.label} ({_describe(span)}) overlaps "
                    f"{other.label} ({_describe(other.span)})",
                )


def _describe(span: Span) -> str:
    last = span.end - 1
    return f"{span.table} {span.address}" + (f"-{last}" if last != span.address else "")


def _item_where(
    items: list[Any], index: int, raw: Mapping[str, Any], key: str, default: Where
) -> Where:
    if isinstance(items, PosList):
        return items.at(index)
    return where_in(raw, key, default)


def _entry(entry: Any, where: Where, what: str, written: bool) -> tuple[Field, Where]:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(where, f"{what}: expected a mapping with table, address, type")
    check_keys(entry, FIELD_KEYS, where, what)
    entry_where = getattr(entry, "where", where)
    field = parse_field(
        entry,
        entry_where,
        what,
        value_type=None,
        register_type=None,
        default_table="holding",
        writable=written,
    )
    return field, entry_where


def _trigger(raw: Mapping[str, Any], where: Where, what: str) -> tuple[Field, int | bool, Where]:
    entry = raw["trigger"]
    t_where = where_in(raw, "trigger", where)
    if not isinstance(entry, Mapping):
        raise ConfigurationError(t_where, f"{what}: trigger must be a mapping (address, value)")
    check_keys(entry, TRIGGER_KEYS, t_where, f"{what} trigger")
    t_where = getattr(entry, "where", t_where)
    # Writing 0 (or false) to a trigger resets it, so a command needs another value.
    table = entry.get("table", "holding")
    if table == "coil":
        value = entry.get("value", True)
        if value is not True:
            raise ConfigurationError(
                where_in(entry, "value", t_where), f"{what}: a coil trigger's value is true"
            )
        register_type = "bool"
    else:
        value = entry.get("value", 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
            raise ConfigurationError(
                where_in(entry, "value", t_where),
                f"{what}: trigger value must be an integer in [1, 65535] (0 resets)",
            )
        register_type = "uint16"
    place = {k: v for k, v in entry.items() if k != "value"}
    field = parse_field(
        place,
        t_where,
        f"{what} trigger",
        value_type=None,
        register_type=register_type,
        default_table="holding",
        writable=True,
    )
    return field, value, t_where


def check_settings(profile: Profile) -> tuple[str | None, int]:
    """The profile-level ``probe`` and ``max_gap``, checked."""
    settings = profile.settings
    probe = settings.get("probe")
    if probe is not None and (not isinstance(probe, str) or probe not in profile.signals):
        raise ConfigurationError(
            where_in(settings, "probe", profile.where),
            f"profile {profile.name}: probe must name one of its signals, got {probe!r}",
        )
    max_gap = 0
    if "max_gap" in settings:
        max_gap = _integer(
            settings,
            "max_gap",
            profile.where,
            f"profile {profile.name}",
            low=0,
            high=READ_LIMITS["input"] - 2,
        )
    return probe, max_gap
