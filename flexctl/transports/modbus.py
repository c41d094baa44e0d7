"""Modbus TCP and RTU transports, on pymodbus 3.16 asyncio clients.

Endpoints::

    modbus-tcp://host:port?unit=1                      (port defaults to 502)
    modbus-rtu:///dev/ttyUSB0?unit=1&baudrate=19200&parity=N&stopbits=1&bytesize=8

``unit`` (the Modbus unit id) defaults to 1.

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
coil when ``value`` is true/false). Arguments and trigger are written in as few
requests as possible (FC16 over a contiguous block, the trigger's block last),
then the results are read (batched like any read) and returned as a list.

Profile-level keys: ``probe`` (the signal read on connect to prove the device
answers; default the first signal) and ``max_gap`` (unused addresses a batched
read may bridge; default 0, so only addresses the profile names are read).

Timeouts and retries have one owner, :class:`flexctl.transports.base.Transport`:
pymodbus clients run with ``retries=0``, no reconnect of their own and a
library timeout well above ours, as a safety net only.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from flexctl.clock import Clock
from flexctl.errors import (
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    OutOfRangeError,
    ProtocolError,
    Where,
)
from flexctl.profile import (
    GENERIC_COMMAND_KEYS,
    GENERIC_SIGNAL_KEYS,
    CommandSpec,
    Profile,
    SignalSpec,
    Value,
    canonical_type,
    check_keys,
    check_value,
    coerce,
    where_in,
)
from flexctl.transports.base import (
    CommandAddress,
    SignalAddress,
    Transport,
    TransportOptions,
)
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

log = structlog.get_logger("flexctl.transport.modbus")

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
#: Read function codes per table, to check that a reply answers our request.
_READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_PLAN_CACHE_SIZE = 64

Send = Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]


# -- profile ---------------------------------------------------------------------


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
    writes = tuple(
        _entry(
            entry,
            _item_where(writes_raw, i, raw, "write", spec.where),
            f"{what} argument {arg}",
            True,
        )
        for i, (entry, arg) in enumerate(zip(writes_raw, spec.args, strict=True))
    )
    trigger: Field | None = None
    trigger_value: int | bool = 0
    if "trigger" in raw:
        trigger, trigger_value = _trigger(raw, spec.where, what)
    if trigger is None and not writes:
        raise ConfigurationError(spec.where, f"{what}: needs a trigger, write entries or both")
    results_raw = raw.get("results", [])
    if not isinstance(results_raw, list):
        raise ConfigurationError(
            where_in(raw, "results", spec.where), f"{what}: results must be a list"
        )
    results = tuple(
        _entry(
            entry,
            _item_where(results_raw, i, raw, "results", spec.where),
            f"{what} result {i}",
            False,
        )
        for i, entry in enumerate(results_raw)
    )
    returns = raw.get("returns")
    if isinstance(returns, list) and len(returns) != len(results):
        raise ConfigurationError(
            where_in(raw, "returns", spec.where),
            f"{what}: returns names {len(returns)} value(s) but results has {len(results)}",
        )
    return ModbusCommand(spec, writes, trigger, trigger_value, results)


def _item_where(
    items: list[Any], index: int, raw: Mapping[str, Any], key: str, default: Where
) -> Where:
    if isinstance(items, PosList):
        return items.at(index)
    return where_in(raw, key, default)


def _entry(entry: Any, where: Where, what: str, written: bool) -> Field:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(where, f"{what}: expected a mapping with table, address, type")
    check_keys(entry, FIELD_KEYS, where, what)
    entry_where = getattr(entry, "where", where)
    return parse_field(
        entry,
        entry_where,
        what,
        value_type=None,
        register_type=None,
        default_table="holding",
        writable=written,
    )


def _trigger(raw: Mapping[str, Any], where: Where, what: str) -> tuple[Field, int | bool]:
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
    return field, value


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


# -- endpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class SerialSettings:
    """One RS-485 bus: the port and its line settings."""

    path: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    @property
    def frame_gap(self) -> float:
        """Modbus RTU's silent interval t3.5 (seconds): 3.5 character times, >= 1.75 ms."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits / self.baudrate, 0.00175)


