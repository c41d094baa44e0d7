"""ASCII request/reply devices over a serial line (any tty path).

Endpoint: ``serial:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8``.

Profile keys (templates: :mod:`flexctl.transports.serial_template`):

- signal: ``query`` (sent, no fields), ``reply`` (expected, exactly one field:
  the value, typed by default as the signal), ``write`` (sent to set it, one
  field), ``ack`` (expected after a write, default ``OK``; a field in it, such
  as an echo of the value, is matched but not used).
- command: ``send`` (the command's args as fields; default the upper-cased
  name followed by each arg), ``reply`` (its fields are the results, in
  order; default ``OK``).
- profile: ``framing: {terminator, checksum: none|crc16, separator}``,
  ``probe`` (signal read on connect; default the first signal), ``max_line``.

Any reply ``ERR <code> <message>`` is the device refusing: code 6 is
:class:`DeviceBusyError`, any other :class:`ProtocolError` with that code; so
no reply template may start with ``ERR``.

One request at a time: the line is the base's turn, so waiting for it is not
part of a request's timeout, and a read of N signals (N exchanges) gets N
timeouts. Replies carry no request id: a request cancelled after its frame
went out leaves its reply owed, and the next request first waits for that
reply (at most one timeout) and drops it, never taking it for its own; a frame
cut off part-way is ended as a bad line, never completed.

I/O design: pyserial opens and configures the tty (baud rate, parity, raw
mode, an exclusive lock), then the transport does its own I/O on the port's
non-blocking file descriptor with ``loop.add_reader`` (POSIX only). Chosen over
a worker thread running pyserial calls because there is no thread to start,
stop or leak, nothing blocks the loop, a request costs no thread hand-offs,
and closing is synchronous, so ``_close`` cannot hang or leave anything behind.
"""

from __future__ import annotations

import asyncio
import os
import termios
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlsplit

import serial  # pyserial
import structlog

from flexctl.clock import Clock
from flexctl.errors import (
    CommunicationTimeout,
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
    check_keys,
    int_range,
    where_in,
)
from flexctl.transports.base import (
    CommandAddress,
    SignalAddress,
    Transport,
    TransportOptions,
)
from flexctl.transports.serial_framing import (
    DEFAULT_MAX_LINE,
    FrameError,
    Framing,
    LineSplitter,
)
from flexctl.transports.serial_template import Template, TemplateError, TemplateMismatch
from flexctl.yamlpos import require_mapping

log = structlog.get_logger("flexctl.transport.serial")

T = TypeVar("T")

BUSY_CODE = 6
"""The ``ERR`` code that means "busy" (DeviceBusyError)."""

FRAMING_KEYS = frozenset({"terminator", "checksum", "separator"})
_READ_CHUNK = 4096
_MAX_QUEUED = 64  # frames kept while nobody asks: stale by definition, bounded

# Ends a cut-off frame as a line no device takes: not ASCII, never a terminator.
_SPOIL = b"\xff"

_PARITIES = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
    "NONE": serial.PARITY_NONE,
    "EVEN": serial.PARITY_EVEN,
    "ODD": serial.PARITY_ODD,
    "MARK": serial.PARITY_MARK,
    "SPACE": serial.PARITY_SPACE,
}
_STOPBITS = {
    "1": serial.STOPBITS_ONE,
    "1.5": serial.STOPBITS_ONE_POINT_FIVE,
    "2": serial.STOPBITS_TWO,
}
_BYTESIZES = {"5": 5, "6": 6, "7": 7, "8": 8}


#: Baud rates a tty can be set to: termios' B50 up to the 4 Mbit/s of USB adapters.
BAUDRATES = (50, 4_000_000)


def _baudrate(text: str) -> int:
    rate = int(text)
    low, high = BAUDRATES
    if not low <= rate <= high:
        raise ValueError(text)
    return rate


