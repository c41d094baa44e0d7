"""Modbus TCP and RTU against their twins: addresses pinned on the wire, batching,
exception codes, the shared RTU bus, profile checks with file:line."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

from flexctl.clock import VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    ProtocolError,
)
from flexctl.profile import Profile, load_profile
from flexctl.resources import shipped_profile
from flexctl.transports.base import ConnectionState, Transport, TransportOptions
from flexctl.transports.modbus import ModbusTcpTransport
from flexctl.transports.modbus_endpoint import (
    SerialSettings,
    parse_rtu_endpoint,
    parse_tcp_endpoint,
)
from flexctl.transports.modbus_rtu import ModbusRtuTransport
from flexctl.transports.registry import check_profile, create_transport
from simulators.models.demo import CHANNELS, DemoModel
from simulators.servers.modbus_server import (
    ModbusRtuTwinServer,
    ModbusTcpTwinServer,
    RequestRecord,
)
from simulators.servers.null_modem import NullModem

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
KINDS = ("modbus-tcp", "modbus-rtu")
CHANNEL_NAMES = [f"ch{i:02d}" for i in range(CHANNELS)]


def demo_profile() -> Profile:
    return shipped_profile("demo.modbus")


@asynccontextmanager
async def twin(
    kind: str, model: DemoModel, profile: Profile
) -> AsyncIterator[ModbusTcpTwinServer | ModbusRtuTwinServer]:
    """A started twin server of ``kind`` (with its null modem for RTU)."""
    if kind == "modbus-tcp":
        async with ModbusTcpTwinServer(model, profile) as server:
            yield server
        return
    async with NullModem() as link, ModbusRtuTwinServer(model, profile, link=link) as rtu:
        yield rtu


@asynccontextmanager
async def connected(
    server: ModbusTcpTwinServer | ModbusRtuTwinServer,
    profile: Profile,
    clock: VirtualClock,
    *,
    endpoint: str | None = None,
    options: TransportOptions = OPTIONS,
) -> AsyncIterator[Transport]:
    transport = create_transport(profile, endpoint or server.endpoint, clock=clock, options=options)
    try:
        await transport.connect()
        yield transport
    finally:
        await transport.close()


@asynccontextmanager
async def bare_client(
    server: ModbusTcpTwinServer | ModbusRtuTwinServer,
) -> AsyncIterator[ModbusBaseClient]:
    """A plain pymodbus client on the same twin, to see the registers as they are."""
    client: ModbusBaseClient
    if isinstance(server, ModbusTcpTwinServer):
        client = AsyncModbusTcpClient(
            server.host, port=server.port, retries=0, reconnect_delay=0, timeout=2.0
        )
    else:
        client = AsyncModbusSerialClient(
            server.link.b_path, baudrate=server.baudrate, retries=0, reconnect_delay=0, timeout=2.0
        )
    assert await client.connect()
    try:
        await asyncio.sleep(0)  # the serial transport registers its reader on the next turn
        yield client
    finally:
        client.close()


def f32(value: float, *, word_order: str = "big") -> list[int]:
    """A float32 as two registers, computed here without the codec under test."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low] if word_order == "big" else [low, high]


async def raw_registers(
    client: ModbusBaseClient, table: str, address: int, count: int
) -> list[int]:
    if table == "holding":
        reply = await client.read_holding_registers(address, count=count, device_id=1)
    else:
        reply = await client.read_input_registers(address, count=count, device_id=1)
    assert not reply.isError(), reply
    return list(reply.registers)


# -- addresses pinned on the wire -----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_every_profile_address_is_pinned_on_the_wire(kind: str, vclock: VirtualClock) -> None:
    """Write and call through flexctl, then read the raw registers with a bare client.

    The expected registers are computed by hand (struct, not the codec), at the
    0-based addresses the profile names: an off-by-one datastore fails here.
    """
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin(kind, model, profile) as server:
        async with connected(server, profile, vclock) as t:
            await t.write(t.signal("temperature_sp"), 37.5)
            await t.write(t.signal("label"), "bag-0042")
            await t.write(t.signal("level"), -123)
            assert await t.call(t.command("start"), [12.5]) == [1]
            through_flexctl = await t.read([t.signal(n) for n in profile.signals])
        # the transport is closed: a bare client may take the port (RTU) now
        async with bare_client(server) as bare:
            assert await raw_registers(bare, "holding", 0, 2) == [0x4216, 0x0000]
            assert await raw_registers(bare, "holding", 2, 8) == [
                0x6261,  # "ba"
                0x672D,  # "g-"
                0x3030,  # "00"
                0x3432,  # "42"
                0,
                0,
                0,
                0,
            ]
            assert await raw_registers(bare, "holding", 10, 1) == [0xFFFF - 122]  # -123
            assert await raw_registers(bare, "holding", 20, 3) == [
                *f32(12.5, word_order="little"),
                1,
            ]
            mode_rate_cycles = await raw_registers(bare, "input", 2, 5)
            assert mode_rate_cycles == [1, *f32(12.5, word_order="little"), 0x0100, 0x0000]
            assert await raw_registers(bare, "input", 60, 2) == [0x0000, 0x0001]
            temperature = await raw_registers(bare, "input", 0, 2)  # little word order
            value = struct.unpack(">f", struct.pack(">HH", temperature[1], temperature[0]))[0]
            assert value == pytest.approx(20.0, abs=0.1)
            channels = await raw_registers(bare, "input", 10, 2 * CHANNELS)
            for i in range(CHANNELS):
                expected = round(10.0 * i + math.sin(vclock.now() / 600.0 + i), 3)
                assert channels[2 * i : 2 * i + 2] == f32(expected), f"ch{i:02d}"
            running = await bare.read_discrete_inputs(0, count=1, device_id=1)
            assert running.bits[0] is True
            # neighbours the profile does not name are not served: no silent shift
            for table, address in (("holding", 11), ("holding", 19), ("input", 7), ("input", 50)):
                if table == "holding":
                    reply = await bare.read_holding_registers(address, count=1, device_id=1)
                else:
                    reply = await bare.read_input_registers(address, count=1, device_id=1)
                assert reply.isError() and reply.exception_code == 2, (table, address)
    by_name = dict(zip(profile.signals, through_flexctl, strict=True))
    assert by_name["temperature_sp"] == 37.5
    assert by_name["label"] == "bag-0042"
    assert by_name["level"] == -123
    assert by_name["rate"] == 12.5
    assert by_name["cycles"] == 1
    assert by_name["mode"] == "running"
    assert by_name["running"] is True


