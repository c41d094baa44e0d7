"""Every fault hook of the twin servers, seen from every driver, over every transport.

The faults are the wire's, not the device's, so one matrix covers all drivers:
a stall is a CommunicationTimeout (and requests fail fast while the link is
down), a fault code is a ProtocolError carrying that code, a stopped server is
NotConnectedError or CommunicationTimeout, a slow reply below the timeout is
tolerated, a corrupted reply is some typed error, and after each the same
driver works again without being rebuilt. Device refusals (a busy device, a
value the device rejects) are device-specific and live in each driver's tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from drivers.base import DeviceStatus, Driver
from drivers.registry import DRIVER_NAMES, driver_class
from flexctl.clock import VirtualClock
from flexctl.errors import CommunicationTimeout, FlexctlError, NotConnectedError, ProtocolError
from flexctl.transports.base import ConnectionState, TransportOptions
from flexctl.twins import KINDS, Pair, make_model, twin_pair

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
FAULT_CODE = {"opcua": 0x80020000, "modbus-tcp": 4, "modbus-rtu": 4, "serial": 4}
RECOVER_S = 15.0  # wall seconds a link may take to come back; a bound, never a sleep

pytestmark = [
    pytest.mark.parametrize("kind", KINDS),
    pytest.mark.parametrize("device", DRIVER_NAMES),
]


@asynccontextmanager
async def driver_on(
    device: str, kind: str, clock: VirtualClock
) -> AsyncIterator[tuple[Driver, Pair]]:
    model = make_model(device, clock, seed=1)
    async with twin_pair(kind, model, clock, device=device, options=OPTIONS) as pair:
        yield driver_class(device)(device, pair.transport, clock), pair


async def _recovered(driver: Driver) -> None:
    async with asyncio.timeout(RECOVER_S):
        await driver.transport.wait_connected()
    assert await driver.status() is DeviceStatus.IDLE


async def test_stall_is_a_timeout_then_the_driver_works_again(
    device: str, kind: str, vclock: VirtualClock
) -> None:
    async with driver_on(device, kind, vclock) as (driver, pair):
        pair.server.faults.stall = True
        with pytest.raises(CommunicationTimeout):
            await driver.status()
        with pytest.raises(NotConnectedError):  # fails fast while the link is down
            await driver.status()
        pair.server.faults.clear()
        await _recovered(driver)


async def test_fault_code_reaches_the_driver(device: str, kind: str, vclock: VirtualClock) -> None:
    async with driver_on(device, kind, vclock) as (driver, pair):
        pair.server.faults.error = FAULT_CODE[kind]
        with pytest.raises(ProtocolError) as caught:
            await driver.status()
        assert caught.value.code == FAULT_CODE[kind]
        assert driver.transport.state is ConnectionState.CONNECTED  # the device answered
        pair.server.faults.clear()
        assert await driver.status() is DeviceStatus.IDLE


async def test_stopped_server_then_the_driver_works_again(
    device: str, kind: str, vclock: VirtualClock
) -> None:
    async with driver_on(device, kind, vclock) as (driver, pair):
        await pair.server.stop()
        with pytest.raises((NotConnectedError, CommunicationTimeout)):
            await driver.status()
        await pair.server.start()
        await _recovered(driver)


async def test_slow_corrupt_and_dropped_links(device: str, kind: str, vclock: VirtualClock) -> None:
    async with driver_on(device, kind, vclock) as (driver, pair):
        pair.server.faults.delay = 0.1  # below the transport's timeout: tolerated
        assert await driver.status() is DeviceStatus.IDLE
        pair.server.faults.clear()
        pair.server.faults.corrupt = 1
        try:
            status = await driver.status()
        except FlexctlError:
            pass  # a damaged frame surfaces as a typed error, whichever kind
        else:
            assert status is DeviceStatus.IDLE  # a retried read, never a wrong value
        await _recovered(driver)
        await pair.server.drop_connections()
        for _ in range(3):  # the drop is noticed on the next request at the latest
            try:
                await driver.status()
            except FlexctlError:
                break
        await _recovered(driver)