_ENDPOINT_OPTIONS: dict[str, Callable[[str], Any]] = {
    "baudrate": _baudrate,
    "parity": lambda text: _PARITIES[text.upper()],
    "stopbits": lambda text: _STOPBITS[text],
    "bytesize": lambda text: _BYTESIZES[text],
}
_EXPECTED = {
    "baudrate": f"a baud rate in {BAUDRATES[0]}..{BAUDRATES[1]}",
    "parity": "N, E, O, M or S",
    "stopbits": ", ".join(_STOPBITS),
    "bytesize": ", ".join(_BYTESIZES),
}


# -- profile: addresses and settings -----------------------------------------------


@dataclass(frozen=True)
class SerialSignal(SignalAddress):
    """A signal's query, reply and (when writable) write and ack templates."""

    query: Template
    reply: Template
    write: Template | None
    ack: Template

    @property
    def value_field(self) -> str:
        return self.reply.names[0]


@dataclass(frozen=True)
class SerialCommand(CommandAddress):
    """A command's send template (args as fields) and reply template (results)."""

    send: Template
    reply: Template


@dataclass(frozen=True)
class SerialSettings:
    """Profile-level settings of the serial family."""

    framing: Framing
    probe: str | None
    max_line: int


@dataclass(frozen=True)
class PortSettings:
    """Where the tty is and how to configure it (from the endpoint)."""

    path: str
    baudrate: int = 9600
    parity: str = serial.PARITY_NONE
    stopbits: float = serial.STOPBITS_ONE
    bytesize: int = 8


def default_field_type(spec: SignalSpec) -> str:
    """The template field type a signal's values travel as (enums as their index)."""
    if spec.enum is not None or int_range(spec.wire_type) is not None:
        return "d"
    if spec.wire_type == "bool":
        return "b"
    if spec.wire_type == "string":
        return "s"
    return "f"


# signal wire type -> field types that carry it without loss of meaning
def _accepted_field_types(spec: SignalSpec) -> tuple[str, ...]:
    kind = default_field_type(spec)
    return {"f": ("f", "d"), "d": ("d",), "b": ("b", "d"), "s": ("s",)}[kind]


def _template(
    raw: Mapping[str, Any], key: str, where: Where, default_type: str, default: str | None = None
) -> Template | None:
    """The template under ``key`` (or ``default``); ConfigurationError at its place."""
    text = raw.get(key, default)
    if text is None:
        return None
    at = where_in(raw, key, where)
    if not isinstance(text, str):
        raise ConfigurationError(at, f"{key}: expected a template in quotes, got {text!r}")
    try:
        template = Template(text, default_type)
    except TemplateError as exc:
        raise ConfigurationError(at, f"{key}: {exc}") from None
    if key in ("reply", "ack") and text[:4] in ("ERR", "ERR "):
        raise ConfigurationError(at, f"{key}: {text!r}: replies starting with ERR are errors")
    return template


def parse_serial_signal(spec: SignalSpec) -> SerialSignal:
    """Read a signal's serial keys; ConfigurationError naming file:line if wrong."""
    raw = spec.raw
    what = f"signal {spec.name}"
    check_keys(raw, GENERIC_SIGNAL_KEYS | SerialTransport.signal_keys, spec.where, what)
    for key in ("query", "reply"):
        if key not in raw:
            raise ConfigurationError(spec.where, f"{what}: missing key {key!r}")
    kind = default_field_type(spec)
    query = _template(raw, "query", spec.where, kind)
    reply = _template(raw, "reply", spec.where, kind)
    assert query is not None and reply is not None  # both keys are present
    if not query.is_literal:
        raise ConfigurationError(
            where_in(raw, "query", spec.where), f"{what}: query {query.text!r} cannot have fields"
        )
    _one_value_field(reply, raw, "reply", spec)
    write = _template(raw, "write", spec.where, kind)
    if spec.writable and write is None:
        raise ConfigurationError(spec.where, f"{what}: writable, so it needs a 'write' template")
    if write is not None:
        if not spec.writable:
            raise ConfigurationError(
                where_in(raw, "write", spec.where), f"{what}: 'write' given but not writable: true"
            )
        _one_value_field(write, raw, "write", spec)
    ack = _template(raw, "ack", spec.where, kind, "OK")
    assert ack is not None
    if "ack" in raw and write is None:
        raise ConfigurationError(where_in(raw, "ack", spec.where), f"{what}: 'ack' needs 'write'")
    if len(ack.fields) > 1:
        raise ConfigurationError(
            where_in(raw, "ack", spec.where), f"{what}: ack {ack.text!r}: at most one field"
        )
    return SerialSignal(spec=spec, query=query, reply=reply, write=write, ack=ack)


