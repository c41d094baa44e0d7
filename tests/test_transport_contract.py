"""The one contract every transport keeps, run against its twin server over the wire.

Parametrised over OPC UA, Modbus TCP, Modbus RTU (pty) and serial (pty), all
serving the same demo model through the shipped ``demo.*`` profiles.
"""

from __future__ import annotations

import asyncio

import pytest

from flexctl.clock import VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    DeviceBusyError,
    FlexctlError,
    NotConnectedError,
    ProtocolError,
)
from flexctl.transports.base import ConnectionState, TransportOptions
from simulators.models.demo import CHANNELS, DemoModel
from tests.twin_pairs import KINDS, twin_pair

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)

# The code each protocol answers a refused write with, and the one a fault returns.
REJECTED_CODE = {"opcua": 0x803C0000, "modbus-tcp": 3, "modbus-rtu": 3, "serial": 3}
FAULT_CODE = {"opcua": 0x80020000, "modbus-tcp": 4, "modbus-rtu": 4, "serial": 4}

pytestmark = pytest.mark.parametrize("kind", KINDS)

# How long (wall) a test may wait for a link to come back; never a sleep.
RECOVER_S = 15.0


async def test_read_one(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock, seed=1)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        assert t.state is ConnectionState.CONNECTED
        value = await t.read_one(t.signal("temperature"))
        assert isinstance(value, float)
        assert value == pytest.approx(20.0, abs=0.1)


async def test_batched_read_of_every_type(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock, seed=1)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        names = [f"ch{i:02d}" for i in range(CHANNELS)]
        values = await t.read([t.signal(n) for n in names])
        expected = [model.read(n) for n in names]
        assert values == pytest.approx(expected, abs=1e-3)  # float32 on Modbus
        mixed = ["running", "mode", "label", "level", "cycles", "temperature_sp"]
        assert await t.read([t.signal(n) for n in mixed]) == [False, "idle", "demo", -5, 0, 20.0]


async def test_write_then_read_back(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        await t.write(t.signal("temperature_sp"), 37.5)
        await t.write(t.signal("label"), "bag-0042")
        await t.write(t.signal("level"), -123)
        assert model.read("temperature_sp") == 37.5
        got = await t.read([t.signal(n) for n in ("temperature_sp", "label", "level")])
        assert got == [37.5, "bag-0042", -123]


async def test_temperature_follows_setpoint_in_virtual_time(
    kind: str, vclock: VirtualClock
) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        await t.write(t.signal("temperature_sp"), 37.0)
        await vclock.sleep(600.0)  # ten time constants
        assert await t.read_one(t.signal("temperature")) == pytest.approx(37.0, abs=0.1)


async def test_call_returns_results_and_busy_is_typed(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        start = t.command("start")
        assert await t.call(start, [12.5]) == [1]
        state = await t.read([t.signal(n) for n in ("running", "mode", "rate")])
        assert state == [True, "running", 12.5]
        with pytest.raises(DeviceBusyError):
            await t.call(start, [3.0])
        assert await t.call(t.command("stop"), []) == [1]
        assert await t.read_one(t.signal("running")) is False


async def test_rejected_write_is_a_protocol_error_with_the_code(
    kind: str, vclock: VirtualClock
) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        with pytest.raises(ProtocolError) as caught:
            await t.write(t.signal("temperature_sp"), 80.0)  # the model's limit is 50
        assert caught.value.code == REJECTED_CODE[kind]
        assert model.read("temperature_sp") == 20.0
        # the link is still good after a refusal
        assert t.state is ConnectionState.CONNECTED
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_fault_error_code_reaches_the_caller(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        pair.server.faults.error = FAULT_CODE[kind]
        with pytest.raises(ProtocolError) as caught:
            await t.read_one(t.signal("temperature"))
        assert caught.value.code == FAULT_CODE[kind]
        pair.server.faults.clear()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_stall_times_out_then_recovers(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        pair.server.faults.stall = True
        with pytest.raises(CommunicationTimeout) as caught:
            await t.read_one(t.signal("temperature"))
        assert isinstance(caught.value, TimeoutError)
        assert t.state is ConnectionState.RECONNECTING
        with pytest.raises(NotConnectedError):  # fails fast while the link is down
            await t.read_one(t.signal("temperature"))
        pair.server.faults.clear()
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_delay_below_timeout_is_tolerated(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        pair.server.faults.delay = 0.1
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_corrupt_reply_is_a_typed_error_then_recovers(
    kind: str, vclock: VirtualClock
) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        pair.server.faults.corrupt = 1
        try:
            value = await t.read_one(t.signal("temperature_sp"))
        except FlexctlError:
            pass  # a damaged frame may surface as a protocol error, timeout or lost link
        else:
            # a retried read may legitimately succeed, but never with a wrong value
            assert value == 20.0
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_dropped_connection_is_used_again(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        await pair.server.drop_connections()
        for _ in range(3):  # the drop is noticed on the next request at the latest
            try:
                await t.read_one(t.signal("temperature_sp"))
            except FlexctlError:
                break
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0


async def test_reconnect_after_server_restart_on_same_address(
    kind: str, vclock: VirtualClock
) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS) as pair:
        t = pair.transport
        endpoint = pair.server.endpoint
        await pair.server.stop()
        with pytest.raises((NotConnectedError, CommunicationTimeout)):
            await t.read_one(t.signal("temperature"))
        assert t.state is not ConnectionState.CONNECTED
        await pair.server.start()
        assert pair.server.endpoint == endpoint
        async with asyncio.timeout(RECOVER_S):
            await t.wait_connected()
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        assert t.reconnects >= 1


async def test_connect_to_nothing_is_not_connected_error(kind: str, vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    async with twin_pair(kind, model, vclock, options=OPTIONS, connect=False) as pair:
        await pair.server.stop()
        t = pair.transport
        with pytest.raises((NotConnectedError, CommunicationTimeout)) as caught:
            await t.connect()
        assert "demo" in str(caught.value)
        assert t.state is ConnectionState.DISCONNECTED
