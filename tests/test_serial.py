"""Serial transport and twin over a pty null modem: what the contract suite does not cover."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flexctl.clock import VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.profile import Profile, load_profile
from flexctl.resources import shipped_file
from flexctl.transports.base import ConnectionState, TransportOptions
from flexctl.transports.registry import check_profile, create_transport
from flexctl.transports.serial import SerialTransport, parse_endpoint
from flexctl.transports.serial_framing import Framing, LineSplitter
from simulators.models.demo import DemoModel
from simulators.servers.null_modem import NullModem
from simulators.servers.serial_server import SerialTwinServer

OPTIONS = TransportOptions(
    timeout=0.2, connect_timeout=2.0, read_retries=0, backoff_initial=0.05, backoff_max=0.5
)
RECOVER_S = 10.0  # wall seconds a test may wait for something to happen; never a sleep
SHIPPED = shipped_file("profiles", "demo.serial").read_text()
CRC = Framing(checksum="crc16")


def _profile(tmp_path: Path, text: str, name: str = "demo.serial.yaml") -> Profile:
    path = tmp_path / name
    path.write_text(text)
    return load_profile(path)


def _variant(tmp_path: Path, old: str, new: str, name: str = "variant.serial.yaml") -> Profile:
    """The shipped demo profile with one piece of text replaced."""
    assert old in SHIPPED, old
    return _profile(tmp_path, SHIPPED.replace(old, new, 1), name)


@dataclass
class Rig:
    link: NullModem
    server: SerialTwinServer
    model: DemoModel
    transport: SerialTransport


@asynccontextmanager
async def rig(
    clock: VirtualClock,
    tmp_path: Path,
    *,
    server_profile: Profile | None = None,
    profile: Profile | None = None,
    options: TransportOptions = OPTIONS,
    connect: bool = True,
) -> AsyncIterator[Rig]:
    shipped = _profile(tmp_path, SHIPPED)
    model = DemoModel(clock)
    async with NullModem() as link:
        server = SerialTwinServer(model, server_profile or shipped, link=link)
        async with server:
            transport = SerialTransport(
                profile or server_profile or shipped, server.endpoint, clock=clock, options=options
            )
            try:
                if connect:
                    await transport.connect()
                yield Rig(link, server, model, transport)
            finally:
                await transport.close()


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop (never sleep) until ``condition()`` holds: the pty bridge runs there."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def _inject(link: NullModem, payload: str) -> int:
    """Write a framed line on the twin's side of the cable, as if the device sent it."""
    frame = CRC.encode(payload)
    fd = os.open(link.a_path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, frame)
    finally:
        os.close(fd)
    return len(frame)