def _one_value_field(
    template: Template, raw: Mapping[str, Any], key: str, spec: SignalSpec
) -> None:
    at = where_in(raw, key, spec.where)
    if len(template.fields) != 1:
        raise ConfigurationError(
            at,
            f"signal {spec.name}: {key} {template.text!r} needs exactly one field for the value, "
            f"e.g. {{value}}",
        )
    field = template.fields[0]
    accepted = _accepted_field_types(spec)
    if field.type not in accepted:
        raise ConfigurationError(
            at,
            f"signal {spec.name}: {key} field {{{field.name}:{field.type}}} cannot carry a "
            f"{spec.wire_type} value (expected {' or '.join(accepted)})",
        )


def parse_serial_command(spec: CommandSpec) -> SerialCommand:
    """Read a command's serial keys; ConfigurationError naming file:line if wrong."""
    raw = spec.raw
    what = f"command {spec.name}"
    check_keys(raw, GENERIC_COMMAND_KEYS | SerialTransport.command_keys, spec.where, what)
    default_send = " ".join([spec.name.upper(), *(f"{{{arg}}}" for arg in spec.args)])
    send = _template(raw, "send", spec.where, "", default_send)
    reply = _template(raw, "reply", spec.where, "", "OK")
    assert send is not None and reply is not None
    if sorted(send.names) != sorted(spec.args):
        raise ConfigurationError(
            where_in(raw, "send", spec.where),
            f"{what}: send {send.text!r} must use each arg once as a field "
            f"(args: {', '.join(spec.args) or 'none'}; fields: {', '.join(send.names) or 'none'})",
        )
    return SerialCommand(spec=spec, send=send, reply=reply)


def parse_serial_settings(profile: Profile) -> SerialSettings:
    """Read ``framing``, ``probe`` and ``max_line``; ConfigurationError if wrong."""
    settings = profile.settings
    where = profile.where
    framing = Framing()
    if "framing" in settings:
        raw = require_mapping(settings["framing"], where, "framing")
        check_keys(raw, FRAMING_KEYS, raw.where, "framing")
        values: dict[str, str] = {}
        for key in FRAMING_KEYS:
            if key in raw:
                if not isinstance(raw[key], str):
                    raise ConfigurationError(raw.at(key), f"framing {key}: expected text")
                values[key] = raw[key]
        try:
            framing = Framing(**values)
        except ValueError as exc:
            key = str(exc).split(" ", 1)[0]  # Framing's messages start with the key
            raise ConfigurationError(raw.at(key), f"framing: {exc}") from None
    max_line = settings.get("max_line", DEFAULT_MAX_LINE)
    if isinstance(max_line, bool) or not isinstance(max_line, int) or not 8 <= max_line <= 65536:
        raise ConfigurationError(
            where_in(settings, "max_line", where),
            f"max_line: expected a number of bytes in 8..65536, got {max_line!r}",
        )
    probe = settings.get("probe")
    if probe is None:
        probe = next(iter(profile.signals), None)
    elif not isinstance(probe, str) or probe not in profile.signals:
        raise ConfigurationError(
            where_in(settings, "probe", where),
            f"probe: {probe!r} is not a signal of profile {profile.name} "
            f"(expected one of {', '.join(profile.signals) or 'none'})",
        )
    return SerialSettings(framing=framing, probe=probe, max_line=max_line)


