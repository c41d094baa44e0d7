"""The one contract every transport keeps, and the machinery they share.

A transport owns its link to one device: connecting, the per-request timeout,
read retries, and reconnecting with capped exponential backoff and jitter after
the link is lost. Nothing above it sets a timeout on a request or retries one.

Subclasses implement the ``_open``/``_close``/``_read``/``_write``/``_call``
hooks and map their library's exceptions into :mod:`flexctl.errors` there:
a lost link is :class:`NotConnectedError`, a device-side error
:class:`ProtocolError`, no reply :class:`CommunicationTimeout` (or they let
the shared timeout fire).

Two kinds of time meet here on purpose. A request's timeout is wire time (how
long a reply may take on the real loop), so it uses ``asyncio.timeout``. The
reconnect backoff is process time, so it sleeps on the injected clock; under a
virtual clock a device that is down for an hour is retried every 30 virtual
seconds, not every 30 wall seconds.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import structlog

from flexctl.clock import Clock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    FlexctlError,
    NotConnectedError,
    ProtocolError,
)
from flexctl.profile import CommandSpec, Profile, SignalSpec, Value

log = structlog.get_logger("flexctl.transport")

T = TypeVar("T")


class ConnectionState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True)
class SignalAddress:
    """Where one signal lives on a transport; subclasses add the address fields."""

    spec: SignalSpec

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CommandAddress:
    """Where one command lives on a transport; subclasses add the address fields."""

    spec: CommandSpec

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class TransportOptions:
    """Timeouts (wire seconds) and reconnect backoff (process seconds)."""

    timeout: float = 2.0
    connect_timeout: float = 5.0
    read_retries: int = 1
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.2
    seed: int | None = None

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before reconnect attempt ``attempt`` (0-based): capped doubling, +/- jitter."""
        base = min(self.backoff_max, self.backoff_initial * (2.0 ** min(attempt, 30)))
        return max(0.0, base * (1.0 + self.backoff_jitter * rng.uniform(-1.0, 1.0)))


StateListener = Callable[[ConnectionState], None]


