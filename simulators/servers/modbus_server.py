"""Any twin model behind Modbus TCP or Modbus RTU (a pymodbus 3.16 server).

The server reads the same profile as the driver (through the Modbus
transport's own parser), so every signal and command sits exactly where the
driver looks for it. The datastore is pymodbus 3.16's ``SimDevice`` with four
separate tables (coils, discrete inputs, holding and input registers) covering
the profile's addresses only; any other address answers "illegal address".
Its async ``action`` hook runs on every access:

- a read first fills the registers it covers from ``model.read(name)``,
  encoded with the profile's codec (lazy physics: the model integrates on read);
- a write decodes the new registers and calls ``model.write(name, value)``;
  writing a command's trigger runs ``model.call(name, args)`` with the
  arguments last written, and keeps the results for the result registers.

Model errors become Modbus exception codes: OutOfRangeError -> 3 (illegal data
value), DeviceBusyError -> 6 (device busy), UnknownTagError -> 2 (illegal
address); anything else the model refuses -> 4 (device failure).

Faults (``self.faults``, checked on every request): ``stall`` drops requests
unanswered; ``delay`` answers that many wall seconds late; ``corrupt`` damages
the next N reply frames (the MBAP transaction id on TCP, the CRC on RTU);
``error`` answers every request with that exception code.

Several RTU twins can share one bus (``bus=`` the twin that opens the port):
each answers its own unit from its own model, with its own faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import structlog
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from flexctl.errors import DeviceBusyError, FlexctlError, OutOfRangeError, ProtocolError
from flexctl.profile import Profile, SignalSpec, Value
from flexctl.transports.modbus_codec import Codec
from flexctl.transports.modbus_plan import BIT_TABLES, TABLES
from flexctl.transports.modbus_profile import Field, ModbusCommand, parse_command, parse_signal
from simulators.models.base import TwinModel, UnknownTagError
from simulators.servers.base import TwinServer
from simulators.servers.null_modem import NullModem, flush_input

log = structlog.get_logger("simulators.modbus")

#: Which table each function code touches.
_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input"}
_FC_TABLE.update({fc: "holding" for fc in (3, 6, 16, 22, 23)})
_CACHE_SIZE = 1024
_LOG_SIZE = 10_000


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server took it off the wire."""

    unit: int
    function_code: int
    address: int
    count: int


@dataclass(frozen=True)
class _Slot:
    """What lives at a field: a signal, or a command's argument, trigger or result."""

    kind: str  # "signal" | "arg" | "trigger" | "result"
    field: Field
    name: str
    spec: SignalSpec | None = None

    @property
    def addresses(self) -> range:
        return range(self.field.address, self.field.address + self.field.width)


@dataclass(frozen=True)
class _Run:
    """Neighbouring plain numeric signals of one codec: read and encoded together."""

    address: int
    codec: Codec
    names: tuple[str, ...]
    slots: tuple[_Slot, ...]

    @classmethod
    def of(cls, slot: _Slot) -> _Run:
        return cls(slot.field.address, slot.field.codec, (slot.name,), (slot,))

    def joins(self, slot: _Slot) -> bool:
        end = self.address + len(self.names) * self.codec.width
        return slot.field.codec == self.codec and slot.field.address == end

    def add(self, slot: _Slot) -> _Run:
        return _Run(self.address, self.codec, (*self.names, slot.name), (*self.slots, slot))


def _bulk(slot: _Slot) -> bool:
    """A signal whose registers hold one plain number: it may join a run."""
    spec = slot.spec
    return (
        slot.kind == "signal"
        and spec is not None
        and spec.enum is None
        and slot.field.table not in BIT_TABLES
        and slot.field.codec.bulk
    )


class _Refused(Exception):
    """Internal: answer the request with this exception code."""

    def __init__(self, code: ExcCodes) -> None:
        super().__init__(code.name)
        self.code = code