class RawPort:
    """A bare tty end for talking to the twin directly (no transport in between)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.splitter = LineSplitter(CRC)

    def close(self) -> None:
        os.close(self.fd)

    async def ask(self, frame: bytes) -> str:
        os.write(self.fd, frame)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(RECOVER_S):
            while True:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(self.fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.fd)
                for item in self.splitter.feed(os.read(self.fd, 4096)):
                    assert isinstance(item, str), item
                    return item


# -- stale input --------------------------------------------------------------------


async def test_unsolicited_line_before_a_request_is_not_its_reply(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        before = r.link.bytes_a_to_b
        sent = _inject(r.link, "SP 11.0")
        await _until(lambda: r.link.bytes_a_to_b >= before + sent, "stale line crossed")
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_late_reply_after_a_timeout_is_not_the_next_answer(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    # The probe reads another signal, so the late "SP 20.0" can only end up as
    # the answer to the next SP read, which must be refused.
    probe_t = _variant(tmp_path, "probe: temperature_sp", "probe: temperature")
    async with rig(vclock, tmp_path, profile=probe_t) as r:
        t = r.transport
        sp = t.signal("temperature_sp")
        r.server.faults.delay = 0.5  # the reply is computed now, sent after the timeout
        with pytest.raises(CommunicationTimeout):
            await t.read_one(sp)
        r.model.write("temperature_sp", 30.0)
        r.server.faults.clear()
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(sp) == 30.0
        assert await t.read_one(sp) == 30.0


# -- device errors ------------------------------------------------------------------


async def test_err_codes_become_typed_errors(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.error = 9
        with pytest.raises(ProtocolError) as caught:
            await t.read([t.signal("ch00"), t.signal("ch01")])
        assert caught.value.code == 9
        assert "read ch00" in str(caught.value)
        r.server.faults.error = 6
        with pytest.raises(DeviceBusyError):
            await t.read_one(t.signal("temperature"))
        r.server.faults.clear()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_refusals_from_the_model(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        with pytest.raises(ProtocolError) as caught:
            await t.write(t.signal("label"), "a-label-far-too-long")  # the model's limit is 16
        assert caught.value.code == 3
        assert t.state is ConnectionState.CONNECTED
        with pytest.raises(OutOfRangeError):
            await t.write(t.signal("label"), "caf\u00e9")  # not ASCII: refused locally
        with pytest.raises(OutOfRangeError):
            await t.write(t.signal("level"), 40000)  # int16 refuses it before the wire
        with pytest.raises(OutOfRangeError, match="max_line"):
            await t.write(t.signal("label"), "x" * 200)
        assert await t.read_one(t.signal("label")) == "demo"


async def test_unknown_request_is_err_2(vclock: VirtualClock, tmp_path: Path) -> None:
    ghost = _variant(
        tmp_path,
        "  cycles:",
        '  ghost: {type: int32, query: "GHOST?", reply: "GHOST {value}"}\n  cycles:',
    )
    shipped = _profile(tmp_path, SHIPPED)
    async with rig(vclock, tmp_path, server_profile=shipped, profile=ghost) as r:
        t = r.transport
        with pytest.raises(ProtocolError) as caught:
            await t.read_one(t.signal("ghost"))
        assert caught.value.code == 2
        assert await t.read_one(t.signal("cycles")) == 0


async def test_bad_request_frames_are_err_1(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path, connect=False) as r:
        port = RawPort(r.link.b_path)
        try:
            assert await port.ask(b"SP?*0000\r\n") == "ERR 1 bad checksum"
            assert await port.ask(b"SP?\r\n") == "ERR 1 no checksum"
            assert await port.ask(CRC.encode("NOPE?")) == "ERR 2 unknown request"
            assert await port.ask(CRC.encode("SP?")) == "SP 20.0"
        finally:
            port.close()


# -- writes and commands ------------------------------------------------------------


async def test_write_waits_for_its_ack(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        await t.write(t.signal("temperature_sp"), 37.5)
        assert r.model.read("temperature_sp") == 37.5
        await t.write(t.signal("level"), -7)
        assert await t.read_one(t.signal("level")) == -7


async def test_ack_with_an_echo(vclock: VirtualClock, tmp_path: Path) -> None:
    echo = _variant(tmp_path, 'ack: "OK"', 'ack: "SP= {value:f}"')
    async with rig(vclock, tmp_path, server_profile=echo) as r:
        t = r.transport
        await t.write(t.signal("temperature_sp"), 12.5)
        assert r.model.read("temperature_sp") == 12.5


async def test_wrong_ack_is_a_protocol_error_not_success(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    done = _variant(tmp_path, 'ack: "OK"', 'ack: "DONE"')
    shipped = _profile(tmp_path, SHIPPED)
    async with rig(vclock, tmp_path, server_profile=shipped, profile=done) as r:
        t = r.transport
        with pytest.raises(ProtocolError, match="unexpected reply 'OK'"):
            await t.write(t.signal("temperature_sp"), 25.0)
        assert r.model.read("temperature_sp") == 25.0  # it landed; the reply was not understood


async def test_command_default_send_is_the_upper_cased_name(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    plain = _variant(tmp_path, 'send: "START {rate:f}", ', "")
    async with rig(vclock, tmp_path, server_profile=plain) as r:
        t = r.transport
        assert t.command("start").send.text == "START {rate}"
        assert await t.call(t.command("start"), [2]) == [1]
        assert r.model.read("rate") == 2.0


async def test_concurrent_requests_are_one_at_a_time(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        names = [f"ch{i:02d}" for i in range(20)] + ["label", "level", "cycles"]
        results = await asyncio.gather(*(t.read_one(t.signal(n)) for n in names))
        assert results == pytest.approx([r.model.read(n) for n in names], abs=1e-3)


async def test_requests_queued_behind_a_slow_one_get_their_own_timeout(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    # Each answer takes 0.12 s of the 0.2 s timeout; the last of four waits 0.36 s
    # for the line, which must not count: nothing times out, no link restarts.
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.delay = 0.12
        sp, temperature = t.signal("temperature_sp"), t.signal("temperature")
        results = await asyncio.gather(
            t.read_one(temperature),
            t.read_one(sp),
            t.write(sp, 37.0),
            t.read_one(sp),
            return_exceptions=True,
        )
        assert not [x for x in results if isinstance(x, BaseException)], results
        assert results[3] == 37.0
        assert r.model.read("temperature_sp") == 37.0
        assert t.state is ConnectionState.CONNECTED
        assert t.reconnects == 0


async def test_a_batched_read_has_a_timeout_per_signal(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        names = [f"ch{i:02d}" for i in range(20)] + ["temperature_sp"]
        assert t._request_timeout(len(names)) == pytest.approx(len(names) * OPTIONS.timeout)
        r.server.faults.delay = 0.02  # 21 answers: 0.42 s, twice one exchange's timeout
        values = await t.read([t.signal(n) for n in names])
        assert values[-1] == 20.0
        assert t.state is ConnectionState.CONNECTED


async def _cancel_once_sent(r: Rig, request: Coroutine[Any, Any, object]) -> None:
    """Start ``request``, cancel it once the twin has taken its frame (its reply is due)."""
    before = r.server.requests
    task = asyncio.ensure_future(request)
    await _until(lambda: r.server.requests > before, "the request reached the twin")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_reply_to_a_cancelled_write_is_not_the_next_answer(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        sp = t.signal("temperature_sp")
        r.server.faults.delay = 0.1  # the "OK" comes after the step was cancelled
        await _cancel_once_sent(r, t.write(sp, 37.0))
        with pytest.raises(ProtocolError) as refused:  # the twin refuses 80: ERR 3
            await t.write(sp, 80.0)
        assert refused.value.code == 3
        assert r.model.read("temperature_sp") == 37.0  # the cancelled write landed
        assert await t.read_one(sp) == 37.0
        assert t.state is ConnectionState.CONNECTED


async def test_reply_to_a_cancelled_read_is_not_the_next_answer(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        sp = t.signal("temperature_sp")
        r.server.faults.delay = 0.1
        await _cancel_once_sent(r, t.read_one(sp))  # "SP 20.0" is on its way
        r.model.write("temperature_sp", 30.0)
        assert await t.read_one(sp) == 30.0
        assert t.state is ConnectionState.CONNECTED


async def test_a_cancelled_request_whose_reply_never_comes_costs_no_timeout(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.stall = True
        await _cancel_once_sent(r, t.write(t.signal("temperature_sp"), 37.0))
        r.server.faults.clear()
        # Waits out the owed reply's deadline for the line, then has its own timeout.
        assert await t.read_one(t.signal("label")) == "demo"
        assert t.state is ConnectionState.CONNECTED
        assert t.reconnects == 0


async def test_a_cut_off_frame_is_spoiled_not_completed(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        # As if a write were cancelled with the output buffer full: all but its terminator out.
        os.write(t._fd, CRC.encode("SP 44.0")[:-2])
        t._partial = True
        before = r.server.requests
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        assert r.server.requests == before + 2  # the spoiled line, answered ERR 1, and SP?
        assert r.model.read("temperature_sp") == 20.0
        assert t.state is ConnectionState.CONNECTED


async def test_checksum_none_and_a_one_byte_terminator(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    plain = _variant(
        tmp_path,
        'framing: {terminator: "\\r\\n", checksum: crc16, separator: "*"}',
        'framing: {terminator: "\\n"}',
    )
    async with rig(vclock, tmp_path, server_profile=plain) as r:
        t = r.transport
        assert t.settings.framing == Framing(terminator="\n")
        await t.write(t.signal("label"), "bag-7")
        assert await t.read_one(t.signal("label")) == "bag-7"
        r.server.faults.corrupt = 1  # without a checksum: a non-ASCII byte
        with pytest.raises(ProtocolError, match="non-ASCII"):
            await t.read_one(t.signal("label"))


# -- fault hooks, as the transport sees them ----------------------------------------


async def test_stall_is_a_timeout(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.stall = True
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("temperature_sp"))
        with pytest.raises(NotConnectedError):
            await t.read_one(t.signal("temperature_sp"))
        r.server.faults.clear()
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_delay_beyond_the_timeout_is_a_timeout(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.delay = 0.05
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        r.server.faults.delay = 0.4
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("temperature_sp"))


async def test_corrupt_replies_are_protocol_errors(vclock: VirtualClock, tmp_path: Path) -> None:
    retry = TransportOptions(timeout=0.2, connect_timeout=2.0, read_retries=1, backoff_initial=0.05)
    async with rig(vclock, tmp_path, options=retry) as r:
        t = r.transport
        r.server.faults.corrupt = 1  # the retry gets a good reply
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        assert t.state is ConnectionState.CONNECTED
        r.server.faults.corrupt = 2  # both attempts damaged: only bad frames arrived
        with pytest.raises(ProtocolError, match="bad checksum") as caught:
            await t.read_one(t.signal("temperature_sp"))
        assert not isinstance(caught.value, CommunicationTimeout)
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_error_fault_is_its_code(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.server.faults.error = 4
        with pytest.raises(ProtocolError) as caught:
            await t.call(t.command("stop"))
        assert caught.value.code == 4
        assert t.state is ConnectionState.CONNECTED


async def test_dropped_connection_loses_nothing_later(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        await r.server.drop_connections()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        assert t.reconnects == 0


async def test_server_stop_then_start(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        await r.server.stop()
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("temperature_sp"))
        await r.server.start()
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_cut_cable_times_out_and_splice_recovers(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    async with rig(vclock, tmp_path) as r:
        t = r.transport
        r.link.cut()
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("temperature_sp"))
        r.link.splice()
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("cycles")) == 0


# -- the tty itself -----------------------------------------------------------------


async def test_missing_tty_is_not_connected(vclock: VirtualClock, tmp_path: Path) -> None:
    profile = _profile(tmp_path, SHIPPED)
    t = SerialTransport(profile, "serial:///dev/no-such-tty", clock=vclock, options=OPTIONS)
    with pytest.raises(NotConnectedError, match="no-such-tty"):
        await t.connect()
    assert t.state is ConnectionState.DISCONNECTED
    await t.close()


async def test_silent_line_fails_connect(vclock: VirtualClock, tmp_path: Path) -> None:
    quick = TransportOptions(timeout=0.2, connect_timeout=0.3)
    async with rig(vclock, tmp_path, options=quick, connect=False) as r:
        await r.server.stop()
        with pytest.raises(NotConnectedError) as caught:
            await r.transport.connect()
        assert isinstance(caught.value.causes["connect"], CommunicationTimeout)


async def test_port_is_exclusive(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path) as r:
        other = SerialTransport(
            r.transport.profile, r.server.endpoint, clock=vclock, options=OPTIONS
        )
        with pytest.raises(NotConnectedError, match="lock"):
            await other.connect()
        await other.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_close_and_reconnect_leave_no_fd_behind(vclock: VirtualClock, tmp_path: Path) -> None:
    async with rig(vclock, tmp_path, connect=False) as r:
        t = r.transport
        before = _open_fds()
        for _ in range(3):
            await t.connect()
            r.server.faults.stall = True
            with pytest.raises(CommunicationTimeout):
                await t.read_one(t.signal("temperature_sp"))
            r.server.faults.clear()
            async with asyncio.timeout(RECOVER_S):
                await t.wait_connected()
            await t.close()
            assert t.state is ConnectionState.DISCONNECTED
        assert _open_fds() == before


async def test_link_gone_is_not_connected(vclock: VirtualClock, tmp_path: Path) -> None:
    profile = _profile(tmp_path, SHIPPED)
    link = NullModem()
    await link.open()
    server = SerialTwinServer(DemoModel(vclock), profile, link=link)
    await server.start()
    t = SerialTransport(profile, server.endpoint, clock=vclock, options=OPTIONS)
    try:
        await t.connect()
        await server.stop()
        await link.close()  # the cable's far end is gone: the tty hangs up
        with pytest.raises((NotConnectedError, CommunicationTimeout)):
            await t.read_one(t.signal("temperature_sp"))
        assert t.state is not ConnectionState.CONNECTED
    finally:
        await t.close()


# -- configuration ------------------------------------------------------------------


def test_shipped_profile_checks() -> None:
    profile = load_profile(shipped_file("profiles", "demo.serial"))
    check_profile(profile)
    assert SerialTransport.parse_signal(profile.signal("mode")).reply.fields[0].type == "d"


@pytest.mark.parametrize(
    "case",
    [
        ('query: "T?"', 'qurey: "T?"', 10, "unknown key 'qurey'"),
        ('reply: "T {value:f}"', 'reply: "T {value:x}"', 10, "unknown format"),
        ('reply: "T {value:f}"', 'reply: "T {value:f} {unit:s}"', 10, "exactly one field"),
        ('query: "T?"', 'query: "T? {n:d}"', 10, "cannot have fields"),
        ('reply: "CYC {value:d}"', 'reply: "CYC {value:f}"', 25, "cannot carry a uint32"),
        ('reply: "T {value:f}"', 'reply: "ERR {value:f}"', 10, "ERR"),
        ('write: "SP {value:f}"', 'wirte: "SP {value:f}"', 18, "unknown key 'wirte'"),
        ("checksum: crc16", "checksum: crc32", 6, "checksum 'crc32'"),
        ("checksum: crc16", "checksum: crc16, parity: N", 6, "unknown key 'parity'"),
        ('send: "START {rate:f}"', 'send: "START {speed:f}"', 47, "each arg once"),
        ("probe: temperature_sp", "probe: nothing", 7, "probe"),
        ("max_line: 128", "baudrate: 9600", 8, "unknown key 'baudrate'"),
        ("max_line: 128", "max_line: 2", 8, "max_line"),
    ],
)
def test_bad_profiles_name_file_and_line(
    tmp_path: Path, vclock: VirtualClock, case: tuple[str, str, int, str]
) -> None:
    old, new, line, message = case
    profile_path = tmp_path / "bad.serial.yaml"
    assert old in SHIPPED, old
    profile_path.write_text(SHIPPED.replace(old, new, 1))
    with pytest.raises(ConfigurationError, match=message) as caught:
        profile = load_profile(profile_path)
        create_transport(profile, "serial:///dev/null", clock=vclock)
    assert caught.value.file == str(profile_path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{profile_path}:{line}")


def test_writable_signal_needs_a_write_template(tmp_path: Path, vclock: VirtualClock) -> None:
    profile = _variant(tmp_path, '    write: "SP {value:f}"\n', "")
    with pytest.raises(ConfigurationError, match="needs a 'write' template") as caught:
        SerialTransport(profile, "serial:///dev/null", clock=vclock)
    assert caught.value.line == 12


def test_endpoint_options(tmp_path: Path) -> None:
    where = _profile(tmp_path, SHIPPED).where
    port = parse_endpoint(
        "serial:///dev/ttyS0?baudrate=115200&parity=E&stopbits=2&bytesize=7", where
    )
    assert (port.path, port.baudrate, port.parity, port.stopbits, port.bytesize) == (
        "/dev/ttyS0",
        115200,
        "E",
        2,
        7,
    )
    for bad in (
        "serial:///dev/ttyS0?baud=9600",
        "serial:///dev/ttyS0?baudrate=fast",
        "serial:///dev/ttyS0?baudrate=0",
        "serial:///dev/ttyS0?baudrate=49",
        "serial:///dev/ttyS0?baudrate=4000000000",
        "serial:///dev/ttyS0?parity=Q",
        "serial:///dev/ttyS0?stopbits=3",
        "serial://",
    ):
        with pytest.raises(ConfigurationError, match="endpoint"):
            parse_endpoint(bad, where)
    with pytest.raises(
        ConfigurationError, match=r"4000000000.*expected a baud rate in 50\.\.4000000"
    ):
        parse_endpoint("serial:///dev/ttyUSB0?baudrate=4000000000", where)
    assert parse_endpoint("serial:///dev/ttyUSB0?baudrate=4000000", where).baudrate == 4_000_000