def parse_endpoint(endpoint: str, where: Where) -> PortSettings:
    """``serial:///dev/tty...?baudrate=..&parity=..&stopbits=..&bytesize=..``."""
    parts = urlsplit(endpoint)
    path = parts.netloc + parts.path
    if parts.scheme not in SerialTransport.schemes or not path:
        raise ConfigurationError(
            where, f"endpoint {endpoint!r}: expected serial:///path/to/tty?baudrate=9600"
        )
    options: dict[str, Any] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(where, f"endpoint {endpoint!r}: malformed query") from None
    for key, value in pairs:
        if key not in _ENDPOINT_OPTIONS:
            raise ConfigurationError(
                where,
                f"endpoint {endpoint!r}: unknown option {key!r} "
                f"(expected {', '.join(_ENDPOINT_OPTIONS)})",
            )
        try:
            options[key] = _ENDPOINT_OPTIONS[key](value)
        except (ValueError, KeyError):
            raise ConfigurationError(
                where, f"endpoint {endpoint!r}: bad {key} {value!r} (expected {_EXPECTED[key]})"
            ) from None
    return PortSettings(path=path, **options)


# -- the transport ------------------------------------------------------------------


class SerialTransport(Transport):
    """An ASCII line-protocol device on a tty; one request at a time."""

    family: ClassVar[str] = "serial"
    schemes: ClassVar[tuple[str, ...]] = ("serial",)
    signal_keys: ClassVar[frozenset[str]] = frozenset({"query", "reply", "write", "ack"})
    command_keys: ClassVar[frozenset[str]] = frozenset({"send", "reply"})
    profile_keys: ClassVar[frozenset[str]] = frozenset({"framing", "probe", "max_line"})

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
        self.settings = parse_serial_settings(profile)
        self.port = parse_endpoint(endpoint, profile.where)
        self._framing = self.settings.framing
        self._splitter = LineSplitter(self._framing, self.settings.max_line, device=self.device)
        # Queries never change: frame them once, not per request.
        self._query_frames: dict[str, bytes] = {}
        for name, address in self._signals.items():
            assert isinstance(address, SerialSignal)
            self._query_frames[name] = self._framing.encode(address.query.text)
        # One request at a time on the line: held as the base's turn, outside the timeout.
        self._lock = asyncio.Lock()
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames: deque[str | FrameError] = deque(maxlen=_MAX_QUEUED)
        self._waiter: asyncio.Future[None] | None = None
        self._broken: str | None = "not open"
        # What a request saw instead of its reply (and whose request that was),
        # to say so if it times out.
        self._garbled: str | None = None
        self._garbled_task: asyncio.Task[Any] | None = None
        # A line protocol cannot tell replies apart, so replies are matched to
        # requests by count. A frame went out whose reply has not been taken:
        self._outstanding = False
        # A frame was cut off part-way (the device holds half a line):
        self._partial = False
        # Replies still to come for abandoned requests, and until when (loop time)
        # they are waited for before the next request goes out.
        self._owed = 0
        self._owed_until = 0.0

    # -- profile hooks -----------------------------------------------------------

    @classmethod
    def parse_signal(cls, spec: SignalSpec) -> SerialSignal:
        return parse_serial_signal(spec)

    @classmethod
    def parse_command(cls, spec: CommandSpec) -> SerialCommand:
        return parse_serial_command(spec)

    @classmethod
    def check_profile(cls, profile: Profile) -> None:
        super().check_profile(profile)
        parse_serial_settings(profile)

    def signal(self, name: str) -> SerialSignal:
        address = super().signal(name)
        assert isinstance(address, SerialSignal)  # parse_signal made every one
        return address

    def command(self, name: str) -> SerialCommand:
        address = super().command(name)
        assert isinstance(address, SerialCommand)  # parse_command made every one
        return address

    # -- base hooks ----------------------------------------------------------------

    def _turn(self) -> AbstractAsyncContextManager[None]:
        """One request at a time; waiting for the line is not part of a request's timeout.

        Nor is clearing it: a reply still owed to a cancelled request is waited
        for (at most until its deadline) and dropped before the turn is given.
        """
        return self._line()

    @asynccontextmanager
    async def _line(self) -> AsyncIterator[None]:
        async with self._lock:
            if self._broken is None:
                await self._clear_line()
            yield

    def _request_timeout(self, exchanges: int) -> float:
        """No batches on a line: a read of N signals is N exchanges, each with the timeout."""
        return self.options.timeout * max(1, exchanges)

    def _abandoned(self, what: str) -> None:
        """A request was cancelled in flight: its reply, if it went out, is owed.

        The next request first waits for that reply (or for the device's timeout
        to pass) and discards it, so it never takes the orphan for its own answer.
        """
        if not self._outstanding:
            return
        self._outstanding = False
        self._owe()
        log.info(
            "request abandoned in flight; its reply will be discarded",
            device=self.device,
            request=what,
        )

    def _owe(self) -> None:
        self._owed += 1
        self._owed_until = asyncio.get_running_loop().time() + self.options.timeout

    # -- link --------------------------------------------------------------------

    async def _open(self) -> None:
        """Open and configure the tty, drop stale input, then read the probe signal.

        A tty opens even with nothing behind it, so only the probe's reply
        proves the device is there; a silent line times out (the base's
        connect timeout) and connect fails with NotConnectedError.
        """
        self._teardown("reopening")
        port = serial.Serial()
        try:
            port.port = self.port.path
            port.baudrate = self.port.baudrate
            port.parity = self.port.parity
            port.stopbits = self.port.stopbits
            port.bytesize = self.port.bytesize
            port.exclusive = True  # a second program on the same port would steal replies
            # os.open with O_NONBLOCK plus a few ioctls: does not wait on the device.
            port.open()
            fd = port.fileno()
            # pyserial leaves VMIN=0, where a read with nothing to read returns b""
            # even on a non-blocking fd; VMIN=1 makes it EAGAIN, so b"" means hang-up.
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            # Resynchronise: nothing stale either way (unless a reply is owed: it is
            # counted off by the first request instead).
            termios.tcflush(fd, termios.TCOFLUSH if self._owed else termios.TCIOFLUSH)
        except (OSError, termios.error, ValueError, OverflowError) as exc:
            # SerialException is an OSError; pyserial raises ValueError (and the
            # kernel interface OverflowError) for a setting the tty cannot take.
            port.close()
            raise NotConnectedError(self.device, f"cannot open {self.port.path}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._serial = port
        self._fd = fd
        self._broken = None
        self._splitter.reset()
        self._drop_frames()
        self._loop.add_reader(fd, self._on_readable)
        probe = self.settings.probe
        if probe is not None:
            address = self._signals[probe]
            (wire,) = await self._read([address])
            address.spec.decode(wire, self.device)  # the device speaks this profile

    async def _close(self) -> None:
        self._teardown("link closed")

    def _teardown(self, why: str) -> None:
        """Free the port and wake a waiting request with NotConnectedError; never raises."""
        fd, port, loop = self._fd, self._serial, self._loop
        self._fd = -1
        self._serial = None
        self._broken = why
        if fd >= 0 and loop is not None:
            if not loop.is_closed():  # a loop that is gone watches nothing any more
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            try:
                # Discard unsent output too: closing a real tty waits for it to drain.
                termios.tcflush(fd, termios.TCIOFLUSH)
            except termios.error as exc:
                log.debug("flush on close failed", device=self.device, error=str(exc))
        if port is not None:
            try:
                port.close()
            except OSError as exc:
                log.warning("closing the port failed", device=self.device, error=str(exc))
        self._splitter.reset()
        self._drop_frames()
        self._outstanding = False
        self._wake(NotConnectedError(self.device, f"{self.port.path}: {why}"))

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(f"read failed: {exc.strerror}")
            return
        if not data:
            self._lose("hang-up")
            return
        items = self._splitter.feed(data)
        if items:
            self._frames.extend(items)
            self._wake(None)

    def _lose(self, why: str) -> None:
        """The tty failed under us: stop watching it; the next request reports it."""
        if self._loop is not None and self._fd >= 0:
            self._loop.remove_reader(self._fd)  # else a broken fd is reported forever
        self._broken = why
        self._wake(NotConnectedError(self.device, f"{self.port.path}: {why}"))

    def _wake(self, error: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # -- one exchange ------------------------------------------------------------

    async def _begin(self) -> None:
        """Before a request: fail fast on a broken link and discard stale input.

        A late reply to an earlier, timed-out request must never be taken as
        the answer to this one: whatever arrived before this request is dropped,
        and a reply still owed to a cancelled request is waited for and dropped.
        """
        if self._broken is not None:
            raise NotConnectedError(self.device, f"{self.port.path}: {self._broken}")
        self._garbled = None
        self._garbled_task = asyncio.current_task()
        self._outstanding = False
        await self._clear_line()  # done already in the turn, unless the link was reopened
        self._drop_frames()
        self._splitter.reset()
        try:
            termios.tcflush(self._fd, termios.TCIFLUSH)
        except termios.error as exc:
            raise NotConnectedError(self.device, f"{self.port.path}: flush failed: {exc}") from None

    async def _clear_line(self) -> None:
        """Deal with what an abandoned request left on the line (usually nothing)."""
        if self._partial:
            # The device holds the start of a cut-off frame. End it as a bad line
            # (never complete it: it may be a write that was cancelled) and drop
            # what the device answers to that.
            await self._send(_SPOIL + self._framing.terminator.encode("ascii"))
            self._owe()
        if self._owed:
            await self._settle()

    async def _settle(self) -> None:
        """Take the replies owed to abandoned requests off the line, or wait out their deadline."""
        loop = self._loop
        assert loop is not None
        timer = loop.call_at(self._owed_until, self._wake, None)
        try:
            while self._owed > 0:
                if self._frames:
                    item = self._frames.popleft()
                    self._owed -= 1
                    log.info(
                        "discarded the reply of an abandoned request",
                        device=self.device,
                        reply=item if isinstance(item, str) else item.reason,
                    )
                    continue
                if loop.time() >= self._owed_until:
                    log.info("an abandoned request's reply never came", device=self.device)
                    self._owed = 0
                    break
                if self._broken is not None:
                    raise NotConnectedError(self.device, f"{self.port.path}: {self._broken}")
                await self._wait()
        finally:
            timer.cancel()

    def _drop_frames(self) -> None:
        """Forget queued frames; each counts off a reply owed to an abandoned request."""
        self._owed = max(0, self._owed - len(self._frames))
        self._frames.clear()

    async def _send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            if self._broken is not None:
                raise NotConnectedError(self.device, f"{self.port.path}: {self._broken}")
            try:
                written = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._lose(f"write failed: {exc.strerror}")
                raise NotConnectedError(
                    self.device, f"{self.port.path}: write failed: {exc.strerror}"
                ) from exc
            view = view[written:]
            if view:  # the output buffer is full (flow control): wait until it drains
                if written:
                    self._partial = True  # until the last byte is out
                await self._wait(writable=True)
        self._partial = False

    async def _exchange(self, frame: bytes, template: Template, what: str) -> dict[str, Value]:
        """Send one frame and take its reply."""
        await self._send(frame)
        self._outstanding = True
        return await self._reply(template, what)

    async def _wait(self, *, writable: bool = False) -> None:
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        if writable:
            loop.add_writer(self._fd, self._wake, None)
        try:
            await waiter
        finally:
            self._waiter = None
            if writable and self._fd >= 0:
                loop.remove_writer(self._fd)

    async def _reply(self, template: Template, what: str) -> dict[str, Value]:
        """Read frames until one fits ``template`` or is an ERR reply.

        Bad frames and good frames that fit neither are skipped (noted for the
        error message); the base's timeout ends the wait if nothing fits.
        """
        frames = self._frames
        while True:
            while not frames:
                if self._broken is not None:
                    raise NotConnectedError(self.device, f"{self.port.path}: {self._broken}")
                await self._wait()
            item = frames.popleft()
            if isinstance(item, FrameError):
                self._garbled = item.what
                continue
            if item.startswith("ERR") and (len(item) == 3 or item[3] == " "):
                self._outstanding = False
                raise self._device_error(item, what)
            try:
                fields = template.parse(item)
            except TemplateMismatch:
                self._garbled = f"unexpected reply {item!r}"
                continue
            self._outstanding = False
            return fields

    def _device_error(self, line: str, what: str) -> DeviceBusyError | ProtocolError:
        """The typed error for an ``ERR [<code>] [<message>]`` reply."""
        rest = line[3:].strip()
        head, _, message = rest.partition(" ")
        code: int | None = None
        if head.isdigit() and len(head) < 10:
            code = int(head)
        else:
            message = rest
        if code == BUSY_CODE:
            return DeviceBusyError(f"{self.device}: {what}: busy ({message or line})")
        return ProtocolError(self.device, f"{what}: device error {message!r}", code=code)

    # -- requests ----------------------------------------------------------------

    async def _request(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        *,
        retries: int,
        exchanges: int = 1,
    ) -> T:
        """The base's request, with a timeout that only met bad frames told as such.

        The timeout stays the base's; this only says what was seen instead of a
        reply (the base has already restarted the link).
        """
        try:
            return await super()._request(what, operation, retries=retries, exchanges=exchanges)
        except CommunicationTimeout as exc:
            if self._garbled is None or self._garbled_task is not asyncio.current_task():
                raise
            raise ProtocolError(
                self.device, f"{what}: no valid reply within {exc.timeout:g} s ({self._garbled})"
            ) from exc

    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        # A line protocol has no batch: one query after another, in one turn and
        # after one stale-input flush (nothing stale can appear between them).
        await self._begin()
        values: list[Any] = []
        for address in addresses:
            if not isinstance(address, SerialSignal):
                raise ConfigurationError(
                    self.profile.where, f"{address.name} is not a serial address"
                )
            frame = self._query_frames[address.name]
            fields = await self._exchange(frame, address.reply, f"read {address.name}")
            values.append(fields[address.value_field])
        return values

    async def _write(self, address: SignalAddress, wire: Value) -> None:
        if not isinstance(address, SerialSignal) or address.write is None:
            raise ConfigurationError(address.spec.where, f"{address.name} has no write template")
        line = address.write.format({address.write.names[0]: wire})
        frame = self._frame(line)
        await self._begin()
        await self._exchange(frame, address.ack, f"write {address.name}")

    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        if not isinstance(command, SerialCommand):
            raise ConfigurationError(command.spec.where, f"{command.name} is not a serial command")
        line = command.send.format(dict(zip(command.spec.args, args, strict=True)))
        frame = self._frame(line)
        await self._begin()
        fields = await self._exchange(frame, command.reply, f"call {command.name}")
        return [fields[name] for name in command.reply.names]

    def _frame(self, line: str) -> bytes:
        if len(line) + self._framing.suffix_length > self.settings.max_line:
            raise OutOfRangeError(
                f"{self.device}: request {line[:40]!r}... is longer than max_line "
                f"{self.settings.max_line}"
            )
        return self._framing.encode(line)
