"""The shared link machinery of every transport, on a scripted in-memory transport.

A real protocol cannot be made to fail exactly when a test wants; this one can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from flexctl.clock import VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    NotConnectedError,
    OutOfRangeError,
)
from flexctl.profile import CommandSpec, Profile, SignalSpec, Value, load_profile
from flexctl.transports.base import (
    CommandAddress,
    ConnectionState,
    SignalAddress,
    Transport,
    TransportOptions,
)
from flexctl.transports.registry import create_transport

PROFILE = """\
device: rig
transport: opcua
signals:
  x: {type: float64, writable: true}
"""

OPTIONS = TransportOptions(timeout=0.2, connect_timeout=0.5, backoff_initial=1.0, backoff_max=4.0)


class Scripted(Transport):
    """Opens fail with whatever ``open_errors`` holds next; reads return 1.0 or hang."""

    family: ClassVar[str] = "opcua"
    schemes: ClassVar[tuple[str, ...]] = ("scripted",)

    def __init__(self, profile: Profile, clock: VirtualClock) -> None:
        super().__init__(profile, "scripted://rig", clock=clock, options=OPTIONS)
        self.open_errors: list[BaseException] = []
        self.opens = 0
        self.closes = 0
        self.open_links = 0
        self.hang = False

    @classmethod
    def parse_signal(cls, spec: SignalSpec) -> SignalAddress:
        return SignalAddress(spec)

    @classmethod
    def parse_command(cls, spec: CommandSpec) -> CommandAddress:
        return CommandAddress(spec)

    async def _open(self) -> None:
        self.opens += 1
        await asyncio.sleep(0)
        if self.open_errors:
            raise self.open_errors.pop(0)
        self.open_links += 1

    async def _close(self) -> None:
        self.closes += 1
        self.open_links = 0

    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        if self.hang:
            await asyncio.Event().wait()
        return [1.0 for _ in addresses]

    async def _write(self, address: SignalAddress, wire: Value) -> None:
        return None

    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        return []


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    path = tmp_path / "rig.yaml"
    path.write_text(PROFILE)
    return load_profile(path)


async def _lose_link(t: Scripted) -> None:
    t.hang = True
    with pytest.raises(CommunicationTimeout):
        await t.read_one(t.signal("x"))
    t.hang = False
    assert t.state is ConnectionState.RECONNECTING


async def test_reconnect_survives_an_error_outside_the_tree(
    profile: Profile, vclock: VirtualClock
) -> None:
    t = Scripted(profile, vclock)
    await t.connect()
    t.options = TransportOptions(**{**OPTIONS.__dict__, "read_retries": 0})
    t.open_errors = [OSError("gone"), ValueError("Failed to set custom baud rate")]
    await _lose_link(t)
    async with asyncio.timeout(5):
        await t.wait_connected()
    assert t.opens == 4  # first connect, two failures, success
    assert isinstance(t.last_error, NotConnectedError)
    assert "ValueError" in str(t.last_error)
    assert await t.read_one(t.signal("x")) == 1.0
    await t.close()


async def test_connect_failure_of_any_kind_is_not_connected_and_leaves_disconnected(
    profile: Profile, vclock: VirtualClock
) -> None:
    t = Scripted(profile, vclock)
    t.open_errors = [OverflowError("baud rate too large")]
    with pytest.raises(NotConnectedError, match="OverflowError"):
        await t.connect()
    assert t.state is ConnectionState.DISCONNECTED
    assert t.open_links == 0
    await t.close()


async def test_connect_during_reconnect_takes_it_over(
    profile: Profile, vclock: VirtualClock
) -> None:
    t = Scripted(profile, vclock)
    await t.connect()
    t.options = TransportOptions(**{**OPTIONS.__dict__, "read_retries": 0})
    await _lose_link(t)
    await t.connect()  # during the reconnect's backoff
    assert t.state is ConnectionState.CONNECTED
    assert t._reconnect_task is None
    opens = t.opens
    await vclock.sleep(60.0)  # no stray reconnect opens a second link later
    assert t.opens == opens
    assert t.open_links == 1
    await t.close()


async def test_a_failing_listener_cannot_strand_the_link(
    profile: Profile, vclock: VirtualClock
) -> None:
    t = Scripted(profile, vclock)
    seen: list[ConnectionState] = []

    def broken(state: ConnectionState) -> None:
        raise RuntimeError("listener bug")

    t.on_state(broken)
    t.on_state(seen.append)
    await t.connect()
    t.options = TransportOptions(**{**OPTIONS.__dict__, "read_retries": 0})
    await _lose_link(t)
    async with asyncio.timeout(5):
        await t.wait_connected()
    assert seen == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
    ]
    await t.close()


async def test_close_during_reconnect_stops_it(profile: Profile, vclock: VirtualClock) -> None:
    t = Scripted(profile, vclock)
    await t.connect()
    t.options = TransportOptions(**{**OPTIONS.__dict__, "read_retries": 0})
    t.open_errors = [OSError("down")] * 100
    await _lose_link(t)
    await vclock.sleep(10.0)
    await t.close()
    opens = t.opens
    await vclock.sleep(600.0)
    assert t.opens == opens
    assert t.state is ConnectionState.DISCONNECTED


async def test_non_finite_and_oversized_values_are_refused_before_sending(
    profile: Profile, vclock: VirtualClock
) -> None:
    t = Scripted(profile, vclock)
    await t.connect()
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(OutOfRangeError):
            await t.write(t.signal("x"), bad)
    await t.close()


def test_unknown_scheme_error_does_not_echo_credentials(profile: Profile) -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_transport(profile, "opc.tpc://operator:S3cret@plc:4840/", clock=VirtualClock())
    assert "S3cret" not in str(caught.value)
    assert "'opc.tpc'" in str(caught.value)