class Transport(ABC):
    """A link to one device, bound to one profile and one endpoint."""

    #: The profile ``transport:`` value this class serves.
    family: ClassVar[str]
    #: Endpoint schemes this class serves (``opc.tcp``, ``modbus-tcp`` ...).
    schemes: ClassVar[tuple[str, ...]]
    #: Address keys a profile signal / command / top level may carry for this family.
    signal_keys: ClassVar[frozenset[str]] = frozenset()
    command_keys: ClassVar[frozenset[str]] = frozenset()
    profile_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        profile: Profile,
        endpoint: str,
        *,
        clock: Clock,
        device: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        if profile.transport != self.family:
            raise ConfigurationError(
                profile.where,
                f"profile {profile.name} is for {profile.transport}, "
                f"but endpoint {endpoint} is {self.family}",
            )
        self.profile = profile
        self.endpoint = endpoint
        self.clock = clock
        self.device = device or profile.device
        self.options = options or TransportOptions()
        seed = self.options.seed
        if seed is None:
            seed = zlib.crc32(f"{self.device}|{endpoint}".encode())
        self._rng = random.Random(seed)
        self._state = ConnectionState.DISCONNECTED
        self._listeners: list[StateListener] = []
        self._connected = asyncio.Event()
        self._reconnect_task: asyncio.Task[None] | None = None
        # Serialises connect, close and each reconnect attempt: one open at a time.
        self._link_lock = asyncio.Lock()
        self._closing = False
        self.last_error: BaseException | None = None
        self.reconnects = 0
        self._signals = {name: self.parse_signal(spec) for name, spec in profile.signals.items()}
        self._commands = {name: self.parse_command(spec) for name, spec in profile.commands.items()}
        self.check_profile(profile)

    # -- what subclasses provide -------------------------------------------------

    @classmethod
    @abstractmethod
    def parse_signal(cls, spec: SignalSpec) -> SignalAddress:
        """Read this family's address keys of a signal; ConfigurationError if wrong."""

    @classmethod
    @abstractmethod
    def parse_command(cls, spec: CommandSpec) -> CommandAddress:
        """Read this family's address keys of a command; ConfigurationError if wrong."""

    @classmethod
    def check_profile(cls, profile: Profile) -> None:
        """Check the family's top-level settings (framing, namespace ...)."""
        from flexctl.profile import check_keys

        check_keys(profile.settings, cls.profile_keys, profile.where, f"profile {profile.name}")

    @property
    def source(self) -> str:
        """Where the data comes from, as ophyd-async backends report it.

        This, never ``endpoint``, goes into logs and errors: a subclass whose
        endpoint can carry credentials returns it with the password masked.
        """
        return self.endpoint

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """Wait for the right to use a medium shared with other transports (an RS-485 bus).

        Held around each request (and each connect), and NOT counted in the
        request's timeout: a unit that waits behind a dead neighbour on its bus
        must not time out itself. Default: nothing shared.
        """
        return nullcontext()

    @abstractmethod
    async def _open(self) -> None:
        """Open the link; raise NotConnectedError (or a timeout) when it cannot."""

    @abstractmethod
    async def _close(self) -> None:
        """Close the link and free everything; must not raise."""

    @abstractmethod
    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        """Read many signals as few requests as the protocol allows; wire values."""

    @abstractmethod
    async def _write(self, address: SignalAddress, wire: Value) -> None:
        """Write one already-encoded value."""

    @abstractmethod
    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        """Run one command and return its results (empty list when it has none)."""

    # -- the contract ------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` on every state change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_connected(self) -> None:
        """Wait until the link is up (wrap in a timeout of your own choosing)."""
        await self._connected.wait()

    def signal(self, name: str) -> SignalAddress:
        try:
            return self._signals[name]
        except KeyError:
            raise ConfigurationError(
                self.profile.where, f"profile {self.profile.name} has no signal {name!r}"
            ) from None

    def command(self, name: str) -> CommandAddress:
        try:
            return self._commands[name]
        except KeyError:
            raise ConfigurationError(
                self.profile.where, f"profile {self.profile.name} has no command {name!r}"
            ) from None

    async def connect(self) -> None:
        """Open the link; NotConnectedError (with the cause) when that fails.

        A background reconnect in progress is taken over: it stops, and this
        call makes the attempt, so two opens of one link never race.
        """
        async with self._link_lock:
            if self._state is ConnectionState.CONNECTED:
                return
            await self._stop_reconnecting()
            if self._state is not ConnectionState.DISCONNECTED:
                await self._close()  # the lost link the reconnect had not yet closed
            self._closing = False
            self._set_state(ConnectionState.CONNECTING)
            try:
                await self._attempt_open()
            except FlexctlError as exc:
                self._set_state(ConnectionState.DISCONNECTED)
                raise NotConnectedError(
                    self.device, f"cannot connect to {self.source}", causes={"connect": exc}
                ) from exc
            except BaseException:  # cancelled while connecting
                self._set_state(ConnectionState.DISCONNECTED)
                raise
            self._set_state(ConnectionState.CONNECTED)

    async def close(self) -> None:
        """Close the link and stop reconnecting. Safe to call twice."""
        self._closing = True
        await self._stop_reconnecting()
        async with self._link_lock:
            await self._close()
            self._set_state(ConnectionState.DISCONNECTED)

    async def _stop_reconnecting(self) -> None:
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done():
            task.cancel()
            # gather hands back the task's CancelledError instead of raising it,
            # while a cancellation of the caller itself still propagates.
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read(self, addresses: Sequence[SignalAddress]) -> list[Value]:
        """Read many signals (batched by the protocol); values decoded per the profile."""
        if not addresses:
            return []
        what = (
            "read "
            + ", ".join(a.name for a in addresses[:4])
            + (" ..." if len(addresses) > 4 else "")
        )
        wires = await self._request(
            what,
            lambda: self._read(addresses),
            retries=self.options.read_retries,
            exchanges=len(addresses),
        )
        if len(wires) != len(addresses):
            raise ProtocolError(self.device, f"{what}: {len(wires)} values for {len(addresses)}")
        return [a.spec.decode(w, self.device) for a, w in zip(addresses, wires, strict=True)]

    async def read_one(self, address: SignalAddress) -> Value:
        return (await self.read([address]))[0]

    async def write(self, address: SignalAddress, value: Value) -> None:
        """Write one signal. Never retried: a write whose reply was lost may have landed."""
        if not address.spec.writable:
            raise ConfigurationError(
                address.spec.where, f"signal {address.name} is not writable in {self.profile.name}"
            )
        wire = address.spec.encode(value)
        await self._request(f"write {address.name}", lambda: self._write(address, wire), retries=0)

    async def call(self, command: CommandAddress, args: Sequence[Value] = ()) -> list[Value]:
        """Run a command. Never retried, for the same reason as writes."""
        if len(args) != len(command.spec.args):
            raise ConfigurationError(
                command.spec.where,
                f"command {command.name} takes {len(command.spec.args)} argument(s) "
                f"({', '.join(command.spec.args) or 'none'}), got {len(args)}",
            )
        return await self._request(
            f"call {command.name}", lambda: self._call(command, args), retries=0
        )

    # -- shared machinery --------------------------------------------------------

    def _request_timeout(self, exchanges: int) -> float:
        """The wire timeout of one request that makes ``exchanges`` exchanges.

        Protocols that batch (OPC UA, Modbus) answer a batch in one exchange;
        a line protocol asks one signal at a time and overrides this.
        """
        return self.options.timeout

    def _abandoned(self, what: str) -> None:
        """A request was cancelled after it may have gone out on the wire.

        Its reply may still arrive; a protocol that cannot tell replies apart
        (a line protocol) must not let the next request take it for its own.
        Default: replies carry request ids (OPC UA, Modbus TCP), nothing to do.
        """
        del what

    async def _request(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        *,
        retries: int,
        exchanges: int = 1,
    ) -> T:
        timeout = self._request_timeout(exchanges)
        attempt = 0
        while True:
            if self._state is not ConnectionState.CONNECTED:
                raise NotConnectedError(self.device, f"{what}: link is {self._state}")
            try:
                with self.clock.in_flight():
                    async with self._turn():
                        try:
                            async with asyncio.timeout(timeout):
                                return await operation()
                        except asyncio.CancelledError:
                            self._abandoned(what)
                            raise
            except TimeoutError as exc:
                error: FlexctlError = (
                    exc
                    if isinstance(exc, CommunicationTimeout)
                    else CommunicationTimeout(self.device, what, timeout)
                )
                if attempt < retries:
                    attempt += 1
                    continue
                self._link_lost(error)
                raise error from None
            except NotConnectedError as exc:
                self._link_lost(exc)
                raise
            except OSError as exc:  # a socket or tty error the subclass did not map
                lost = NotConnectedError(self.device, f"{what}: {exc}")
                self._link_lost(lost)
                raise lost from exc

    async def _attempt_open(self) -> None:
        """One open, under the connect timeout; every failure becomes a flexctl error."""
        try:
            with self.clock.in_flight():
                async with self._turn(), asyncio.timeout(self.options.connect_timeout):
                    await self._open()
        except TimeoutError as exc:
            await self._close()
            raise CommunicationTimeout(
                self.device, f"connect to {self.source}", self.options.connect_timeout
            ) from exc
        except FlexctlError:
            await self._close()
            raise
        except Exception as exc:
            # OSError, or a library refusing an odd port setting (pyserial raises
            # ValueError for a baud rate the tty cannot do): the link is not up.
            await self._close()
            raise NotConnectedError(
                self.device, f"connect to {self.source}: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:  # cancelled: leave nothing half open
            await self._close()
            raise

    def _link_lost(self, error: BaseException) -> None:
        """Start reconnecting in the background; later requests fail fast until it is back."""
        self.last_error = error
        if self._closing or self._state is not ConnectionState.CONNECTED:
            return
        log.warning("link lost", device=self.device, source=self.source, error=str(error))
        # The task exists before anyone hears of the state, so a listener that
        # fails cannot leave the link RECONNECTING with nobody reconnecting it.
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect(), name=f"flexctl-reconnect-{self.device}"
        )
        self._set_state(ConnectionState.RECONNECTING)

    async def _reconnect(self) -> None:
        async with self._link_lock:
            await self._close()
        attempt = 0
        while not self._closing:
            await self.clock.sleep(self.options.backoff(attempt, self._rng))
            async with self._link_lock:
                if self._closing:
                    return
                try:
                    await self._attempt_open()
                except FlexctlError as exc:
                    self.last_error = exc
                    attempt += 1
                    log.info(
                        "reconnect failed", device=self.device, attempt=attempt, error=str(exc)
                    )
                    continue
                self.reconnects += 1
                self._set_state(ConnectionState.CONNECTED)
                log.info("reconnected", device=self.device, attempts=attempt + 1)
                return

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        self._state = state
        if state is ConnectionState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # a listener's bug must not stop the link's own work
                log.exception("connection state listener failed", device=self.device)