def _refusal(exc: FlexctlError, *, reading: bool) -> _Refused:
    if isinstance(exc, UnknownTagError):
        return _Refused(ExcCodes.ILLEGAL_ADDRESS)
    if isinstance(exc, DeviceBusyError):
        return _Refused(ExcCodes.DEVICE_BUSY)
    if isinstance(exc, OutOfRangeError | ProtocolError) and not reading:
        return _Refused(ExcCodes.ILLEGAL_VALUE)
    # a value the model produced that the profile cannot carry, or any other refusal
    return _Refused(ExcCodes.DEVICE_FAILURE)


class _ModbusTwin(TwinServer):
    """The datastore, action hook and faults shared by the TCP and RTU twins."""

    def __init__(self, model: TwinModel, profile: Profile, *, unit: int) -> None:
        super().__init__(model, profile)
        self.unit = unit
        self.requests: deque[RequestRecord] = deque(maxlen=_LOG_SIZE)
        #: set on every request taken off the wire (tests wait on it instead of sleeping)
        self.heard = asyncio.Event()
        #: (monotonic time, sending, bytes) per frame seen by the server
        self.wire: deque[tuple[float, bool, int]] = deque(maxlen=_LOG_SIZE)
        self._at: dict[str, dict[int, list[_Slot]]] = {t: {} for t in TABLES}
        self._triggers: dict[tuple[str, int], dict[int | bool, ModbusCommand]] = {}
        self._shadow: dict[tuple[str, int], int | bool] = {}  # arguments and results
        self._cache: dict[tuple[str, int, int], tuple[_Slot, ...]] = {}
        self._steps: dict[tuple[str, int, int], tuple[_Slot | _Run, ...]] = {}
        self._server: ModbusBaseServer | None = None
        self._stopping = asyncio.Event()
        for name, spec in profile.signals.items():
            self._add(_Slot("signal", parse_signal(spec).field, name, spec))
        for name, command_spec in profile.commands.items():
            command = parse_command(command_spec)
            for field in command.writes:
                self._add(_Slot("arg", field, name))
            for field in command.results:
                self._add(_Slot("result", field, name))
            if command.trigger is not None:
                where = (command.trigger.table, command.trigger.address)
                if where not in self._triggers:  # one slot per trigger; the value picks the command
                    self._add(_Slot("trigger", command.trigger, name))
                self._triggers.setdefault(where, {})[command.trigger_value] = command

    def _add(self, slot: _Slot) -> None:
        table = self._at[slot.field.table]
        for address in slot.addresses:
            table.setdefault(address, []).append(slot)

    # -- the datastore ---------------------------------------------------------

    def _device(self, unit: int, *, catch_all: bool = False) -> SimDevice:
        blocks = (
            self._block("coil"),
            self._block("discrete"),
            self._block("holding"),
            self._block("input"),
        )
        return SimDevice(
            id=unit, simdata=blocks, action=self._refuse_unit if catch_all else self._action
        )

    def _block(self, table: str) -> list[SimData]:
        """SimData runs over the addresses the profile names in one table."""
        used = self._at[table]
        bits = table in BIT_TABLES
        if not used:  # pymodbus needs every table; this one answers nothing
            if bits:
                return [SimData(address=0, values=[False], datatype=DataType.BITS)]
            return [SimData(address=0, datatype=DataType.INVALID)]
        runs: list[SimData] = []
        addresses = sorted(used)
        start = prev = addresses[0]
        readonly = self._readonly(table, start)
        for address in [*addresses[1:], None]:
            if (
                address is not None
                and address == prev + 1
                and self._readonly(table, address) == readonly
            ):
                prev = address
                continue
            count = prev - start + 1
            if bits:
                runs.append(SimData(address=start, values=[False] * count, datatype=DataType.BITS))
            else:
                runs.append(
                    SimData(
                        address=start,
                        values=[0] * count,
                        datatype=DataType.REGISTERS,
                        readonly=readonly,
                    )
                )
            if address is not None:
                start = prev = address
                readonly = self._readonly(table, address)
        return runs

    def _readonly(self, table: str, address: int) -> bool:
        if table != "holding":
            return False  # pymodbus offers no write function for input registers anyway
        return not any(_writable(slot) for slot in self._at[table][address])

    def _slots_in(self, table: str, first: int, end: int) -> tuple[_Slot, ...]:
        key = (table, first, end)
        slots = self._cache.get(key)
        if slots is None:
            at = self._at[table]
            found: dict[_Slot, None] = {}
            for address in range(first, end):
                for slot in at.get(address, ()):
                    found[slot] = None
            slots = tuple(found)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = slots
        return slots

    async def _action(  # noqa: PLR0917 (pymodbus calls it with six positional arguments)
        self,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this on every access, before it answers from ``registers``."""
        try:
            if self.faults.delay > 0:
                await self._wire_delay(self.faults.delay)
            if self.faults.error is not None:
                return _exc_code(self.faults.error)
            table = _FC_TABLE[function_code]
            if values is None:
                self._fill(table, start, address, count, registers)
            elif table in BIT_TABLES:
                self._store_bits(table, start, address, registers, cast(list[bool], values))
            else:
                self._store_registers(table, start, address, registers, cast(list[int], values))
        except _Refused as refused:
            return refused.code
        return None

    async def _refuse_unit(self, *_: Any) -> ExcCodes | None:
        """Any unit id but ours: a gateway would say the target did not answer."""
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _wire_delay(self, seconds: float) -> None:
        """The ``delay`` fault: wall time on purpose (a slow wire), cut short by stop()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # -- reads -----------------------------------------------------------------

    def _fill(self, table: str, start: int, address: int, count: int, registers: list[int]) -> None:
        if table in BIT_TABLES:
            # pymodbus hands bit tables over as 16-bit registers and ``count`` in
            # registers, so fill every bit of the registers the request touches.
            if address not in self._at[table]:
                raise _Refused(ExcCodes.ILLEGAL_ADDRESS)
            first = (address // 16) * 16
            for slot in self._slots_in(table, first, first + 16 * count):
                held = self._read_slot(slot, table)
                if held:  # arguments and triggers keep the bit that was written
                    _set_bit(registers, slot.field.address - 16 * start, bool(held[0]))
            return
        for step in self._read_steps(table, address, address + count):
            if isinstance(step, _Run):
                words = self._read_run(step, table)
                first = step.address
            else:
                words = self._read_slot(step, table)
                first = step.field.address
            if words:
                registers[first - start : first - start + len(words)] = words

    def _read_run(self, run: _Run, table: str) -> list[int]:
        read = self.model.read
        try:
            return run.codec.encode_many([read(name) for name in run.names])
        except OutOfRangeError:  # say precisely which value failed, one by one
            return [w for slot in run.slots for w in self._read_slot(slot, table)]
        except FlexctlError as exc:
            raise _refusal(exc, reading=True) from exc

    def _read_steps(self, table: str, first: int, end: int) -> tuple[_Slot | _Run, ...]:
        """The slots a register read covers, neighbouring plain numbers grouped in runs."""
        key = (table, first, end)
        steps = self._steps.get(key)
        if steps is None:
            grouped: list[_Slot | _Run] = []
            for slot in self._slots_in(table, first, end):
                last = grouped[-1] if grouped else None
                if not _bulk(slot):
                    grouped.append(slot)
                elif isinstance(last, _Run) and last.joins(slot):
                    grouped[-1] = last.add(slot)
                elif isinstance(last, _Slot) and _bulk(last) and _Run.of(last).joins(slot):
                    grouped[-1] = _Run.of(last).add(slot)
                else:
                    grouped.append(slot)
            steps = tuple(grouped)
            if len(self._steps) >= _CACHE_SIZE:
                self._steps.clear()
            self._steps[key] = steps
        return steps

    def _read_slot(self, slot: _Slot, table: str) -> list[int]:
        """The registers (or the one bit, as 0/1) a slot holds now."""
        if slot.kind == "signal":
            assert slot.spec is not None
            try:
                wire = slot.spec.encode(self.model.read(slot.name))
                if table in BIT_TABLES:
                    return [int(slot.field.codec.encode_bit(wire))]
                return slot.field.codec.encode(wire)
            except FlexctlError as exc:
                raise _refusal(exc, reading=True) from exc
        if slot.kind == "result":
            return [int(self._shadow.get((table, a), 0)) for a in slot.addresses]
        return []  # arguments and triggers read back what was written

    # -- writes ----------------------------------------------------------------

    def _store_registers(
        self, table: str, start: int, address: int, registers: list[int], values: list[int]
    ) -> None:
        end = address + len(values)

        def word(a: int) -> int:
            return values[a - address] if address <= a < end else registers[a - start]

        triggers: list[tuple[_Slot, int]] = []
        for slot in self._slots_in(table, address, end):
            words = [word(a) for a in slot.addresses]
            if slot.kind == "signal":
                self._write_signal(slot, words)
            elif slot.kind == "arg":
                for a, w in zip(slot.addresses, words, strict=True):
                    self._shadow[(table, a)] = w
            elif slot.kind == "trigger":
                triggers.append((slot, words[0]))
            else:
                raise _Refused(ExcCodes.ILLEGAL_ADDRESS)  # results are read-only
        for slot, value in triggers:  # after every argument of the same request
            self._trigger(slot, value)

    def _store_bits(
        self, table: str, start: int, address: int, registers: list[int], values: list[bool]
    ) -> None:
        del start, registers  # bits are taken from ``values`` alone
        at = self._at[table]
        if any(bit not in at for bit in range(address, address + len(values))):
            # pymodbus serves whole 16-bit words of bits; the device has only these
            raise _Refused(ExcCodes.ILLEGAL_ADDRESS)
        triggers: list[tuple[_Slot, bool]] = []
        for slot in self._slots_in(table, address, address + len(values)):
            bit = values[slot.field.address - address]
            if slot.kind == "signal":
                assert slot.spec is not None
                if not slot.spec.writable:
                    raise _Refused(ExcCodes.ILLEGAL_ADDRESS)
                self._model_write(slot, bit)
            elif slot.kind == "arg":
                self._shadow[(table, slot.field.address)] = bit
            elif slot.kind == "trigger":
                triggers.append((slot, bit))
            else:
                raise _Refused(ExcCodes.ILLEGAL_ADDRESS)
        for slot, value in triggers:
            self._trigger(slot, value)

    def _write_signal(self, slot: _Slot, words: list[int]) -> None:
        assert slot.spec is not None
        if not slot.spec.writable:
            raise _Refused(ExcCodes.ILLEGAL_ADDRESS)
        try:
            wire = slot.field.codec.decode(words)
        except OutOfRangeError as exc:
            raise _Refused(ExcCodes.ILLEGAL_VALUE) from exc
        self._model_write(slot, wire)

    def _model_write(self, slot: _Slot, wire: Value) -> None:
        assert slot.spec is not None
        try:
            self.model.write(slot.name, slot.spec.decode(wire))
        except FlexctlError as exc:
            raise _refusal(exc, reading=False) from exc

    def _trigger(self, slot: _Slot, value: int | bool) -> None:
        field = slot.field
        command = self._triggers[(field.table, field.address)].get(value)
        if command is None:
            if not value:
                return  # writing 0 (false) to a trigger is a reset, not a command
            raise _Refused(ExcCodes.ILLEGAL_VALUE)
        try:
            args = [self._shadow_value(f) for f in command.writes]
            results = self.model.call(command.name, args)
        except FlexctlError as exc:
            raise _refusal(exc, reading=False) from exc
        if len(results) < len(command.results):  # the profile promises more than the model gives
            log.error("command result count", command=command.name, results=len(results))
            raise _Refused(ExcCodes.DEVICE_FAILURE)
        try:  # results the profile does not map are not served, as on a real device
            for result_field, result in zip(command.results, results, strict=False):
                self._store_shadow(result_field, result)
        except OutOfRangeError as exc:  # a result the profile's registers cannot carry
            raise _Refused(ExcCodes.DEVICE_FAILURE) from exc

    def _shadow_value(self, field: Field) -> Value:
        raw = [
            self._shadow.get((field.table, a), 0)
            for a in range(field.address, field.address + field.width)
        ]
        if field.table in BIT_TABLES:
            return bool(raw[0])
        return field.codec.decode([int(word) for word in raw])

    def _store_shadow(self, field: Field, value: Value) -> None:
        if field.table in BIT_TABLES:
            self._shadow[(field.table, field.address)] = field.codec.encode_bit(value)
            return
        words = field.codec.encode(value)
        for offset, word in enumerate(words):
            self._shadow[(field.table, field.address + offset)] = word

    # -- traces and faults -----------------------------------------------------

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        twin = self._twin_for(pdu.dev_id)
        if sending:
            if twin is not None and twin.faults.error is not None and pdu.isError():
                pdu.exception_code = twin.faults.error  # any code, even outside ExcCodes
            return pdu
        count = pdu.count or len(pdu.registers) or len(pdu.bits) or 1
        record = RequestRecord(pdu.dev_id, pdu.function_code, pdu.address, count)
        self.requests.append(record)
        self.heard.set()
        if twin is not None and twin is not self:  # a twin sharing this bus: its own log too
            twin.requests.append(record)
            twin.heard.set()
        if twin is None or twin.faults.stall:
            return None  # pymodbus drops a request whose trace returns nothing
        return pdu

    def _twin_for(self, unit: int) -> _ModbusTwin | None:
        """The twin that answers a request for ``unit`` here; None: nobody does."""
        return self

    def _twins(self) -> tuple[_ModbusTwin, ...]:
        """Every twin this server answers for (more than one on a shared RTU bus)."""
        return (self,)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        self.wire.append((time.monotonic(), sending, len(data)))
        if sending and data and self.faults.take_corrupt():
            return self._damage(data)
        return data

    @abstractmethod
    def _damage(self, data: bytes) -> bytes:
        """One reply frame, damaged so that the client must notice."""

    def _hooks(self) -> dict[str, Any]:
        return {
            "trace_packet": self._trace_packet,
            "trace_pdu": cast(Any, self._trace_pdu),
        }

    async def _shutdown(self) -> None:
        """Stop serving and wait until no request handler is left running."""
        server, self._server = self._server, None
        if server is None:
            return
        for twin in self._twins():
            twin._stopping.set()
        await server.shutdown()  # type: ignore[no-untyped-call]
        # pymodbus runs each request in a task of its own: let them finish
        # (delays are cut short above) so stop() leaves nothing behind.
        pending = [task for task in asyncio.all_tasks() if _handler_server(task) is server]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for _ in range(3):  # closing transports report back on the next turns
            await asyncio.sleep(0)


def _handler_server(task: asyncio.Task[Any]) -> object:
    """The pymodbus server a ``ServerRequestHandler.handle_request`` task works for."""
    coro = task.get_coro()
    if getattr(coro, "__qualname__", "") != "ServerRequestHandler.handle_request":
        return None
    frame = getattr(coro, "cr_frame", None)
    handler = None if frame is None else frame.f_locals.get("self")
    return getattr(handler, "server", None)


def _writable(slot: _Slot) -> bool:
    if slot.kind == "signal":
        return slot.spec is not None and slot.spec.writable
    return slot.kind in ("arg", "trigger")


def _set_bit(registers: list[int], bit: int, value: bool) -> None:
    index, position = divmod(bit, 16)
    if value:
        registers[index] |= 1 << position
    else:
        registers[index] &= ~(1 << position) & 0xFFFF


def _exc_code(code: int) -> ExcCodes:
    """The code for the action to return; the trace hook puts the exact one on the wire."""
    try:
        return ExcCodes(code)
    except ValueError:
        return ExcCodes.DEVICE_FAILURE


class ModbusTcpTwinServer(_ModbusTwin):
    """A twin on Modbus TCP; port 0 picks a free port once and keeps it across restarts."""

    def __init__(
        self,
        model: TwinModel,
        profile: Profile,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit: int = 1,
    ) -> None:
        super().__init__(model, profile, unit=unit)
        self.host = host
        self.port = port

    @property
    def endpoint(self) -> str:
        return f"modbus-tcp://{self.host}:{self.port}?unit={self.unit}"

    async def start(self) -> None:
        if self._server is not None:
            return
        self._stopping = asyncio.Event()
        devices = [self._device(self.unit)]
        if self.unit != 0:
            devices.append(self._device(0, catch_all=True))
        server = ModbusTcpServer(devices, address=(self.host, self.port), **self._hooks())
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"Modbus twin cannot listen on {self.host}:{self.port}") from exc
        self._server = server
        listener = cast(asyncio.Server, server.transport)
        self.port = int(listener.sockets[0].getsockname()[1])
        log.debug("modbus tcp twin listening", endpoint=self.endpoint)

    async def stop(self) -> None:
        await self._shutdown()

    async def drop_connections(self) -> None:
        """Close every client connection now; the listener stays up."""
        if self._server is None:
            return
        for handler in list(self._server.active_connections.values()):
            handler.close()
        await asyncio.sleep(0)

    def _damage(self, data: bytes) -> bytes:
        # TCP has no checksum: flip the MBAP transaction id so the client
        # cannot take the reply for its request (never a wrong value).
        tid = int.from_bytes(data[:2], "big") ^ 0xFFFF
        return tid.to_bytes(2, "big") + data[2:]


class ModbusRtuTwinServer(_ModbusTwin):
    """A twin on Modbus RTU, serving ``link.a_path``; the driver opens ``link.b_path``.

    Units share a bus: a twin made with ``bus=first`` (the same link, before
    ``first`` starts) opens no port of its own; ``first`` answers its unit too,
    from this twin's model and with its ``stall``, ``delay`` and ``error``
    faults, and logs its requests in this twin's ``requests`` as well as its
    own. The wire log and ``corrupt`` belong to the link, so to ``first``;
    ``start``/``stop`` of a twin that joined a bus do nothing.
    """

    def __init__(
        self,
        model: TwinModel,
        profile: Profile,
        *,
        link: NullModem,
        unit: int = 1,
        baudrate: int = 19200,
        bus: ModbusRtuTwinServer | None = None,
    ) -> None:
        super().__init__(model, profile, unit=unit)
        self.link = link
        self.baudrate = baudrate
        self._host = bus
        self._guests: dict[int, ModbusRtuTwinServer] = {}
        if bus is not None:
            if bus._host is not None or bus.link is not link or bus.baudrate != baudrate:
                raise ValueError("join the twin that opens this link, at the same baud rate")
            if bus._server is not None:
                raise ValueError("make every twin on a bus before the first one starts")
            if unit == bus.unit or unit in bus._guests:
                raise ValueError(f"unit {unit} is already on this bus")
            bus._guests[unit] = self

    @property
    def endpoint(self) -> str:
        # gap=0: the pty has no wire, so no line timing to keep between frames;
        # pymodbus's RTU framer finds a frame's end by its length and CRC.
        return f"modbus-rtu://{self.link.b_path}?unit={self.unit}&baudrate={self.baudrate}&gap=0"

    async def start(self) -> None:
        if self._server is not None or self._host is not None:
            return
        for twin in self._twins():
            twin._stopping = asyncio.Event()
        server = ModbusSerialServer(
            [twin._device(twin.unit) for twin in self._twins()],
            framer=FramerType.RTU,
            port=self.link.a_path,
            baudrate=self.baudrate,
            reconnect_delay=0,
            **self._hooks(),
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"Modbus twin cannot open {self.link.a_path}") from exc
        self._server = server
        # Requests sent while the twin was down wait in the tty: they are stale.
        serial_port = getattr(server.transport, "sync_serial", None)
        if serial_port is not None:
            flush_input(serial_port.fileno())
        log.debug("modbus rtu twin serving", port=self.link.a_path)

    async def stop(self) -> None:
        await self._shutdown()

    async def drop_connections(self) -> None:
        """Close and reopen the tty, discarding any partial frame."""
        if self._host is not None:
            await self._host.drop_connections()
            return
        if self._server is None:
            return
        await self._shutdown()
        await self.start()

    def _twin_for(self, unit: int) -> _ModbusTwin | None:
        if unit == self.unit:
            return self
        return self._guests.get(unit)  # other units on the bus are not ours to answer

    def _twins(self) -> tuple[_ModbusTwin, ...]:
        return (self, *self._guests.values())

    def _damage(self, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 0xFF])  # a bad CRC: the client drops the frame
