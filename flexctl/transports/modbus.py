"""Modbus TCP and RTU transports, on pymodbus 3.16 asyncio clients.

This module holds what both share (:class:`ModbusTransport`) and Modbus TCP.
Elsewhere:

* :mod:`flexctl.transports.modbus_profile`: the profile keys of signals and
  commands (tables, addresses, encodings; a command's writes, trigger and
  results) and how a batched read is planned;
* :mod:`flexctl.transports.modbus_endpoint`: ``modbus-tcp://host:port?unit=1``
  and ``modbus-rtu:///dev/ttyUSB0?unit=1&baudrate=19200...``;
* :mod:`flexctl.transports.modbus_rtu`: Modbus RTU, one RS-485 bus shared by
  every unit on it;
* :mod:`flexctl.transports.modbus_codec` and :mod:`flexctl.transports.modbus_plan`:
  register encodings and request planning.

A command writes its arguments, pulls its trigger, then reads its results:
the arguments in as few requests as possible, then the trigger as a write of
its own (one register or coil), last, then the results batched like any read.

Timeouts and retries have one owner, :class:`flexctl.transports.base.Transport`:
pymodbus clients run with ``retries=0``, no reconnect of their own and a
library timeout well above ours, as a safety net only.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

import structlog
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from flexctl.clock import Clock
from flexctl.errors import (
    ConfigurationError,
    DeviceBusyError,
    FlexctlError,
    NotConnectedError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.profile import (
    CommandSpec,
    Profile,
    SignalSpec,
    Value,
    check_value,
    coerce,
)
from flexctl.transports.base import (
    CommandAddress,
    SignalAddress,
    Transport,
    TransportOptions,
)
from flexctl.transports.modbus_codec import Codec
from flexctl.transports.modbus_endpoint import parse_tcp_endpoint
from flexctl.transports.modbus_plan import BIT_TABLES, WRITE_LIMITS, plan
from flexctl.transports.modbus_profile import (
    COMMAND_KEYS,
    PROFILE_KEYS,
    SIGNAL_KEYS,
    Field,
    ModbusCommand,
    ModbusSignal,
    ReadProgram,
    check_settings,
    compile_read,
    parse_command,
    parse_signal,
)

log = structlog.get_logger("flexctl.transport.modbus")

#: Read function codes per table, to check that a reply answers our request.
_READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
_PLAN_CACHE_SIZE = 64

Send = Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]


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
        if items:
            # The arguments first, coalesced; never bridging a gap on a write (it
            # would overwrite registers nobody named).
            write_plan = plan([f.span for f, _ in items], limits=WRITE_LIMITS)
            blocks: list[list[Any]] = [[None] * r.count for r in write_plan.requests]
            for (index, offset), (_, values) in zip(write_plan.slots, items, strict=True):
                blocks[index][offset : offset + len(values)] = values
            for request, block in zip(write_plan.requests, blocks, strict=True):
                await self._write_request(request.table, request.address, block)
        trigger = command.trigger
        if trigger is not None:
            # Then the trigger, alone and last: a device that acts on the trigger
            # the moment it lands must find every argument already in place.
            value = command.trigger_value
            bit = trigger.table in BIT_TABLES
            await self._write_request(
                trigger.table, trigger.address, [bool(value)] if bit else [int(value)]
            )
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
        # A write's reply echoes where (and what, or how much) it wrote: on RTU,
        # which has no transaction id, this tells a stale reply from ours.
        echo = _echo(function_code, response)
        expected = (address, _echo_value(function_code, values))
        if echo != expected:
            raise self._out_of_step(what, f"reply echoes {echo}, expected {expected}")

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
        except FlexctlError:
            raise
        except (ValueError, TypeError) as exc:  # pymodbus refused to build the request
            raise ProtocolError(self.device, f"{what}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # anything else from the library: the link's state is unknown
            raise self._out_of_step(what, f"{type(exc).__name__}: {exc}") from exc
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


def _echo(function_code: int, response: ModbusPDU) -> tuple[int, int]:
    """What a write's reply echoes: the address, and the value (FC5/6) or count (FC15/16)."""
    if function_code == 6:
        return response.address, response.registers[0] if response.registers else -1
    if function_code == 5:
        return response.address, int(bool(response.bits[0])) if response.bits else -1
    return response.address, response.count


def _echo_value(function_code: int, values: list[Any]) -> int:
    if function_code == 6:
        return int(values[0])
    if function_code == 5:
        return int(bool(values[0]))
    return len(values)


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
        self._lock = asyncio.Lock()

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """One request on this connection at a time, waited for outside its timeout.

        pymodbus sends one client's requests one after the other anyway; queueing
        here instead means the time spent behind other requests of this client
        does not count against a request's own timeout.
        """
        return self._lock

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
