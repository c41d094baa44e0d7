"""Modbus RTU: units on one RS-485 bus, one transport per unit, one port between them.

A :class:`RtuBus` per serial port path holds the pymodbus serial client, the
bus lock and the inter-frame gap; every :class:`ModbusRtuTransport` on that
path shares it.

A transport holds the bus for a whole request (its ``_turn()``): every frame
of a batched read, or of a command's writes, trigger and result read, goes out
with no other unit's frame in between. Waiting for that turn is not part of
the request's timeout, so a unit stuck behind a dead neighbour (which holds the
bus for a full timeout per request) does not time out and lose its link itself.
Neither is the settling after a neighbour's reply went missing: the turn
reopens and settles the bus before the request's timeout starts (see
:class:`RtuBus` for what settling guarantees and what it cannot).
"""

from __future__ import annotations

import asyncio
import math
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
    with the first turn and closes when the last transport lets go. A
    transport takes :meth:`turn` around a whole request; only the task holding
    the turn may :meth:`exchange` frames.

    After a reply went missing, came garbled or was abandoned (its request
    cancelled), the bus is *unsettled* and remembers a settle window: the
    timed-out request's own timeout, or the unit's ``settle=`` when longer. The
    next turn, whoever takes it and before its request's timeout starts,
    waits until the line has been silent for that window (counted from the
    failure and from every byte heard since), then closes and reopens the port
    (a fresh framer; pyserial flushes the input on open). So a late reply up to
    one window after its request was given up is thrown away.

    What remains possible: RTU has no transaction id. A reply later than that
    (a device that answers after its timeout plus the settle window) can still
    be taken for the reply to the next request to the same unit with the same
    function code and the same count: a read then returns the old request's
    values. pymodbus refuses a reply from another unit, and a write's reply is
    checked against the address and value (or count) it echoes; a read's reply
    echoes neither. Give a unit that may answer very late a longer ``settle=``.
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
        self.window = 0.0  # silence needed before the next frame, while unsettled
        self._unsettled_at = 0.0  # loop time the bus was last marked unsettled
        self._heard_at = -math.inf  # loop time bytes last arrived
        self._opened_at = 0.0
        self._ready = asyncio.Event()
        self._quiet_at = 0.0  # end of the last frame on the wire (loop time)
        self._heard = asyncio.Event()  # bytes arrived
        self._holder: asyncio.Task[object] | None = None  # the task whose turn it is

    def mark_unsettled(self, window: float) -> None:
        """A reply went missing, came garbled or was abandoned: settle before the next frame.

        ``window`` is the silence to wait for, from now (the longest one wins
        while the bus stays unsettled).
        """
        self.window = max(self.window, window) if self.unsettled else window
        self.unsettled = True
        self._unsettled_at = self.loop.time()

    def take_over(self, old: RtuBus) -> None:
        """Carry an unsettled state over from the bus this one replaces."""
        if old.unsettled:
            self.unsettled = True
            self.window = old.window
            self._unsettled_at = old._unsettled_at
            self._heard_at = old._heard_at

    def turn(self, transport: ModbusRtuTransport) -> AbstractAsyncContextManager[None]:
        """The bus to the current task alone, ready to send, until it lets go.

        Not reentrant. Entering it waits for the lock, then (still outside the
        request's timeout) opens the port or settles an unsettled bus.
        """
        return _Turn(self, transport)

    @property
    def ready(self) -> bool:
        """The port is open and in step: a turn may send at once."""
        client = self.client
        return not self.unsettled and client is not None and client.connected

    async def prepare(self, transport: ModbusRtuTransport) -> None:
        """Open the port, or settle and reopen it; by the turn's holder, before its timeout.

        Raises NotConnectedError when the port cannot be opened (within the
        unit's connect timeout) or the line does not fall silent.
        """
        opened_here = False
        if self.client is None or not self.client.connected:
            await self._reopen(transport)
            opened_here = True
        if not self.unsettled:
            return
        await self._settle(transport)
        if not opened_here or self._heard_at >= self._opened_at:
            await self._reopen(transport)  # the framer may hold part of a stale reply
        self.unsettled = False
        self.window = 0.0

    async def _settle(self, transport: ModbusRtuTransport) -> None:
        """Wait until the line has been silent for the window (bytes heard are stale)."""
        window = self.window
        give_up = self.loop.time() + _SETTLE_LIMIT * window
        while True:
            now = self.loop.time()
            quiet_until = max(self._unsettled_at, self._heard_at) + window
            if now >= quiet_until:
                return
            if now >= give_up:
                raise NotConnectedError(
                    transport.device,
                    f"serial port {self.settings.path}: the line did not fall silent for "
                    f"{window:g} s within {_SETTLE_LIMIT * window:g} s",
                )
            self._heard.clear()
            try:
                async with asyncio.timeout_at(min(quiet_until, give_up)):
                    await self._heard.wait()
            except TimeoutError:
                pass  # the loop looks again: silent long enough, or bytes came meanwhile

    async def exchange(self, transport: ModbusRtuTransport, what: str, send: Send) -> ModbusPDU:
        """One request and its reply, by the task whose :meth:`turn` it is."""
        assert self._holder is asyncio.current_task(), f"{what}: not this task's turn on the bus"
        client = self.client
        if client is None or not client.connected:  # lost between two frames of one request
            raise NotConnectedError(transport.device, f"{what}: serial port closed")
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
                self.mark_unsettled(transport.settle_window)
        return response

    async def _reopen(self, transport: ModbusRtuTransport) -> None:
        """(Re)open the port, within the unit's connect timeout; NotConnectedError if not."""
        await self.close()
        timeout = transport.options.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._open(transport)
        except TimeoutError:
            await self.close()
            raise NotConnectedError(
                transport.device,
                f"cannot open serial port {self.settings.path} within {timeout:g} s",
            ) from None
        except NotConnectedError:
            await self.close()
            raise
        except Exception as exc:  # pyserial's SerialException, ValueError for odd settings ...
            await self.close()
            raise NotConnectedError(
                transport.device,
                f"cannot open serial port {self.settings.path}: {type(exc).__name__}: {exc}",
            ) from exc
        except BaseException:  # cancelled: leave nothing half open
            await self.close()
            raise

    async def _open(self, transport: ModbusRtuTransport) -> None:
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
            raise NotConnectedError(transport.device, f"cannot open serial port {s.path}")
        await self._ready.wait()  # pymodbus registers its reader on the next loop turn
        self.reopened += 1
        self._quiet_at = self._opened_at = self.loop.time()

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._heard_at = self.loop.time()
            self._heard.set()
        return data

    def _on_connect(self, up: bool) -> None:
        if up:
            self._ready.set()
        else:  # the port went away under us (not our own close): reopen before the next frame
            self.mark_unsettled(0.0)

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