def _query(endpoint: str, allowed: Mapping[str, tuple[str, ...] | None]) -> dict[str, str]:
    split = urlsplit(endpoint)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        if key not in allowed:
            raise ConfigurationError(
                Where(endpoint),
                f"unknown endpoint parameter {key!r} "
                f"(expected one of {', '.join(sorted(allowed))})",
            )
        options = allowed[key]
        if options is not None and value not in options:
            raise ConfigurationError(
                Where(endpoint), f"endpoint parameter {key} must be one of {', '.join(options)}"
            )
        query[key] = value
    return query


def _int_param(
    endpoint: str, query: Mapping[str, str], key: str, default: int, *, low: int, high: int
) -> int:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigurationError(
            Where(endpoint), f"endpoint parameter {key} must be an integer in [{low}, {high}]"
        )
    return value


def parse_tcp_endpoint(endpoint: str) -> tuple[str, int, int]:
    """``modbus-tcp://host:port?unit=N`` as (host, port, unit)."""
    split = urlsplit(endpoint)
    query = _query(endpoint, {"unit": None})
    try:
        port = split.port or 502
    except ValueError:
        raise ConfigurationError(Where(endpoint), "endpoint port must be 1..65535") from None
    if not split.hostname:
        raise ConfigurationError(Where(endpoint), "endpoint needs a host: modbus-tcp://host:port")
    return split.hostname, port, _int_param(endpoint, query, "unit", 1, low=0, high=255)


def parse_rtu_endpoint(endpoint: str) -> tuple[SerialSettings, int]:
    """``modbus-rtu:///dev/tty?unit=N&baudrate=...`` as (serial settings, unit)."""
    split = urlsplit(endpoint)
    query = _query(
        endpoint,
        {
            "unit": None,
            "baudrate": None,
            "parity": ("N", "E", "O"),
            "stopbits": ("1", "2"),
            "bytesize": ("7", "8"),
        },
    )
    if split.netloc or not split.path:
        raise ConfigurationError(
            Where(endpoint), "endpoint needs a port path: modbus-rtu:///dev/ttyUSB0"
        )
    settings = SerialSettings(
        path=split.path,
        baudrate=_int_param(endpoint, query, "baudrate", 19200, low=50, high=4_000_000),
        bytesize=int(query.get("bytesize", "8")),
        parity=query.get("parity", "N"),
        stopbits=int(query.get("stopbits", "1")),
    )
    # unit 0 is broadcast on a serial bus: nobody answers it
    return settings, _int_param(endpoint, query, "unit", 1, low=1, high=247)


# -- transports ------------------------------------------------------------------


