"""The thaw driver against its twin, over OPC UA, Modbus TCP, Modbus RTU and serial.

Each test drives the real twin (simulators/models/thaw.py) through the shipped
``thaw.*`` profile over the real wire, on a virtual clock. The bag is placed with
the twin-only ``load_bag`` command (a person's act on hardware).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

from drivers.base import DeviceStatus, ProgramState, SafeAction
from drivers.thaw import ThawDevice
from flexctl.clock import VirtualClock
from flexctl.errors import (
    ConditionTimeout,
    ConfigurationError,
    DeviceBusyError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.profile import load_profile
from flexctl.resources import shipped_file, shipped_profile
from flexctl.transports.base import TransportOptions
from flexctl.transports.registry import check_profile, create_transport
from simulators.models.thaw import ThawModel
from tests.twin_pairs import KINDS, Pair, twin_pair

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
REJECTED_CODE = {"opcua": 0x803C0000, "modbus-tcp": 3, "modbus-rtu": 3, "serial": 3}
FAULT_CODE = {"opcua": 0x80020000, "modbus-tcp": 4, "modbus-rtu": 4, "serial": 4}
ALL_KINDS = pytest.mark.parametrize("kind", KINDS)
PLATEAU_C = (-4.5, -2.5)  # around the melting point, -3 °C (domain.md 1.3: -2 to -4 °C)


@asynccontextmanager
async def thaw_on(
    kind: str, clock: VirtualClock, **model_options: float
) -> AsyncIterator[tuple[ThawDevice, ThawModel, Pair]]:
    model = ThawModel(clock, seed=1, **model_options)
    async with twin_pair(kind, model, clock, device="thaw", options=OPTIONS) as pair:
        yield ThawDevice("thaw", pair.transport, clock), model, pair


@ALL_KINDS
async def test_full_thaw_end_to_end(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, model, _):
        await thaw.twin_load_bag(50.0, -150.0)
        assert await thaw.bag_loaded()
        await thaw.start("standard")
        first = await thaw.program()
        assert first.state is ProgramState.RUNNING
        assert (first.step_name, first.step_number) == ("warming", 1)
        reading = await thaw.reading("plate_temperature")
        assert reading.target == 37.0 and reading.status is DeviceStatus.BUSY

        record = await thaw.follow_thaw(within=3600.0, every=10.0)

        result = record.result
        plateau_s = record.time_within(*PLATEAU_C)
        end_point_s = record.end_point_runtime_s
        at_end_point = next(s for s in record.samples if s.end_point_detected)
        steps = [s.step_number for s in record.samples]
        print(
            f"\n[{kind}] 50 mL from -150 °C: plateau {plateau_s / 60:.1f} min in "
            f"{PLATEAU_C} °C, end point at {(end_point_s or 0) / 60:.1f} min "
            f"(sample {at_end_point.sample_c:.2f} °C), complete at {result.runtime_s / 60:.1f} "
            f"min, sample peak {record.max_sample_c:.2f} °C, {len(record.samples)} records"
        )
        assert result.state is ProgramState.COMPLETE
        assert result.end_point_detected and result.thaw_complete
        assert record.samples[0].sample_c < -140.0
        assert plateau_s >= 60.0  # the melting plateau, seen through the wire
        assert end_point_s is not None and 4 * 60.0 <= end_point_s <= 15 * 60.0
        assert at_end_point.sample_c > PLATEAU_C[1]  # risen off the plateau
        assert record.max_sample_c <= 10.0
        assert steps == sorted(steps) and set(steps) == {1, 2, 3}
        assert model.end_point_time is not None

        last = await thaw.program()
        assert last.state is ProgramState.COMPLETE
        assert (last.step_name, last.step_number) == ("cool_down", 3)
        assert last.runtime_s == pytest.approx(result.runtime_s)
        assert await thaw.status() is DeviceStatus.IDLE
        # the plate holds 4 °C afterwards: the product never warms past +10 °C
        await vclock.sleep(1800.0)
        after = await thaw.temperatures()
        assert after.plate_sp_c == 4.0 and after.sample_c < 10.0
        assert await thaw.thaw_complete()
        assert await thaw.twin_unload_bag() == pytest.approx(after.sample_c, abs=0.2)
        assert not await thaw.bag_loaded()


@ALL_KINDS
async def test_limits_are_refused_before_sending(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, model, _):
        before = vclock.requests
        refused = [
            thaw.twin_load_bag(4.9, -150.0),
            thaw.twin_load_bag(251.0, -150.0),
            thaw.twin_load_bag(math.nan, -150.0),
            thaw.twin_load_bag(50.0, -197.0),
            thaw.twin_load_bag(50.0, 26.0),
            thaw.start("quick"),
        ]
        for attempt in refused:
            with pytest.raises(OutOfRangeError) as caught:
                await attempt
            print(f"[{kind}] refused: {caught.value}")
        assert vclock.requests == before  # nothing went on the wire
        assert model.read("bag_loaded") is False
        assert model.read("program_state") == "stopped"


@ALL_KINDS
async def test_start_needs_a_bag_and_an_idle_device(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, model, _):
        before = vclock.requests
        with pytest.raises(DeviceBusyError, match="no bag"):
            await thaw.start()
        assert vclock.requests == before + 1  # the check's read only
        assert model.read("program_state") == "stopped"

        await thaw.twin_load_bag(50.0, -150.0)
        await thaw.start()
        with pytest.raises(DeviceBusyError, match="already running"):
            await thaw.start()
        with pytest.raises(DeviceBusyError):  # the device refuses a new bag mid-run
            await thaw.twin_load_bag(100.0, -150.0)
        assert model.read("fill_volume_ml") == 50.0


@ALL_KINDS
async def test_waits_end_point_then_complete(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, _):
        await thaw.twin_load_bag(100.0, -150.0)
        await thaw.start()
        with pytest.raises(ConditionTimeout):
            await thaw.wait_complete(within=60.0)
        with pytest.raises(ConditionTimeout):
            await thaw.wait_end_point(within=60.0)
        await thaw.wait_end_point(within=1800.0, poll=5.0)
        at_end = await thaw.temperatures()
        seen = await thaw.program()
        assert await thaw.end_point_detected()
        assert at_end.plate_sp_c == 4.0  # heating stopped at the end point
        assert seen.step_name == "cool_down"
        result = await thaw.wait_complete(within=1800.0, poll=5.0)
        print(
            f"\n[{kind}] 100 mL: end point at {seen.runtime_s / 60:.1f} min "
            f"(sample {at_end.sample_c:.2f} °C), complete at {result.runtime_s / 60:.1f} min"
        )
        assert result.state is ProgramState.COMPLETE and result.thaw_complete
        assert 6 * 60.0 <= seen.runtime_s <= 15 * 60.0  # a thicker bag takes longer than 50 mL


@ALL_KINDS
async def test_safe_state_hold_lets_the_thaw_finish(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, _):
        await thaw.twin_load_bag(50.0, -150.0)
        await thaw.start()
        await vclock.sleep(120.0)
        before = vclock.requests
        await thaw.safe_state(SafeAction.HOLD)
        assert vclock.requests == before  # nothing sent
        assert (await thaw.program()).state is ProgramState.RUNNING
        result = await thaw.wait_complete(within=1800.0)
        assert result.state is ProgramState.COMPLETE and result.end_point_detected


@ALL_KINDS
async def test_safe_state_abort_stops_heating(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, _):
        await thaw.twin_load_bag(50.0, -150.0)
        await thaw.start()
        await vclock.sleep(120.0)
        heating = await thaw.temperatures()
        await thaw.safe_state(SafeAction.ABORT)
        result = await thaw.result()
        await vclock.sleep(600.0)
        after = await thaw.temperatures()
        print(
            f"\n[{kind}] abort after 2 min: plate {heating.plate_c:.1f} °C (sp "
            f"{heating.plate_sp_c:g}) -> {after.plate_c:.1f} °C 10 min later (sp "
            f"{after.plate_sp_c:g}); sample {after.sample_c:.1f} °C"
        )
        assert heating.plate_sp_c == 37.0 and heating.plate_c > 20.0
        assert result.state is ProgramState.ABORTED and not result.end_point_detected
        assert after.plate_sp_c == 4.0
        assert after.plate_c < 6.0  # pulled down to its hold, not heating
        assert after.sample_c < 0.0  # the bag is left partly frozen, not warmed on
        assert not await thaw.end_point_detected()
        await thaw.safe_state(SafeAction.ABORT)  # harmless when idle
        assert (await thaw.result()).state is ProgramState.ABORTED


@ALL_KINDS
async def test_stop(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, _):
        await thaw.twin_load_bag(50.0, -150.0)
        await thaw.start()
        await vclock.sleep(60.0)
        await thaw.stop()
        result = await thaw.wait_complete(within=0.0)
        assert result.state is ProgramState.STOPPED and not result.thaw_complete
        assert (await thaw.temperatures()).plate_sp_c == 4.0
        assert await thaw.status() is DeviceStatus.IDLE


@ALL_KINDS
async def test_missed_end_point_is_caught_by_the_device(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock, end_point_delay_s=math.inf) as (thaw, _, _):
        await thaw.twin_load_bag(50.0, -150.0)
        await thaw.start()
        result = await thaw.wait_complete(within=2 * 3600.0, poll=60.0)
        peak = (await thaw.temperatures()).sample_c
        assert result.state is ProgramState.ABORTED and not result.end_point_detected
        assert await thaw.status() is DeviceStatus.ERROR
        alarm = await thaw.alarm()
        print(f"\n[{kind}] no end point: {result}, alarm {alarm!r}, sample {peak:.1f} °C")
        # end-point detection off: the device's overshoot guard stops it past +10 °C
        assert alarm == "OVERSHOOT"
        assert result.runtime_s < 15 * 60.0


@ALL_KINDS
async def test_describe(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, pair):
        info = thaw.describe()
        print(f"\n[{kind}] {info['profile']} at {info['source']}")
        assert info["kind"] == "thaw" and info["name"] == "thaw"
        assert info["profile"] == f"thaw.{pair.transport.profile.transport}"
        assert not [n for n, s in info["signals"].items() if s["writable"]]
        assert info["signals"]["sample_temperature"]["unit"] == "degC"
        assert info["signals"]["status"]["enum"] == ["idle", "busy", "warn", "error"]
        assert info["commands"]["start"]["args"] == ["program"]
        assert info["commands"]["load_bag"]["args"] == ["volume_ml", "start_temperature_c"]
        assert set(info["commands"]) == {"load_bag", "unload_bag", "start", "stop", "abort"}


@ALL_KINDS
async def test_device_refusals_are_typed(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, model, pair):
        # The thaw device has no writable signal: its refusal of a value is seen on
        # commands sent past the driver's own checks.
        with pytest.raises(ProtocolError) as caught:
            await thaw.command("load_bag", 300.0, -150.0)
        assert caught.value.code == REJECTED_CODE[kind]
        with pytest.raises(ProtocolError) as caught:
            await thaw.command("start", "quick")
        assert caught.value.code == REJECTED_CODE[kind]
        assert model.read("bag_loaded") is False
        # busy: no bag, said by the device itself
        with pytest.raises(DeviceBusyError):
            await thaw.command("start", "standard")
        with pytest.raises(DeviceBusyError):
            await thaw.twin_unload_bag()

        pair.server.faults.error = FAULT_CODE[kind]
        with pytest.raises(ProtocolError) as caught:
            await thaw.temperatures()
        assert caught.value.code == FAULT_CODE[kind]
        pair.server.faults.clear()
        assert (await thaw.temperatures()).plate_sp_c == 22.0  # off: ambient


@ALL_KINDS
async def test_idle_text_signals_read_empty(kind: str, vclock: VirtualClock) -> None:
    async with thaw_on(kind, vclock) as (thaw, _, _):
        assert await thaw.alarm() == ""
        assert (await thaw.program()).step_name == ""


async def test_profiles_are_valid_and_hardware_needs_no_bag_commands(tmp_path: Path) -> None:
    for family in ("opcua", "modbus", "serial"):
        profile = shipped_profile(f"thaw.{family}")
        check_profile(profile)
        assert profile.device == "thaw"
        assert set(ThawDevice.required_signals) <= set(profile.signals)
        assert set(ThawDevice.required_commands) <= set(profile.commands)
    # a hardware profile has no load_bag/unload_bag (a person places the bag): the
    # driver still builds, and only the twin-only acts are refused, before sending
    raw = yaml.safe_load(shipped_file("profiles", "thaw.opcua").read_text())
    del raw["commands"]["load_bag"]
    del raw["commands"]["unload_bag"]
    path = tmp_path / "thaw.hardware.yaml"
    path.write_text(yaml.safe_dump(raw))
    transport = create_transport(
        load_profile(path), "opc.tcp://127.0.0.1:4840", clock=VirtualClock()
    )
    thaw = ThawDevice("thaw", transport, transport.clock)
    with pytest.raises(ConfigurationError, match="no command 'load_bag'"):
        await thaw.twin_load_bag(50.0, -150.0)