async def test_a_write_by_a_bare_client_is_what_flexctl_reads(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with (
        twin("modbus-tcp", model, profile) as server,
        bare_client(server) as bare,
        connected(server, profile, vclock) as t,
    ):
        reply = await bare.write_registers(0, f32(41.25), device_id=1)
        assert not reply.isError()
        assert model.read("temperature_sp") == 41.25
        assert await t.read_one(t.signal("temperature_sp")) == 41.25
        refused = await bare.write_registers(0, f32(51.0), device_id=1)  # model limit 50
        assert refused.isError() and refused.exception_code == 3
        read_only = await bare.write_registers(60, [0, 7], device_id=1)  # a result
        assert read_only.isError() and read_only.exception_code == 2


# -- batching on the wire ---------------------------------------------------------


def _reads(server: ModbusTcpTwinServer | ModbusRtuTwinServer) -> list[RequestRecord]:
    return [r for r in server.requests if r.function_code in (1, 2, 3, 4)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_twenty_signal_batch_is_one_request(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin(kind, model, profile) as server, connected(server, profile, vclock) as t:
        server.requests.clear()
        values = await t.read([t.signal(n) for n in reversed(CHANNEL_NAMES)])
        assert values == pytest.approx([model.read(n) for n in reversed(CHANNEL_NAMES)], abs=1e-3)
        assert server.requests == type(server.requests)([RequestRecord(1, 4, 10, 40)])

        server.requests.clear()
        mixed = ["running", "mode", "label", "level", "cycles", "temperature_sp"]
        assert await t.read([t.signal(n) for n in mixed]) == [False, "idle", "demo", -5, 0, 20.0]
        # holding 0..10 is contiguous; input 2 and 5-6 are not (rate sits between)
        assert sorted((r.function_code, r.address, r.count) for r in _reads(server)) == [
            (2, 0, 1),
            (3, 0, 11),
            (4, 2, 1),
            (4, 5, 2),
        ]


async def test_a_command_writes_its_arguments_then_its_trigger_alone(
    vclock: VirtualClock,
) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with (
        twin("modbus-tcp", model, profile) as server,
        connected(server, profile, vclock) as t,
    ):
        server.requests.clear()
        assert await t.call(t.command("start"), [12.5]) == [1]
        # the trigger (holding 22) touches the argument (20-21) but goes out on its own, last
        assert list(server.requests) == [
            RequestRecord(1, 16, 20, 2),
            RequestRecord(1, 6, 22, 1),
            RequestRecord(1, 4, 60, 2),
        ]
        server.requests.clear()
        assert await t.call(t.command("stop")) == [1]
        assert list(server.requests) == [RequestRecord(1, 6, 22, 1), RequestRecord(1, 4, 60, 2)]


async def test_a_trigger_next_to_its_arguments_goes_out_after_them(
    vclock: VirtualClock,
) -> None:
    """cell_processor ``load``: trigger at 100, arguments at 101-108.

    Written as one block, the trigger would land first: a device acting in
    register order would run the command with the previous arguments.
    """
    from simulators.models.cell_processor import CellProcessorModel

    model = CellProcessorModel(vclock)
    profile = shipped_profile("cell_processor.modbus")
    async with (
        ModbusTcpTwinServer(model, profile) as server,
        connected(server, profile, vclock) as t,
    ):
        server.requests.clear()
        await t.call(t.command("load"), [1000.0, 2e9, 95.0])
        assert list(server.requests) == [RequestRecord(1, 16, 101, 8), RequestRecord(1, 6, 100, 1)]
        assert await t.read_one(t.signal("input_volume_ml")) == 1000.0


async def test_max_gap_bridges_only_when_the_profile_says_so(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    model = DemoModel(vclock)
    served = demo_profile()
    async with twin("modbus-tcp", model, served) as server:
        for max_gap, expected in ((1, [(4, 2, 1), (4, 5, 2)]), (2, [(4, 2, 5)])):
            path = tmp_path / f"gap{max_gap}.yaml"
            path.write_text(
                "device: demo\ntransport: modbus\n"
                f"max_gap: {max_gap}\n"
                "signals:\n"
                "  mode: {table: input, address: 2, type: uint16, enum: [idle, running, error]}\n"
                "  cycles: {table: input, address: 5, type: uint32, word_order: little,"
                " byte_order: little}\n"
            )
            profile = load_profile(path)
            async with connected(server, profile, vclock) as t:
                server.requests.clear()
                assert await t.read([t.signal("mode"), t.signal("cycles")]) == ["idle", 0]
                assert [(r.function_code, r.address, r.count) for r in server.requests] == expected


async def test_scaled_integer_travels_as_its_raw_register(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    path = tmp_path / "scaled.yaml"
    path.write_text(
        "device: demo\ntransport: modbus\nsignals:\n"
        "  temperature_sp: {table: holding, address: 7, type: float64, raw: int16,"
        " scale: 0.1, offset: -10, writable: true}\n"
    )
    profile = load_profile(path)
    model = DemoModel(vclock)
    async with (
        twin("modbus-tcp", model, profile) as server,
        connected(server, profile, vclock) as t,
        bare_client(server) as bare,
    ):
        await t.write(t.signal("temperature_sp"), 37.5)
        assert model.read("temperature_sp") == pytest.approx(37.5)
        assert await raw_registers(bare, "holding", 7, 1) == [475]  # (37.5 + 10) / 0.1
        assert await t.read_one(t.signal("temperature_sp")) == pytest.approx(37.5)


async def test_coil_triggers_and_bits_on_the_wire(vclock: VirtualClock, tmp_path: Path) -> None:
    path = tmp_path / "coils.yaml"
    path.write_text(
        "device: demo\ntransport: modbus\nsignals:\n"
        "  running: {table: coil, address: 17, type: bool}\n"
        "  mode: {table: input, address: 0, type: uint16, enum: [idle, running, error]}\n"
        "commands:\n"
        "  start:\n"
        "    args: [rate]\n"
        "    write: [{address: 4, type: uint16, scale: 0.5}]\n"
        "    trigger: {table: coil, address: 3, value: true}\n"
        "    results: [{table: holding, address: 9, type: uint16}]\n"
        "  stop: {trigger: {table: coil, address: 5, value: true}}\n"
    )
    profile = load_profile(path)
    model = DemoModel(vclock)
    async with (
        twin("modbus-tcp", model, profile) as server,
        connected(server, profile, vclock) as t,
        bare_client(server) as bare,
    ):
        server.requests.clear()
        assert await t.call(t.command("start"), [12.5]) == [1]
        assert [(r.function_code, r.address, r.count) for r in server.requests] == [
            (6, 4, 1),  # the argument, 12.5 / 0.5 = 25
            (5, 3, 1),  # then the trigger coil
            (3, 9, 1),  # then the result
        ]
        assert model.read("rate") == 12.5
        assert await raw_registers(bare, "holding", 4, 1) == [25]
        assert await t.read([t.signal("running"), t.signal("mode")]) == [True, "running"]
        coils = await bare.read_coils(3, count=3, device_id=1)
        assert list(coils.bits[:3]) == [True, False, False]  # 3 as written; 4 unnamed; 5 idle
        assert await t.call(t.command("stop")) == []
        assert await t.read_one(t.signal("running")) is False
        refused = await bare.write_coil(17, True, device_id=1)  # not writable in the profile
        assert refused.isError() and refused.exception_code == 2


async def test_stop_cuts_a_delayed_reply_short_and_starts_again(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin("modbus-tcp", model, profile) as server:
        assert isinstance(server, ModbusTcpTwinServer)
        endpoint = server.endpoint
        async with bare_client(server) as bare:
            server.faults.delay = 60.0
            server.heard.clear()
            reply = asyncio.ensure_future(bare.read_holding_registers(0, count=2, device_id=1))
            async with asyncio.timeout(5.0):
                await server.heard.wait()  # the request has reached the twin
                await server.stop()  # does not wait out the delay
            reply.cancel()
            await asyncio.gather(reply, return_exceptions=True)
        handlers = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "").endswith("handle_request")
        ]
        assert handlers == []
        server.faults.clear()
        await server.start()
        assert server.endpoint == endpoint
        async with connected(server, profile, vclock) as t:
            assert await t.read_one(t.signal("temperature_sp")) == 20.0


# -- exception codes ----------------------------------------------------------------


async def test_an_address_the_device_lacks_is_code_2(vclock: VirtualClock, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(
        "device: demo\ntransport: modbus\nprobe: level\nsignals:\n"
        "  level: {table: holding, address: 10, type: int16}\n"
        "  temperature_sp: {table: holding, address: 11, type: float32}\n"  # not served there
    )
    model = DemoModel(vclock)
    async with (
        twin("modbus-tcp", model, demo_profile()) as server,
        connected(server, load_profile(path), vclock) as t,
    ):
        with pytest.raises(ProtocolError) as caught:
            await t.read_one(t.signal("temperature_sp"))
        assert caught.value.code == 2
        assert caught.value.status == "ILLEGAL_ADDRESS"
        assert t.state is ConnectionState.CONNECTED  # a refusal is not a lost link
        assert await t.read_one(t.signal("level")) == -5


@pytest.mark.parametrize("kind", KINDS)
async def test_fault_codes_outside_the_standard_reach_the_caller(
    kind: str, vclock: VirtualClock
) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin(kind, model, profile) as server, connected(server, profile, vclock) as t:
        server.faults.error = 0x0C
        with pytest.raises(ProtocolError) as caught:
            await t.read([t.signal(n) for n in CHANNEL_NAMES])
        assert caught.value.code == 0x0C
        assert caught.value.status is None
        server.faults.error = 6
        with pytest.raises(DeviceBusyError):
            await t.write(t.signal("level"), 3)
        server.faults.clear()
        assert model.read("level") == -5  # a refused write changed nothing
        await t.write(t.signal("level"), 3)
        assert model.read("level") == 3


async def test_a_wrong_unit_id_fails_the_connect(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin("modbus-tcp", model, profile) as server:
        assert isinstance(server, ModbusTcpTwinServer)
        transport = create_transport(
            profile, f"modbus-tcp://127.0.0.1:{server.port}?unit=7", clock=vclock, options=OPTIONS
        )
        with pytest.raises(NotConnectedError) as caught:
            await transport.connect()
        cause = caught.value.causes["connect"]
        assert isinstance(cause, ProtocolError)
        assert cause.code == 0x0B  # gateway: target device failed to respond
        await transport.close()


async def test_a_silent_rtu_unit_times_out(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin("modbus-rtu", model, profile) as server:
        assert isinstance(server, ModbusRtuTwinServer)
        endpoint = f"modbus-rtu://{server.link.b_path}?unit=9"
        transport = create_transport(
            profile,
            endpoint,
            clock=vclock,
            options=TransportOptions(timeout=0.2, connect_timeout=0.3),
        )
        with pytest.raises(NotConnectedError) as caught:
            await transport.connect()  # the port opens; nobody answers unit 9
        assert isinstance(caught.value.causes["connect"], CommunicationTimeout)
        await transport.close()


# -- RTU: one bus, one lock, silent intervals, resynchronisation -------------------------


async def test_rtu_bus_lock_serialises_two_transports_on_one_port(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin("modbus-rtu", model, profile) as server:
        # As on a real bus: the line's t3.5, not the twin's gap=0 for its pty.
        wired = server.endpoint.replace("&gap=0", "")
        assert wired != server.endpoint
        async with (
            connected(server, profile, vclock, endpoint=wired) as first,
            connected(server, profile, vclock, endpoint=wired) as second,
        ):
            assert isinstance(first, ModbusRtuTransport)
            assert isinstance(second, ModbusRtuTransport)
            assert first.bus is second.bus is not None
            server.wire.clear()
            server.requests.clear()

            async def poll(t: Transport, name: str, n: int) -> list[object]:
                return [await t.read_one(t.signal(name)) for _ in range(n)]

            sp, level, channels = await asyncio.gather(
                poll(first, "temperature_sp", 15),
                poll(second, "level", 15),
                first.read([first.signal(n) for n in CHANNEL_NAMES]),
            )
            assert sp == [20.0] * 15
            assert level == [-5] * 15
            assert channels == pytest.approx([model.read(n) for n in CHANNEL_NAMES], abs=1e-3)
            assert len(server.requests) == 31

            # On the wire: request, reply, request, reply ... never two requests in a row,
            # and each request starts at least t3.5 after the previous reply ended.
            frames: list[tuple[float, bool]] = []
            for at, sending, _ in server.wire:
                if frames and not sending and not frames[-1][1]:
                    continue  # more bytes of the same incoming frame
                frames.append((at, sending))
            assert [s for _, s in frames] == [False, True] * 31
            gap = first.serial.frame_gap
            assert gap == pytest.approx(3.5 * 10 / 19200)
            for (sent, _), (received, _) in zip(frames[1::2], frames[2::2], strict=False):
                assert received - sent >= gap - 1e-4
        assert first.bus is None


async def test_a_dead_unit_does_not_take_its_neighbour_on_the_bus_down(
    vclock: VirtualClock,
) -> None:
    """Waiting for the bus is not part of a request's timeout.

    Unit 1 stops answering, so each of its requests (and each reconnect probe)
    holds the bus for a full timeout. Unit 2's reads wait behind them longer
    than unit 2's own timeout, and still succeed without unit 2 losing its link.
    """
    profile = demo_profile()
    dead_model, alive_model = DemoModel(vclock), DemoModel(vclock)
    alive_model.write("level", 42)  # tells unit 2's values from unit 1's
    slow = TransportOptions(timeout=0.6, connect_timeout=0.6, read_retries=0, backoff_initial=0.1)
    quick = TransportOptions(timeout=0.4, connect_timeout=2.0, read_retries=0)
    loop = asyncio.get_running_loop()
    async with NullModem() as link:
        alive = ModbusRtuTwinServer(alive_model, profile, link=link, unit=2)
        dead = ModbusRtuTwinServer(dead_model, profile, link=link, unit=1, bus=alive)
        async with (
            alive,
            dead,
            connected(dead, profile, vclock, options=slow) as a,
            connected(alive, profile, vclock, options=quick) as b,
        ):
            assert isinstance(a, ModbusRtuTransport) and isinstance(b, ModbusRtuTransport)
            assert a.bus is b.bus is not None
            a_states: list[ConnectionState] = []
            b_states: list[ConnectionState] = []
            a.on_state(a_states.append)
            b.on_state(b_states.append)
            channels = [b.signal(n) for n in CHANNEL_NAMES]

            dead.faults.stall = True
            dead.heard.clear()
            a_read = asyncio.ensure_future(a.read_one(a.signal("level")))
            try:
                async with asyncio.timeout(5.0):
                    await dead.heard.wait()  # unit 1's request is on the wire, holding the bus
                started = loop.time()
                level, values = await asyncio.gather(
                    b.read_one(b.signal("level")), b.read(channels)
                )
                assert loop.time() - started > quick.timeout  # waited, not timed out for it
            finally:
                a_read.cancel()  # a no-op when it is done (failing the test: not left behind)
                (a_error,) = await asyncio.gather(a_read, return_exceptions=True)
            assert isinstance(a_error, CommunicationTimeout)
            assert level == 42
            assert values == pytest.approx([alive_model.read(n) for n in CHANNEL_NAMES], abs=1e-3)
            assert a.state is ConnectionState.RECONNECTING

            # Unit 1's reconnect probes go unanswered too, each holding the bus.
            for _ in range(2):
                dead.heard.clear()
                async with asyncio.timeout(5.0):
                    await dead.heard.wait()
                assert await b.read_one(b.signal("level")) == 42
            assert a.state is ConnectionState.RECONNECTING
            assert b.state is ConnectionState.CONNECTED and b_states == []
            assert all(r.unit == 1 for r in dead.requests)

            dead.faults.clear()  # unit 1 is back: its link comes back, unit 2 never noticed
            async with asyncio.timeout(10.0):
                await a.wait_connected()
            assert a_states[0] is ConnectionState.RECONNECTING
            assert a_states[-1] is ConnectionState.CONNECTED
            assert await a.read_one(a.signal("level")) == -5
            assert await b.read_one(b.signal("level")) == 42
            assert b_states == [] and b.reconnects == 0


async def test_rtu_port_settings_must_agree_on_a_shared_bus(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = demo_profile()
    async with twin("modbus-rtu", model, profile) as server, connected(server, profile, vclock):
        assert isinstance(server, ModbusRtuTwinServer)
        other = create_transport(
            profile, f"modbus-rtu://{server.link.b_path}?baudrate=9600", clock=vclock
        )
        with pytest.raises(NotConnectedError) as caught:
            await other.connect()
        assert isinstance(caught.value.causes["connect"], ConfigurationError)
        await other.close()


async def test_rtu_link_is_reopened_after_a_timeout(vclock: VirtualClock) -> None:
    """A reply that arrives after we gave up must not be taken for the next one."""
    model = DemoModel(vclock)
    profile = demo_profile()
    options = TransportOptions(timeout=0.4, read_retries=0, backoff_initial=0.05)
    async with (
        twin("modbus-rtu", model, profile) as server,
        connected(server, profile, vclock, options=options) as t,
    ):
        assert isinstance(t, ModbusRtuTransport)
        bus = t.bus
        assert bus is not None
        before = bus.client
        server.wire.clear()
        server.faults.delay = 0.45  # the reply comes, but too late
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("level"))
        server.faults.clear()
        async with asyncio.timeout(10.0):
            await t.wait_connected()
        assert t.bus is bus
        assert bus.client is not before  # a fresh port, its input flushed
        # On the wire: our request, its late reply, and only then the next request
        # (the probe on reconnect): the bus waited for the line to fall silent.
        frames: list[bool] = []
        for _, sending, _ in server.wire:
            if not (frames and not sending and not frames[-1]):
                frames.append(sending)
        assert frames[:4] == [False, True, False, True]
        await t.write(t.signal("level"), 77)
        assert await t.read([t.signal("level"), t.signal("temperature_sp")]) == [77, 20.0]


async def test_a_late_rtu_reply_is_not_taken_for_the_next_request(vclock: VirtualClock) -> None:
    """RTU has no transaction id: ch00's late reply must not become ch05's value.

    The reply comes 0.4 s after the 0.6 s timeout; the bus settles for the
    timed-out request's own timeout (0.6 s of silence) before the next frame.
    """
    model = DemoModel(vclock)
    profile = demo_profile()
    options = TransportOptions(
        timeout=0.6, read_retries=0, backoff_initial=0.01, backoff_jitter=0.0
    )
    async with (
        twin("modbus-rtu", model, profile) as server,
        connected(server, profile, vclock, options=options) as t,
    ):
        assert isinstance(t, ModbusRtuTransport)
        ch00, ch05 = t.signal("ch00"), t.signal("ch05")
        assert model.read("ch00") != model.read("ch05")
        server.faults.delay = 1.0
        with pytest.raises(CommunicationTimeout):
            await t.read_one(ch00)
        assert t.bus is not None and t.bus.unsettled and t.bus.window == 0.6
        server.faults.delay = 0.0
        async with asyncio.timeout(10.0):
            await t.wait_connected()
        server.faults.delay = 0.5  # answered within its timeout
        assert await t.read_one(ch05) == pytest.approx(model.read("ch05"), abs=1e-3)
        server.faults.delay = 0.0
        assert await t.read([ch00, ch05]) == pytest.approx(
            [model.read("ch00"), model.read("ch05")], abs=1e-3
        )


async def test_the_settle_window_is_set_per_unit_on_the_endpoint(vclock: VirtualClock) -> None:
    """A reply 0.45 s after its 0.3 s timeout outlasts a window of one timeout;
    ``settle=1.0`` on the endpoint catches it."""
    model = DemoModel(vclock)
    profile = demo_profile()
    options = TransportOptions(timeout=0.3, read_retries=0, backoff_initial=0.01)
    async with twin("modbus-rtu", model, profile) as server:
        endpoint = server.endpoint + "&settle=1.0"
        async with connected(server, profile, vclock, endpoint=endpoint, options=options) as t:
            assert isinstance(t, ModbusRtuTransport)
            assert t.settle == 1.0 and t.settle_window == 1.0
            server.faults.delay = 0.75
            with pytest.raises(CommunicationTimeout):
                await t.read_one(t.signal("ch00"))
            assert t.bus is not None and t.bus.window == 1.0
            server.faults.delay = 0.0
            async with asyncio.timeout(10.0):
                await t.wait_connected()
            server.faults.delay = 0.25  # answered in time, but after the late reply comes
            assert await t.read_one(t.signal("ch05")) == pytest.approx(model.read("ch05"), abs=1e-3)


async def test_an_abandoned_rtu_request_settles_the_bus_like_a_timeout(
    vclock: VirtualClock,
) -> None:
    """A read cancelled in flight: its reply (0.4 s later) must not answer the next read
    (answered in 0.3 s), so the bus settles for the request's timeout (0.5 s)."""
    model = DemoModel(vclock)
    profile = demo_profile()
    options = TransportOptions(timeout=0.5, read_retries=0)
    async with (
        twin("modbus-rtu", model, profile) as server,
        connected(server, profile, vclock, options=options) as t,
    ):
        assert isinstance(t, ModbusRtuTransport) and t.bus is not None
        server.faults.delay = 0.4
        server.heard.clear()
        read = asyncio.ensure_future(t.read_one(t.signal("ch00")))
        async with asyncio.timeout(5.0):
            await server.heard.wait()  # on the wire
        read.cancel()
        (outcome,) = await asyncio.gather(read, return_exceptions=True)
        assert isinstance(outcome, asyncio.CancelledError)
        assert t.bus.unsettled and t.bus.window == options.timeout
        assert t.state is ConnectionState.CONNECTED
        server.faults.delay = 0.3  # answered in time, but after the abandoned reply comes
        assert await t.read_one(t.signal("ch05")) == pytest.approx(model.read("ch05"), abs=1e-3)
        assert not t.bus.unsettled
        t._abandoned("read ch00")  # the hook by itself marks the bus too
        assert t.bus.unsettled and t.bus.window == options.timeout


async def test_settling_after_a_dead_unit_is_not_charged_to_its_neighbour(
    vclock: VirtualClock,
) -> None:
    """Unit 2 answers in 0.25 s (timeout 0.4 s). Unit 1 stalls once (timeout 0.6 s):
    the bus then waits 0.6 s of silence, in unit 2's turn but before its timeout."""
    profile = demo_profile()
    dead_model, alive_model = DemoModel(vclock), DemoModel(vclock)
    alive_model.write("level", 42)
    slow = TransportOptions(timeout=0.6, connect_timeout=0.6, read_retries=0, backoff_initial=100)
    quick = TransportOptions(timeout=0.4, connect_timeout=2.0, read_retries=0)
    async with NullModem() as link:
        alive = ModbusRtuTwinServer(alive_model, profile, link=link, unit=2)
        dead = ModbusRtuTwinServer(dead_model, profile, link=link, unit=1, bus=alive)
        async with (
            alive,
            dead,
            connected(dead, profile, vclock, options=slow) as a,
            connected(alive, profile, vclock, options=quick) as b,
        ):
            assert isinstance(a, ModbusRtuTransport) and isinstance(b, ModbusRtuTransport)
            bus = b.bus
            assert bus is not None and a.bus is bus
            alive.faults.delay = 0.25
            assert await b.read_one(b.signal("level")) == 42
            dead.faults.stall = True
            with pytest.raises(CommunicationTimeout):
                await a.read_one(a.signal("level"))
            assert bus.unsettled and bus.window == slow.timeout
            reopened = bus.reopened
            assert await b.read_one(b.signal("level")) == 42
            assert b.state is ConnectionState.CONNECTED and b.reconnects == 0
            assert not bus.unsettled and bus.reopened == reopened + 1


async def test_modbus_tcp_requests_queue_outside_their_timeout(vclock: VirtualClock) -> None:
    """Three concurrent reads, 0.2 s each, timeout 0.5 s: the third waits 0.4 s
    behind the others, which must not count against its own timeout."""
    model = DemoModel(vclock)
    profile = demo_profile()
    options = TransportOptions(timeout=0.5, read_retries=0)
    async with (
        twin("modbus-tcp", model, profile) as server,
        connected(server, profile, vclock, options=options) as t,
    ):
        server.faults.delay = 0.2
        level = t.signal("level")
        assert await asyncio.gather(*(t.read_one(level) for _ in range(3))) == [-5, -5, -5]
        assert t.state is ConnectionState.CONNECTED


async def test_a_write_reply_must_echo_the_write(vclock: VirtualClock) -> None:
    """A reply to some other write (a stale one on RTU) puts the link out of step."""
    from pymodbus.pdu.register_message import (
        WriteMultipleRegistersResponse,
        WriteSingleRegisterResponse,
    )

    t = create_transport(demo_profile(), "modbus-tcp://127.0.0.1:1502", clock=vclock)
    assert isinstance(t, ModbusTcpTransport)
    replies: list[object] = []

    async def exchange(what: str, send: object) -> object:
        return replies.pop(0)

    t._exchange = exchange  # type: ignore[method-assign,assignment]
    replies.append(WriteSingleRegisterResponse(address=10, registers=[77]))
    await t._write_request("holding", 10, [77])
    for stale in (
        WriteSingleRegisterResponse(address=11, registers=[77]),
        WriteSingleRegisterResponse(address=10, registers=[76]),
    ):
        replies.append(stale)
        with pytest.raises(NotConnectedError, match="out of step"):
            await t._write_request("holding", 10, [77])
    replies.append(WriteMultipleRegistersResponse(address=20, count=2))
    await t._write_request("holding", 20, [1, 2])
    replies.append(WriteMultipleRegistersResponse(address=20, count=3))
    with pytest.raises(NotConnectedError, match="out of step"):
        await t._write_request("holding", 20, [1, 2])


async def test_library_exceptions_come_out_as_flexctl_errors(vclock: VirtualClock) -> None:
    t = create_transport(demo_profile(), "modbus-tcp://127.0.0.1:1502", clock=vclock)
    assert isinstance(t, ModbusTcpTransport)

    def raising(exc: Exception) -> object:
        async def send(client: object) -> object:
            raise exc

        return send

    client = AsyncModbusTcpClient("127.0.0.1", port=1502)
    cases: list[tuple[Exception, type[Exception]]] = [
        (ValueError("1 <= count 200 <= 125 !"), ProtocolError),
        (TypeError("bad argument"), ProtocolError),
        (RuntimeError("library bug"), NotConnectedError),
        (KeyError("decoder"), NotConnectedError),
        (OSError("tty gone"), NotConnectedError),
    ]
    for exc, expected in cases:
        with pytest.raises(expected):
            await t._send(client, "read x", raising(exc))  # type: ignore[arg-type]


def test_frame_gap_follows_the_baud_rate() -> None:
    assert SerialSettings("/dev/x", baudrate=9600).frame_gap == pytest.approx(3.5 * 10 / 9600)
    assert SerialSettings("/dev/x", baudrate=9600, parity="E").frame_gap == pytest.approx(
        3.5 * 11 / 9600
    )
    assert SerialSettings("/dev/x", baudrate=115200).frame_gap == 0.00175


# -- profiles and endpoints ----------------------------------------------------------


BAD_PROFILES = [
    # (text of the signals/commands part, line of the error, words in the message)
    ("signals:\n  t: {table: input, adress: 0, type: float32}\n", 4, "unknown key 'adress'"),
    ("signals:\n  t: {table: inputs, address: 0}\n", 4, "table must be one of"),
    ("signals:\n  t: {table: input}\n", 4, "missing key 'address'"),
    ("signals:\n  t:\n    table: input\n    address: 70000\n", 6, "address must be"),
    ("signals:\n  t: {table: input, address: 0, writable: true}\n", 4, "writable table"),
    ("signals:\n  t: {table: holding, address: 0, type: string}\n", 4, "needs length"),
    ("signals:\n  t: {table: holding, address: 0, type: int16, length: 2}\n", 4, "strings only"),
    ("signals:\n  t: {table: coil, address: 0, type: float32}\n", 4, "one bit"),
    ("signals:\n  t: {table: holding, address: 0, type: int16, scale: 0.1}\n", 4, "integer value"),
    ("signals:\n  t: {table: holding, address: 0, type: float32, scale: 0}\n", 4, "scale"),
    ("signals:\n  t: {table: holding, address: 65535, type: float32}\n", 4, "past address"),
    (
        "signals:\n  t: {table: holding, address: 0, type: float32, word_order: middle}\n",
        4,
        "word_order",
    ),
    ("signals:\n  t: {table: input, address: 0, type: int16, raw: float32}\n", 4, "cannot travel"),
    (
        "signals: {}\ncommands:\n  go:\n    args: [x]\n    trigger: {address: 1}\n",
        6,
        "write entries",
    ),
    (
        "signals: {}\ncommands:\n  go:\n    write: []\n    trigger: {adress: 1}\n",
        7,
        "unknown key 'adress'",
    ),
    (
        "signals: {}\ncommands:\n  go:\n    args: [x]\n    write:\n"
        "      - {table: input, address: 1, type: uint16}\n"
        "    trigger: {address: 2}\n",
        8,
        "writable table",
    ),
    ("signals: {}\ncommands:\n  go: {args: []}\n", 5, "needs a trigger"),
    ("signals: {}\ncommands:\n  go: {trigger: {address: 1, value: -1}}\n", 5, "trigger value"),
    (
        "signals: {}\ncommands:\n  go:\n    trigger: {address: 1}\n    results: [{address: 3}]\n",
        7,
        "missing key 'type'",
    ),
    # no two entries of a command share a register
    (
        "signals: {}\ncommands:\n  go:\n    args: [x]\n"
        "    write: [{address: 10, type: float32}]\n"
        "    trigger: {address: 11}\n",
        8,
        "trigger (holding 11) overlaps command go argument x (holding 10-11)",
    ),
    (
        "signals: {}\ncommands:\n  go:\n    args: [x, y]\n    write:\n"
        "      - {address: 10, type: float64}\n"
        "      - {address: 12, type: uint16}\n",
        9,
        "argument y (holding 12) overlaps command go argument x (holding 10-13)",
    ),
    (
        "signals: {}\ncommands:\n  go:\n    trigger: {address: 1}\n    results:\n"
        "      - {address: 2, type: uint32}\n"
        "      - {address: 3, type: uint16}\n",
        9,
        "result 1 (holding 3) overlaps command go result 0 (holding 2-3)",
    ),
    (
        "signals: {}\ncommands:\n  go:\n    trigger: {table: coil, address: 4, value: true}\n"
        "    results: [{table: coil, address: 4, type: bool}]\n",
        7,
        "result 0 (coil 4) overlaps command go trigger (coil 4)",
    ),
]


@pytest.mark.parametrize(("body", "line", "words"), BAD_PROFILES)
def test_bad_profiles_name_file_and_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = tmp_path / "bad.modbus.yaml"
    path.write_text("device: demo\ntransport: modbus\n" + body)
    with pytest.raises(ConfigurationError) as caught:
        check_profile(load_profile(path))
    assert caught.value.file == str(path)
    assert caught.value.line == line, str(caught.value)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("probe: nothing\n", "probe must name"),
        ("max_gap: -1\n", "max_gap must be"),
        ("framing: {}\n", "unknown key 'framing'"),
    ],
)
def test_bad_profile_settings_name_the_file(tmp_path: Path, extra: str, words: str) -> None:
    path = tmp_path / "bad.modbus.yaml"
    path.write_text(
        "device: demo\ntransport: modbus\n"
        + extra
        + "signals:\n  t: {table: input, address: 0, type: uint16}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        check_profile(load_profile(path))
    assert caught.value.file == str(path)
    assert caught.value.line == 3
    assert words in caught.value.message


def test_the_shipped_profile_is_valid() -> None:
    check_profile(demo_profile())


def test_endpoints() -> None:
    assert parse_tcp_endpoint("modbus-tcp://10.0.0.5:1502?unit=3") == ("10.0.0.5", 1502, 3)
    assert parse_tcp_endpoint("modbus-tcp://plc") == ("plc", 502, 1)
    settings, unit, settle = parse_rtu_endpoint(
        "modbus-rtu:///dev/ttyUSB0?unit=2&baudrate=9600&parity=E&stopbits=2&bytesize=7"
    )
    assert settings == SerialSettings("/dev/ttyUSB0", 9600, 7, "E", 2)
    assert unit == 2
    assert settle is None
    assert parse_rtu_endpoint("modbus-rtu:///dev/ttyUSB0?settle=2.5").settle == 2.5
    assert parse_rtu_endpoint("modbus-rtu:///dev/ttyUSB0?gap=0").serial.frame_gap == 0.0
    assert parse_rtu_endpoint("modbus-rtu:///dev/ttyUSB0?gap=0.004").serial.frame_gap == 0.004
    for bad in (
        "modbus-rtu:///dev/tty?gap=-0.001",
        "modbus-rtu:///dev/tty?gap=nan",
        "modbus-rtu:///dev/tty?gap=2",
        "modbus-tcp://plc?gap=0",
        "modbus-tcp://plc?unit=300",
        "modbus-tcp://plc?slave=1",
        "modbus-tcp://:502",
        "modbus-rtu://host/dev/tty",
        "modbus-rtu:///dev/tty?parity=X",
        "modbus-rtu:///dev/tty?unit=0",
        "modbus-rtu:///dev/tty?baudrate=fast",
        "modbus-rtu:///dev/tty?settle=0",
        "modbus-rtu:///dev/tty?settle=-1",
        "modbus-rtu:///dev/tty?settle=nan",
        "modbus-rtu:///dev/tty?settle=soon",
        "modbus-rtu:///dev/tty?settle=1e9",
        "modbus-tcp://plc?settle=1",
    ):
        with pytest.raises(ConfigurationError):
            if bad.startswith("modbus-tcp"):
                parse_tcp_endpoint(bad)
            else:
                parse_rtu_endpoint(bad)


def test_both_schemes_resolve_to_the_modbus_family() -> None:
    profile = demo_profile()
    clock = VirtualClock()
    tcp = create_transport(profile, "modbus-tcp://127.0.0.1:1502", clock=clock)
    rtu = create_transport(profile, "modbus-rtu:///dev/null", clock=clock)
    assert isinstance(tcp, ModbusTcpTransport) and tcp.family == "modbus"
    assert isinstance(rtu, ModbusRtuTransport) and rtu.family == "modbus"