class ModbusTransport(Transport):
    """What Modbus TCP and RTU share: profile, batching, encoding, error mapping."""

    family: ClassVar[str] = "modbus"
    signal_keys: ClassVar[frozenset[str]] = SIGNAL_KEYS
    command_keys: ClassVar[frozenset[str]] = COMMAND_KEYS
    profile_keys: ClassVar[frozenset[str]] = PROFILE_KEYS

    def __init__(
        self,
        profile: Profile,
        endpoint: str,
        *,
        clock: Clock,
        device: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        super().__init__(profile, endpoint, clock=clock, device=device, options=options)
        probe, self.max_gap = check_settings(profile)
        first = next(iter(self._signals), None)
        self._probe_name = probe or first
        self._programs: dict[tuple[int, ...], ReadProgram] = {}
        self.unit = 1

    @classmethod
    def parse_signal(cls, spec: SignalSpec) -> ModbusSignal:
        return parse_signal(spec)

    @classmethod
    def parse_command(cls, spec: CommandSpec) -> ModbusCommand:
        return parse_command(spec)

    @classmethod
    def check_profile(cls, profile: Profile) -> None:
        super().check_profile(profile)
        check_settings(profile)

    @property
    def library_timeout(self) -> float:
        """pymodbus's own timeout: a safety net well behind ours, never the one that fires."""
        return 2.0 * max(self.options.timeout, self.options.connect_timeout) + 1.0

    # -- hooks -------------------------------------------------------------------

    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        if len(addresses) == 1:  # the common case, without planning
            field = _field_of(addresses[0])
            values = await self._read_request(field.table, field.address, field.width)
            return [self._decode(field, values)]
        return await self._read_fields(addresses)

    async def _write(self, address: SignalAddress, wire: Value) -> None:
        field = _field_of(address)
        await self._write_request(field.table, field.address, self._encode(field, wire))

    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        if not isinstance(command, ModbusCommand):
            raise ConfigurationError(command.spec.where, f"{command.name} is not a Modbus command")
        items: list[tuple[Field, list[int] | list[bool]]] = []
        for field, arg in zip(command.writes, args, strict=True):
            items.append((field, self._encode(field, check_value(field.type, arg, field.label))))
        trigger_at = -1
        if command.trigger is not None:
            trigger_at = len(items)
            value = command.trigger_value
            items.append((command.trigger, [value] if isinstance(value, bool) else [int(value)]))
        # Never bridge gaps on a write: it would overwrite registers nobody named.
        write_plan = plan([f.span for f, _ in items], limits=WRITE_LIMITS)
        blocks: list[list[Any]] = [[None] * r.count for r in write_plan.requests]
        for (index, offset), (_, values) in zip(write_plan.slots, items, strict=True):
            blocks[index][offset : offset + len(values)] = values
        order = list(range(len(write_plan.requests)))
        if trigger_at >= 0:  # the trigger's request goes last, after every argument
            last = write_plan.slots[trigger_at][0]
            order.remove(last)
            order.append(last)
        for index in order:
            request = write_plan.requests[index]
            await self._write_request(request.table, request.address, blocks[index])
        if not command.results:
            return []
        results = await self._read_fields(command.results)
        return [
            coerce(f.type, v, f.label, self.device)
            for f, v in zip(command.results, results, strict=True)
        ]

    # -- batching ----------------------------------------------------------------

    async def _read_fields(self, items: Sequence[SignalAddress] | Sequence[Field]) -> list[Value]:
        """Read signals (or command result fields) in as few requests as planned."""
        # Keyed by identity: the program holds the items, so while it is cached no
        # other object can take their ids. Polling loops repeat the same batches.
        key = tuple(map(id, items))
        program = self._programs.get(key)
        if program is None:
            fields = [item if isinstance(item, Field) else _field_of(item) for item in items]
            program = compile_read(fields, max_gap=self.max_gap, owners=tuple(items))
            if len(self._programs) >= _PLAN_CACHE_SIZE:
                self._programs.pop(next(iter(self._programs)))
            self._programs[key] = program
        replies = [
            await self._read_request(r.table, r.address, r.count) for r in program.plan.requests
        ]
        flat: list[Value] = []
        for run in program.runs:
            reply = replies[run.request]
            if run.bits:
                flat.append(bool(reply[run.offset]))
                continue
            words = reply[run.offset : run.offset + run.count * run.codec.width]
            try:
                flat += run.codec.decode_many(words, run.count)
            except OutOfRangeError as exc:
                label = program.fields[run.positions[0]].label
                raise ProtocolError(self.device, f"{label}: {exc}") from None
        if program.in_order:
            return flat
        values: list[Any] = [None] * len(flat)
        for position, value in zip(program.positions, flat, strict=True):
            values[position] = value
        return values

    def _decode(self, field: Field, values: Sequence[int] | Sequence[bool]) -> Value:
        if field.table in BIT_TABLES:
            return bool(values[0])
        try:
            return field.codec.decode(values)
        except OutOfRangeError as exc:
            raise ProtocolError(self.device, f"{field.label}: {exc}") from None

    @staticmethod
    def _encode(field: Field, wire: Value) -> list[int] | list[bool]:
        if field.table in BIT_TABLES:
            return [Codec.encode_bit(wire)]
        return field.codec.encode(wire)

    # -- requests ----------------------------------------------------------------

    async def _read_request(self, table: str, address: int, count: int) -> list[int] | list[bool]:
        unit = self.unit
        what = f"read {table} {address}+{count}"
        if table == "input":
            response = await self._exchange(
                what, lambda c: c.read_input_registers(address, count=count, device_id=unit)
            )
        elif table == "holding":
            response = await self._exchange(
                what, lambda c: c.read_holding_registers(address, count=count, device_id=unit)
            )
        elif table == "discrete":
            response = await self._exchange(
                what, lambda c: c.read_discrete_inputs(address, count=count, device_id=unit)
            )
        else:
            response = await self._exchange(
                what, lambda c: c.read_coils(address, count=count, device_id=unit)
            )
        if response.function_code != _READ_FC[table]:
            raise self._out_of_step(what, f"reply has function code {response.function_code}")
        if table in BIT_TABLES:
            bits = response.bits
            if len(bits) < count or len(bits) >= count + 8:  # bits come padded to a byte
                raise self._out_of_step(what, f"{len(bits)} bits in reply")
            return list(bits[:count])
        registers = response.registers
        if len(registers) != count:
            raise self._out_of_step(what, f"{len(registers)} registers in reply")
        return list(registers)

    async def _write_request(self, table: str, address: int, values: list[Any]) -> None:
        what = f"write {table} {address}+{len(values)}"
        if table not in ("holding", "coil"):  # parse_field refuses this; kept as a guard
            raise ConfigurationError(self.profile.where, f"{what}: {table} is read-only")
        function_code, send = _write_sender(table, address, values, self.unit)
        response = await self._exchange(what, send)
        if response.function_code != function_code:
            raise self._out_of_step(what, f"reply has function code {response.function_code}")

    async def _probe(self) -> None:
        """Prove the device answers (a serial port opens with nothing behind it)."""
        if self._probe_name is None:
            return
        field = _field_of(self._signals[self._probe_name])
        await self._read_request(field.table, field.address, field.width)

    def _check(self, what: str, response: ModbusPDU) -> ModbusPDU:
        """A device's exception reply as a typed error."""
        if not response.isError():
            return response
        code = int(response.exception_code)
        if code == ExcCodes.DEVICE_BUSY:
            raise DeviceBusyError(f"{self.device}: {what}: device busy (Modbus exception 6)")
        try:
            status: str | None = ExcCodes(code).name
        except ValueError:
            status = None
        raise ProtocolError(self.device, what, code=code, status=status)

    def _out_of_step(self, what: str, detail: str) -> NotConnectedError:
        """A reply that does not match its request: resynchronise the link."""
        self._mark_out_of_step()
        return NotConnectedError(self.device, f"{what}: link out of step: {detail}")

    def _mark_out_of_step(self) -> None:
        """Subclasses flush or reopen the link before the next request."""

    async def _send(self, client: ModbusBaseClient, what: str, send: Send) -> ModbusPDU:
        """Run one pymodbus request and map its exceptions into flexctl's tree."""
        try:
            response = await send(client)
        except ConnectionException as exc:
            raise NotConnectedError(self.device, f"{what}: {exc}") from exc
        except ModbusIOException as exc:  # garbled or foreign reply
            raise self._out_of_step(what, str(exc)) from exc
        except ModbusException as exc:
            raise ProtocolError(self.device, f"{what}: {exc}") from exc
        except OSError as exc:
            raise NotConnectedError(self.device, f"{what}: {exc}") from exc
        return self._check(what, response)

    @abstractmethod
    async def _exchange(self, what: str, send: Send) -> ModbusPDU:
        """Send one request on the link and return the (non-error) reply."""


def _write_sender(table: str, address: int, values: list[Any], unit: int) -> tuple[int, Send]:
    """The function code and the pymodbus call that write ``values`` (one or many)."""
    if table == "holding":
        if len(values) == 1:
            value = int(values[0])
            return 6, lambda c: c.write_register(address, value, device_id=unit)
        return 16, lambda c: c.write_registers(address, values, device_id=unit)
    if len(values) == 1:
        bit = bool(values[0])
        return 5, lambda c: c.write_coil(address, bit, device_id=unit)
    return 15, lambda c: c.write_coils(address, values, device_id=unit)


def _field_of(address: SignalAddress) -> Field:
    if not isinstance(address, ModbusSignal):
        raise ConfigurationError(address.spec.where, f"{address.name} is not a Modbus signal")
    return address.field


class ModbusTcpTransport(ModbusTransport):
    """Modbus TCP: one pymodbus client (one TCP connection) per transport."""

    schemes: ClassVar[tuple[str, ...]] = ("modbus-tcp",)

    def __init__(
        self,
        profile: Profile,
        endpoint: str,
        *,
        clock: Clock,
        device: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        super().__init__(profile, endpoint, clock=clock, device=device, options=options)
        self.host, self.port, self.unit = parse_tcp_endpoint(endpoint)
        self._client: AsyncModbusTcpClient | None = None
        self._busy = False

    async def _open(self) -> None:
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            name=self.device,
            reconnect_delay=0,  # reconnecting is the base class's job
            retries=0,  # so is retrying
            timeout=self.library_timeout,
            trace_connect=self._on_connect,
        )
        self._client = client
        if not await client.connect():
            raise NotConnectedError(self.device, f"cannot connect to {self.host}:{self.port}")
        await self._probe()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except Exception as exc:  # closing must never raise; say what happened
            log.warning("modbus close failed", device=self.device, error=repr(exc))

    async def _exchange(self, what: str, send: Send) -> ModbusPDU:
        client = self._client
        if client is None or not client.connected:
            raise NotConnectedError(self.device, f"{what}: connection closed")
        self._busy = True
        try:
            return await self._send(client, what, send)
        finally:
            self._busy = False

    def _on_connect(self, up: bool) -> None:
        """pymodbus says the peer closed the connection: fail fast, then reconnect."""
        client = self._client
        if up or client is None:
            return
        future = getattr(client.ctx, "response_future", None)
        if self._busy and isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ConnectionException("connection closed by the device"))
        self._link_lost(NotConnectedError(self.device, "connection closed by the device"))


