"""Modbus RTU: units on one RS-485 bus, one transport per unit, one port between them.

A :class:`RtuBus` per serial port path holds the pymodbus serial client, the
bus lock and the inter-frame gap; every :class:`ModbusRtuTransport` on that
path shares it.

A transport holds the bus for a whole request (its ``_turn()``): every frame
of a batched read, or of a command's writes, trigger and result read, goes out
with no other unit's frame in between. Waiting for that turn is not part of
the request's timeout, so a unit stuck behind a dead neighbour (which holds the
bus for a full timeout per request) does not time out and lose its link itself.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import ClassVar

import structlog
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from flexctl.clock import Clock
from flexctl.errors import (
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    ProtocolError,
    Where,
)
from flexctl.profile import Profile
from flexctl.transports.base import TransportOptions
from flexctl.transports.modbus import ModbusTransport, Send
from flexctl.transports.modbus_endpoint import SerialSettings, parse_rtu_endpoint

log = structlog.get_logger("flexctl.transport.modbus")


class RtuBus:
    """One RS-485 port: a pymodbus client, a lock and the inter-frame gap.

    Several units on one bus share it (one transport per unit): the port opens
    with the first request and closes when the last transport lets go. A
    transport takes :meth:`turn` around a whole request; only the task holding
    the turn may :meth:`exchange` frames.

    After a reply went missing or came garbled the bus is *unsettled*: before
    the next frame the port is closed and reopened (pyserial flushes its input
    on open) and then must stay silent for a while, so that a late reply to a
    request we gave up on is thrown away instead of being taken for the next one.
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
        self._holder: asyncio.Task[object] | None = None  # the task whose turn it is
        self._turn = _Turn(self)

    def mark_unsettled(self) -> None:
        """A reply went missing or came garbled: resynchronise before the next frame."""
        self.unsettled = True

    def turn(self) -> AbstractAsyncContextManager[None]:
        """The bus to the current task alone, until it lets go (the lock is not reentrant)."""
        return self._turn

    async def exchange(self, transport: ModbusTransport, what: str, send: Send) -> ModbusPDU:
        """One request and its reply, by the task whose :meth:`turn` it is."""
        assert self._holder is asyncio.current_task(), f"{what}: not this task's turn on the bus"
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


class _Turn:
    """What :meth:`RtuBus.turn` returns: the bus lock, noting which task holds it.

    A plain class rather than ``@asynccontextmanager``: it sits on every RTU request.
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: RtuBus) -> None:
        self._bus = bus

    async def __aenter__(self) -> None:
        bus = self._bus
        await bus.lock.acquire()
        bus._holder = asyncio.current_task()

    async def __aexit__(self, *exc: object) -> None:
        bus = self._bus
        bus._holder = None
        bus.lock.release()


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
    """Modbus RTU on a serial port, shared (with its turn) by every unit on the bus."""

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

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """The bus for a whole request (or connect), waited for outside its timeout."""
        bus = self._bus
        if bus is None and not self._closing:
            # Connecting: join the bus here, so that the probe in _open goes out
            # under this turn like any request. A request finds the bus gone only
            # while close() runs; it then fails in _exchange (port closed).
            bus = self._bus = _acquire_bus(self.serial, Where(self.endpoint))
        return nullcontext() if bus is None else bus.turn()

    async def _open(self) -> None:
        await self._probe()  # under _turn(); opens the port on first use

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
