"""Any twin model behind an ASCII line protocol on a tty (one end of a null modem).

The server reads the same profile as the driver (through the serial
transport's own profile parser), so it answers exactly the queries, writes
and commands the driver sends:

- a query gets its reply filled from ``spec.encode(model.read(name))``;
- a write runs ``model.write(name, spec.decode(value))``, then the ack;
- a command runs ``model.call(name, args)``, then the reply with the results.

Errors are answered ``ERR <code> <message>``:

==== ==============================================================
1    bad frame: bad or missing checksum, non-ASCII, too long. Chosen
     over silence so a damaged request fails at once, typed, rather
     than costing the driver a timeout and a link restart.
2    unknown request, or a tag or method the model does not have
3    value refused (OutOfRangeError, or a value of the wrong type)
5    the model's answer does not fit the reply template (a twin bug)
6    busy (DeviceBusyError)
==== ==============================================================

Faults (``self.faults``, checked per request): ``stall`` never answers;
``delay`` answers that many wall seconds later (the reply is computed when
the request arrives, like a device that measures and then is slow to talk);
``corrupt`` damages the next N replies (one character changed, so the
checksum, or without one the framing or template, fails); ``error`` answers
every request ``ERR <code> fault``.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass

import structlog

from flexctl.errors import ConfigurationError, DeviceBusyError, OutOfRangeError, ProtocolError
from flexctl.profile import Profile, SignalSpec, Value
from flexctl.transports.serial import (
    SerialCommand,
    SerialSignal,
    parse_serial_command,
    parse_serial_settings,
    parse_serial_signal,
)
from flexctl.transports.serial_framing import FrameError, LineSplitter
from flexctl.transports.serial_template import Template, TemplateMismatch
from simulators.models.base import TwinModel, UnknownTagError
from simulators.servers.base import TwinServer
from simulators.servers.null_modem import NullModem, flush_input

log = structlog.get_logger("simulators.serial")

ERR_FRAME = 1
ERR_UNKNOWN = 2
ERR_REFUSED = 3
ERR_INTERNAL = 5
ERR_BUSY = 6
_READ_CHUNK = 4096
_MESSAGE_MAX = 60


@dataclass(frozen=True)
class _Write:
    template: Template
    signal: SerialSignal


class SerialTwinServer(TwinServer):
    """Serves ``model`` on ``link.a_path``; the driver connects to ``serial://<b_path>``."""

    def __init__(self, model: TwinModel, profile: Profile, *, link: NullModem) -> None:
        super().__init__(model, profile)
        self.link = link
        settings = parse_serial_settings(profile)
        self._framing = settings.framing
        self._splitter = LineSplitter(settings.framing, settings.max_line, device="twin")
        self._queries: dict[str, SerialSignal] = {}
        self._writes: list[_Write] = []
        for spec in profile.signals.values():
            signal = parse_serial_signal(spec)
            query = signal.query.text
            if query in self._queries:
                raise ConfigurationError(
                    spec.where,
                    f"signal {spec.name}: query {query!r} is also {self._queries[query].name}'s; "
                    "a twin cannot tell them apart",
                )
            self._queries[query] = signal
            if signal.write is not None:
                self._writes.append(_Write(signal.write, signal))
        self._commands: list[SerialCommand] = [
            parse_serial_command(spec) for spec in profile.commands.values()
        ]
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        # Requests waiting behind a delayed answer, answered in order by one task.
        self._pending: deque[tuple[float, bytes | None]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return f"serial://{self.link.b_path}"

    @property
    def running(self) -> bool:
        return self._fd >= 0

    async def start(self) -> None:
        """Open the tty (dropping requests sent while it was closed) and serve."""
        if self._fd >= 0:
            return
        loop = asyncio.get_running_loop()
        fd = os.open(self.link.a_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        flush_input(fd)  # requests sent while we were down get no answer, as on a device
        self._loop = loop
        self._fd = fd
        self._splitter.reset()
        loop.add_reader(fd, self._on_readable)

    async def stop(self) -> None:
        """Close the tty; requests then go unanswered. Safe to call twice."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        self._pending.clear()
        self._splitter.reset()
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def drop_connections(self) -> None:
        """Close and reopen the tty: partial input and unsent answers are lost."""
        if self._fd >= 0:
            await self.stop()
            await self.start()

    # -- the wire ----------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            log.warning("twin tty read failed", path=self.link.a_path, error=str(exc))
        if not data:  # hang-up (the cable is gone): stop watching; stop() still closes
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            return
        for item in self._splitter.feed(data):
            self.requests += 1
            if self.faults.stall:
                continue  # taken, never answered
            delay = self.faults.delay
            if delay <= 0 and not self._pending:
                self._send(self._answer(item))
                continue
            # Computed now, sent later, in order behind earlier delayed answers.
            loop = asyncio.get_running_loop()
            self._pending.append((loop.time() + max(0.0, delay), self._answer(item)))
            if self._worker is None or self._worker.done():
                self._worker = loop.create_task(self._drain(), name="serial-twin-delay")

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            due, frame = self._pending[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # wire time: the fault is a slow device
            if self._pending and self._pending[0][0] == due:
                self._pending.popleft()
                self._send(frame)

    def _send(self, frame: bytes | None) -> None:
        if frame is None or self._fd < 0:
            return
        try:
            os.write(self._fd, frame)
        except BlockingIOError:
            log.warning("twin reply dropped: tty full", path=self.link.a_path)

    # -- answering ---------------------------------------------------------------

    def _answer(self, item: str | FrameError) -> bytes:
        if isinstance(item, FrameError):
            line = f"ERR {ERR_FRAME} {item.reason}"
        elif self.faults.error is not None:
            line = f"ERR {self.faults.error} fault"
        else:
            line = self._dispatch(item)
        frame = self._framing.encode(line)
        if self.faults.take_corrupt():
            frame = self._damage(frame)
        return frame

    def _damage(self, frame: bytes) -> bytes:
        """Change one character so the checksum (or, without one, the framing) fails."""
        body = bytearray(frame[: len(frame) - len(self._framing.terminator)])
        if self._framing.checksum == "crc16":
            body[0] ^= 0x01  # still printable: reaches the checksum test, which fails
        else:
            body[0] |= 0x80  # not ASCII: refused by the framing
        return bytes(body) + frame[len(body) :]

    def _dispatch(self, line: str) -> str:
        try:
            return self._serve(line)
        except OutOfRangeError as exc:
            return _err(ERR_REFUSED, str(exc))
        except ProtocolError as exc:  # a value of the wrong type for the signal
            return _err(ERR_REFUSED, exc.what)
        except DeviceBusyError as exc:
            return _err(ERR_BUSY, str(exc))
        except UnknownTagError as exc:
            return _err(ERR_UNKNOWN, str(exc))

    def _serve(self, line: str) -> str:
        signal = self._queries.get(line)
        if signal is not None:
            return self._reply(signal.reply, {signal.value_field: self._read(signal.spec)})
        for write in self._writes:
            try:
                fields = write.template.parse(line)
            except TemplateMismatch:
                continue
            spec = write.signal.spec
            wire = fields[write.template.names[0]]
            self.model.write(spec.name, spec.decode(wire))
            ack = write.signal.ack
            if ack.is_literal:
                return ack.text
            return self._reply(ack, dict.fromkeys(ack.names, self._read(spec)))  # an echo
        for command in self._commands:
            try:
                fields = command.send.parse(line)
            except TemplateMismatch:
                continue
            results = self.model.call(command.name, [fields[a] for a in command.spec.args])
            names = command.reply.names
            if len(results) != len(names):
                return _err(
                    ERR_INTERNAL, f"{command.name} returned {len(results)} for {len(names)}"
                )
            return self._reply(command.reply, dict(zip(names, results, strict=True)))
        return _err(ERR_UNKNOWN, "unknown request")

    def _read(self, spec: SignalSpec) -> Value:
        return spec.encode(self.model.read(spec.name))

    def _reply(self, template: Template, values: dict[str, Value]) -> str:
        try:
            return template.format(values)
        except OutOfRangeError as exc:  # the model's value does not fit the profile
            return _err(ERR_INTERNAL, str(exc))


def _err(code: int, message: str) -> str:
    """An ``ERR`` line with a printable, bounded message."""
    text = "".join(c if " " <= c <= "~" else "?" for c in message)[:_MESSAGE_MAX]
    return f"ERR {code} {text}".rstrip()