class RtuBus:
    """One RS-485 port: a pymodbus client, a lock and the inter-frame gap.

    Several units on one bus share it (one transport per unit): the port opens
    with the first request and closes when the last transport lets go. After a
    reply went missing or came garbled the bus is *unsettled*: before the next
    frame the port is closed and reopened (pyserial flushes its input on open)
    and then must stay silent for a while, so that a late reply to a request we
    gave up on is thrown away instead of being taken for the next one.
    """

    def __init__(self, settings: SerialSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.lock = asyncio.Lock()
        self.users = 0
        self.client: AsyncModbusSerialClient | None = None
        self.gap = settings.frame_gap
        self.unsettled = False
        self.reopened = 0
        self._ready = asyncio.Event()
        self._quiet_at = 0.0  # end of the last frame on the wire (loop time)
        self._heard = asyncio.Event()  # bytes arrived

    def mark_unsettled(self) -> None:
        """A reply went missing or came garbled: resynchronise before the next frame."""
        self.unsettled = True

    async def exchange(self, transport: ModbusTransport, what: str, send: Send) -> ModbusPDU:
        """One request and its reply, alone on the bus."""
        async with self.lock:
            client = self.client
            if client is None or self.unsettled or not client.connected:
                client = await self._reopen(transport)
            # Modbus RTU needs 3.5 silent character times between frames. This is
            # wire time, not process time, so it waits on the real loop clock.
            wait = self._quiet_at + self.gap - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            in_step = False
            try:
                response = await transport._send(client, what, send)
                in_step = True
            except (ProtocolError, DeviceBusyError):
                in_step = True  # the device answered: the link is in step
                raise
            finally:
                self._quiet_at = self.loop.time()
                if not in_step:  # timed out (cancelled), lost, or a reply out of step
                    self.unsettled = True
            return response

    async def _reopen(self, transport: ModbusTransport) -> AsyncModbusSerialClient:
        await self.close()
        settle = self.unsettled
        s = self.settings
        self._ready.clear()
        client = AsyncModbusSerialClient(
            s.path,
            framer=FramerType.RTU,
            baudrate=s.baudrate,
            bytesize=s.bytesize,
            parity=s.parity,
            stopbits=s.stopbits,
            name=transport.device,
            reconnect_delay=0,  # reopening is ours
            retries=0,  # retrying is the base class's
            timeout=transport.library_timeout,
            trace_packet=self._on_packet,
            trace_connect=self._on_connect,
        )
        self.client = client
        if not await client.connect():
            self.client = None
            raise NotConnectedError(transport.device, f"cannot open serial port {s.path}")
        await self._ready.wait()  # pymodbus registers its reader on the next loop turn
        self.reopened += 1
        now = self.loop.time()
        self._quiet_at = now
        if settle:
            # Wait until the line has been silent for half a request timeout: a
            # reply later than 1.5 timeouts is taken as never coming. Bytes that
            # arrive meanwhile are stale; pymodbus drops them (no request waits).
            quiet = transport.options.timeout / 2
            while True:
                self._heard.clear()
                try:
                    async with asyncio.timeout(quiet):
                        await self._heard.wait()
                except TimeoutError:
                    break
        self.unsettled = False
        return client

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._heard.set()
        return data

    def _on_connect(self, up: bool) -> None:
        if up:
            self._ready.set()
        else:
            self.unsettled = True

    async def close(self) -> None:
        """Close the port (never raises); the bus may open it again later."""
        client, self.client = self.client, None
        if client is None:
            return
        if not self._ready.is_set():
            await asyncio.sleep(0)  # let pymodbus finish setting the port up before closing it
        try:
            client.close()
        except Exception as exc:  # closing must never raise; say what happened
            log.warning("modbus serial close failed", port=self.settings.path, error=repr(exc))


# One bus per serial port path. A bus outlives its users, so a transport that
# reconnects finds it still unsettled after a timeout; a new event loop (a new
# test, a new run) starts afresh.
_BUSES: dict[str, RtuBus] = {}


def _acquire_bus(settings: SerialSettings, where: Where) -> RtuBus:
    loop = asyncio.get_running_loop()
    bus = _BUSES.get(settings.path)
    if bus is None or bus.loop is not loop:
        bus = _BUSES[settings.path] = RtuBus(settings, loop)
    elif bus.settings != settings:
        if bus.users > 0:
            raise ConfigurationError(
                where,
                f"serial port {settings.path} is already in use with other settings "
                f"({bus.settings.baudrate} baud, {bus.settings.bytesize}{bus.settings.parity}"
                f"{bus.settings.stopbits})",
            )
        fresh = _BUSES[settings.path] = RtuBus(settings, loop)
        fresh.unsettled = bus.unsettled
        bus = fresh
    bus.users += 1
    return bus


async def _release_bus(bus: RtuBus) -> None:
    bus.users -= 1
    if bus.users <= 0:
        bus.users = 0
        await bus.close()


class ModbusRtuTransport(ModbusTransport):
    """Modbus RTU on a serial port, shared (with its lock) by every unit on the bus."""

    schemes: ClassVar[tuple[str, ...]] = ("modbus-rtu",)

    def __init__(
        self,
        profile: Profile,
        endpoint: str,
        *,
        clock: Clock,
        device: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        super().__init__(profile, endpoint, clock=clock, device=device, options=options)
        self.serial, self.unit = parse_rtu_endpoint(endpoint)
        self._bus: RtuBus | None = None

    @property
    def bus(self) -> RtuBus | None:
        """The serial bus this transport shares, while it is open."""
        return self._bus

    async def _open(self) -> None:
        if self._bus is None:
            self._bus = _acquire_bus(self.serial, Where(self.endpoint))
        await self._probe()  # opens the port on first use

    async def _close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            await _release_bus(bus)

    def _mark_out_of_step(self) -> None:
        if self._bus is not None:
            self._bus.mark_unsettled()

    async def _exchange(self, what: str, send: Send) -> ModbusPDU:
        bus = self._bus
        if bus is None:
            raise NotConnectedError(self.device, f"{what}: port closed")
        return await bus.exchange(self, what, send)