#: An unsettled bus gives up (NotConnectedError) when the line keeps talking
#: for this many settle windows: something other than a late reply is on it.
_SETTLE_LIMIT = 4


class _Turn:
    """What :meth:`RtuBus.turn` returns: the bus lock, noting which task holds it.

    A plain class rather than ``@asynccontextmanager``: it sits on every RTU request.
    """

    __slots__ = ("_bus", "_transport")

    def __init__(self, bus: RtuBus, transport: ModbusRtuTransport) -> None:
        self._bus = bus
        self._transport = transport

    async def __aenter__(self) -> None:
        bus = self._bus
        await bus.lock.acquire()
        bus._holder = asyncio.current_task()
        if bus.ready:
            return
        try:
            await bus.prepare(self._transport)  # waiting for the medium: no request timeout yet
        except BaseException:
            bus._holder = None
            bus.lock.release()
            raise

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
        fresh.take_over(bus)
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
        self.serial, self.unit, self.settle = parse_rtu_endpoint(endpoint)
        self._bus: RtuBus | None = None
        self._bus_turn: AbstractAsyncContextManager[None] | None = None
        self._connecting = False

    @property
    def bus(self) -> RtuBus | None:
        """The serial bus this transport shares, while it is open."""
        return self._bus

    @property
    def settle_window(self) -> float:
        """Silence the bus waits for after one of this unit's replies went missing.

        The timeout of the request in progress (the connect timeout while
        connecting), or the endpoint's ``settle=`` when that is longer.
        """
        timeout = self.options.connect_timeout if self._connecting else self._request_timeout(1)
        return max(timeout, self.settle or 0.0)

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """The bus for a whole request (or connect), waited for outside its timeout."""
        if self._bus is None and not self._closing:
            # Connecting: join the bus here, so that the probe in _open goes out
            # under this turn like any request. A request finds the bus gone only
            # while close() runs; it then fails in _exchange (port closed).
            bus = self._bus = _acquire_bus(self.serial, Where(self.endpoint))
            self._bus_turn = bus.turn(self)
        return self._bus_turn or nullcontext()

    async def _open(self) -> None:
        self._connecting = True
        try:
            await self._probe()  # under _turn(); the turn opened the port
        finally:
            self._connecting = False

    async def _close(self) -> None:
        bus, self._bus, self._bus_turn = self._bus, None, None
        if bus is not None:
            await _release_bus(bus)

    def _mark_out_of_step(self) -> None:
        if self._bus is not None:
            self._bus.mark_unsettled(self.settle_window)

    def _abandoned(self, what: str) -> None:
        """A cancelled request may still be answered: settle as after a timeout."""
        del what
        if self._bus is not None:
            self._bus.mark_unsettled(self.settle_window)

    async def _exchange(self, what: str, send: Send) -> ModbusPDU:
        bus = self._bus
        if bus is None:
            raise NotConnectedError(self.device, f"{what}: port closed")
        return await bus.exchange(self, what, send)
