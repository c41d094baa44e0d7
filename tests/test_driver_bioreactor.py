"""The Bioreactor driver against its twin, over OPC UA, Modbus TCP, Modbus RTU and serial.

Every test drives the real twin (simulators/models/bioreactor.py) through the
shipped ``bioreactor.*`` profile and a real wire, on a virtual clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from drivers.base import DeviceStatus, ProgramState, SafeAction
from drivers.bioreactor import AlreadyHarvested, Bioreactor, CultureState, Harvest
from drivers.registry import driver_class
from flexctl.clock import VirtualClock
from flexctl.errors import (
    ConditionTimeout,
    DeviceBusyError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.resources import shipped_profile
from flexctl.transports.base import CommandAddress, ConnectionState, TransportOptions
from flexctl.transports.registry import check_profile
from flexctl.twins import FAMILY, KINDS, Pair, twin_pair
from simulators.models import bioreactor as twin
from simulators.models.bioreactor import BioreactorModel
from simulators.models.bioreactor_kinetics import janas_perfusion_rate

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
REJECTED_CODE = {"opcua": 0x803C0000, "modbus-tcp": 3, "modbus-rtu": 3, "serial": 3}
FAULT_CODE = {"opcua": 0x80020000, "modbus-tcp": 4, "modbus-rtu": 4, "serial": 4}
RECOVER_S = 15.0  # wall seconds a link may take to come back; never a sleep

HOUR = 3600.0
DAY = 86400.0
SEED_VCD = 0.5e6  # /mL (domain.md 1.1)
SEED_ML = 1000.0

each_kind = pytest.mark.parametrize("kind", KINDS)


@dataclass
class Rig:
    kind: str
    driver: Bioreactor
    model: BioreactorModel
    pair: Pair
    clock: VirtualClock


@asynccontextmanager
async def rig(kind: str, clock: VirtualClock, seed: int = 3) -> AsyncIterator[Rig]:
    model = BioreactorModel(clock, seed=seed)
    async with twin_pair(kind, model, clock, device="bioreactor", options=OPTIONS) as pair:
        driver = Bioreactor("bioreactor", pair.transport, clock)
        yield Rig(kind, driver, model, pair, clock)


async def seeded(r: Rig, *, settle: bool = True) -> None:
    """1 L at 0.5e6/mL, rocking 15 rpm / 6 deg, warmed to 37 degC."""
    await r.driver.seed(SEED_VCD * SEED_ML, SEED_ML, 95.0)
    await r.driver.set_rocking(15.0, 6.0)
    await r.driver.start_rocking()
    if settle:
        await r.driver.set_temperature(37.0, within=4 * HOUR)


def _num(value: Any) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool)
    return float(value)


# -- profiles and describe ------------------------------------------------------------


@each_kind
async def test_profile_binds_the_twin_and_describe_says_what_it_is(
    kind: str, vclock: VirtualClock
) -> None:
    profile = shipped_profile(f"bioreactor.{FAMILY[kind]}")
    check_profile(profile)
    assert profile.device == "bioreactor"
    assert driver_class("bioreactor") is Bioreactor
    async with rig(kind, vclock) as r:
        d = r.driver.describe()
        assert d["kind"] == "bioreactor"
        assert d["profile"] == f"bioreactor.{FAMILY[kind]}"
        assert d["source"] == r.pair.server.endpoint
        assert set(d["signals"]) == set(twin.TAGS)
        assert set(d["commands"]) == set(twin.METHODS)
        sp = d["signals"]["temperature_sp"]
        assert (sp["unit"], sp["writable"], sp["limits"]) == ("degC", True, [30.0, 39.0])
        assert sp["type"] in ("float32", "float64")
        assert d["signals"]["rock_rate_sp"]["limits"] == [2.0, 40.0]
        assert d["signals"]["rock_angle_sp"]["limits"] == [2.0, 12.0]
        assert d["signals"]["status"]["enum"] == ["idle", "busy", "warn", "error"]
        assert d["commands"]["seed"]["args"] == ["viable_cells", "volume_ml", "viability_pct"]
        assert d["commands"]["start_perfusion"]["args"] == ["rate_ml_per_day"]
        assert "rocking left running" in d["safe_state"]["hold"]
        assert "temperature and CO2 control left on" in d["safe_state"]["abort"]
        assert d["commands"]["abort"]["args"] == []
        assert d["signals"]["program_state"]["enum"] == [
            "stopped",
            "running",
            "complete",
            "aborted",
        ]
        assert [s["name"] for s in d["program_steps"]] == ["batch", "perfusion", "harvest"]
        # an empty bag: the tray is warm and gassed, nothing runs
        assert await r.driver.status() is DeviceStatus.IDLE
        reading = await r.driver.reading("temperature")
        assert reading.target == 37.0
        assert _num(reading.value) == pytest.approx(37.0, abs=0.1)


# -- a culture run ----------------------------------------------------------------------


@each_kind
async def test_culture_run_grows_and_perfusion_follows_the_janas_rule(
    kind: str, vclock: VirtualClock
) -> None:
    async with rig(kind, vclock, seed=11) as r:
        d = r.driver
        await d.set_co2(5.0)
        await seeded(r)
        t0 = vclock.now()
        rows: list[tuple[int, float, float, float, float, float, float]] = []
        for day in range(1, 7):
            await vclock.sleep_until(t0 + day * DAY)
            sample = await d.sample(1.0)
            volume = _num((await d.reading("volume")).value)
            rate = janas_perfusion_rate(sample.vcd_per_ml, volume)
            await d.perfuse(rate)
            applied = await d.reading("perfusion_rate")
            glucose = (await d.metabolites()).glucose_g_per_l
            rows.append(
                (
                    day,
                    sample.vcd_per_ml,
                    sample.viability_pct,
                    volume,
                    rate,
                    _num(applied.value),
                    glucose,
                )
            )
            assert _num(applied.value) == pytest.approx(rate, abs=0.01)
            assert applied.target == pytest.approx(rate, abs=0.01) or rate == 0.0
            # the count is the bag's true density within the counter's 5 % CV
            assert sample.vcd_per_ml == pytest.approx(r.model.culture.xv_per_ml, rel=0.2)
        print(f"\n{kind}: seeded {SEED_VCD:.2g}/mL in {SEED_ML:g} mL, rocking 15 rpm / 6 deg")
        print(" day   VCD/mL     viab %  volume mL  Janas mL/d  applied mL/d  glucose g/L")
        for day, vcd, viab, vol, rate, applied_rate, glc in rows:
            print(
                f" {day:3d}  {vcd:9.3g}  {viab:7.1f}  {vol:9.1f}  {rate:10.1f}"
                f"  {applied_rate:12.1f}  {glc:11.3f}"
            )
        vcds = [row[1] for row in rows]
        assert vcds[-1] > 5 * SEED_VCD  # grew (after a ~40 h lag)
        assert vcds[-1] > vcds[2] > vcds[0] * 0.9
        assert all(row[2] > 85.0 for row in rows)  # viability stays high
        assert [row[4] > 0 for row in rows] == [v >= 2e6 for v in vcds]  # rule threshold
        assert rows[0][4] == 0.0 and rows[-1][4] > 0.0  # perfusion started mid-run
        assert all(990.0 < row[3] < 1001.0 for row in rows)  # perfusion keeps the volume
        assert rows[-1][6] < rows[0][6]  # glucose consumed
        assert (await d.program()).step_name == "perfusion"
        assert await d.get("perfusing") is True


@each_kind
async def test_culture_snapshot_is_one_request(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        await seeded(r)
        await vclock.sleep(2 * HOUR)
        before = vclock.requests
        state = await r.driver.culture()
        assert vclock.requests - before == 1
        assert isinstance(state, CultureState)
        assert state.temperature_c == pytest.approx(37.0, abs=0.2)
        assert 80.0 < state.do_pct <= 100.0
        assert 7.2 < state.ph < 7.5
        assert state.co2_pct == pytest.approx(5.0, abs=0.1)
        assert state.rock_rate_rpm == 15.0
        assert state.volume_ml == pytest.approx(1000.0, abs=2.0)
        assert state.perfusion_rate_ml_per_day == 0.0
        assert state.culture_day == pytest.approx(vclock.now() / DAY, abs=120 / DAY)  # seeded at 0
        assert state.status is DeviceStatus.BUSY
        assert state.alarms == ()
        assert await r.driver.alarms() == ()


@each_kind
async def test_alarm_text_when_none(kind: str, vclock: VirtualClock) -> None:
    """An empty bag has no alarm: the alarm signal reads ''."""
    async with rig(kind, vclock) as r:
        assert await r.driver.alarm() == ""


@each_kind
async def test_feed_that_would_overfill_is_refused_unsent(kind: str, vclock: VirtualClock) -> None:
    """Review (feed_overfill.py): 900 mL onto 500 mL was accepted, 1400 mL against [300, 1000]."""
    async with rig(kind, vclock) as r:
        d = r.driver
        await d.seed(2.5e8, 500.0)
        before = vclock.requests
        with pytest.raises(OutOfRangeError, match="above the 1000 mL working volume"):
            await d.feed(900.0)
        assert vclock.requests == before + 1  # the volume was read; no feed went out
        assert r.model.culture.volume_ml == 500.0
        await d.feed(450.0)  # within: sent
        assert r.model.culture.volume_ml == pytest.approx(950.0)
        with pytest.raises(OutOfRangeError, match="would make 10"):
            await d.feed(60.0)
        assert r.model.culture.volume_ml == pytest.approx(950.0)


@each_kind
async def test_feed_beyond_working_volume_raises_overfill(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        await seeded(r, settle=False)
        glucose_before = r.model.culture.glucose_g_per_l
        with pytest.raises(OutOfRangeError):
            await r.driver.feed(150.0)  # the driver keeps to the working volume ...
        await r.driver.command("feed", 150.0)  # ... a feed past it (made at the device) warns
        await vclock.sleep(60.0)
        state = await r.driver.culture()
        assert state.volume_ml == pytest.approx(1150.0, abs=2.0)
        assert state.alarms == ("OVERFILL",)
        assert state.status is DeviceStatus.WARN
        assert (await r.driver.status()) is DeviceStatus.WARN
        assert r.model.culture.xv_per_ml == pytest.approx(SEED_VCD * 1000 / 1150, rel=0.01)
        assert r.model.culture.glucose_g_per_l == pytest.approx(glucose_before, rel=0.05)
        # a sample takes volume out and reports the diluted density
        sample = await r.driver.sample(10.0)
        assert sample.vcd_per_ml == pytest.approx(SEED_VCD * 1000 / 1150, rel=0.2)
        assert 90.0 < sample.viability_pct <= 100.0
        assert r.model.culture.volume_ml == pytest.approx(1140.0, abs=0.5)


# -- setpoints and waiting ----------------------------------------------------------------


@each_kind
async def test_set_and_wait_settles_or_times_out(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r)
        assert r.model.culture.temperature_c == pytest.approx(37.0, abs=0.2)
        # 2 degC down with a 30 min time constant: reached, but not at once
        start = vclock.now()
        await d.set_temperature(35.0, within=3 * HOUR, poll=60.0)
        took = vclock.now() - start
        assert 30 * 60 < took < 2 * HOUR
        assert r.model.culture.temperature_c == pytest.approx(35.0, abs=0.25)
        # back up, but only 10 minutes allowed: the setpoint is sent, the wait times out
        start = vclock.now()
        with pytest.raises(ConditionTimeout) as caught:
            await d.set_temperature(37.0, within=600.0, poll=60.0)
        assert caught.value.timeout == 600.0
        assert vclock.now() - start == pytest.approx(600.0, abs=60.0)
        assert r.model.read("temperature_sp") == 37.0
        reading = await d.reading("temperature")
        assert reading.target == 37.0 and 35.0 < _num(reading.value) < 36.9
        # CO2 with an explicit band
        await d.set_co2(7.0, within=2 * HOUR, tolerance=0.1)
        assert r.model.culture.co2_pct == pytest.approx(7.0, abs=0.12)
        # rocking: the motor gets there in seconds (2 rpm/s, 1 deg/s), polled every 10 s
        await d.set_rocking(20.0, 8.0, within=60.0)
        assert (await d.reading("rock_rate")).value == 20.0
        assert (await d.reading("rock_angle")).value == 8.0
        # a stopped rocker never reaches its setpoint
        await d.stop_rocking()
        with pytest.raises(ConditionTimeout):
            await d.set_rocking(12.0, 6.0, within=120.0, poll=30.0)
        assert r.model.read("rock_rate_sp") == 12.0
        assert r.model.read("rocking") is False


@each_kind
async def test_limits_are_refused_before_anything_is_sent(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r, settle=False)
        await d.start_perfusion(500.0)

        def state() -> tuple[Any, ...]:
            c = r.model.culture
            return (
                *(r.model.read(n) for n in sorted(twin._SETPOINTS)),
                r.model.read("rocking"),
                r.model.read("perfusing"),
                c.volume_ml,
                c.xv_per_ml,
            )

        before_state = state()
        refused: list[Callable[[], Any]] = [
            lambda: d.set_temperature(39.5),
            lambda: d.set_temperature(29.9, within=60.0),
            lambda: d.set_co2(10.5),
            lambda: d.set_co2(-1.0, within=60.0),
            lambda: d.set_rocking(41.0, 6.0),
            lambda: d.set_rocking(20.0, 12.5),  # the valid rate is not sent either
            lambda: d.set_rocking(1.0, 6.0, within=60.0),
            lambda: d.start_perfusion(2500.0),
            lambda: d.set_perfusion_rate(-1.0),
            lambda: d.perfuse(2001.0),
            lambda: d.seed(5e8, 2000.0, 95.0),  # above the working volume
            lambda: d.seed(5e8, 100.0, 95.0),  # below it
            lambda: d.seed(0.0, 1000.0, 95.0),
            lambda: d.seed(1e12, 1000.0, 95.0),  # 1e9/mL
            lambda: d.seed(5e8, 1000.0, 0.0),
            lambda: d.seed(float("nan"), 1000.0, 95.0),
            lambda: d.feed(0.0),
            lambda: d.feed(1500.0),
            lambda: d.feed(float("inf")),
            lambda: d.sample(0.05),
            lambda: d.sample(60.0),
        ]
        for call in refused:
            requests = vclock.requests
            with pytest.raises(OutOfRangeError):
                await call()
            assert vclock.requests == requests, "a refused value reached the wire"
        assert state() == before_state


# -- program and safe state ---------------------------------------------------------------


@each_kind
async def test_program_runs_from_seed_to_harvest(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        empty = await d.program()
        assert (empty.state, empty.step_number, empty.runtime_s) == (ProgramState.STOPPED, 0, 0)
        await seeded(r, settle=False)
        seeded_at = vclock.now()
        first = await d.program()
        assert (first.state, first.step_name, first.step_number) == (
            ProgramState.RUNNING,
            "batch",
            1,
        )
        assert first.runtime_s < 120.0
        waiter = asyncio.get_running_loop().create_task(
            d.wait_program_done(within=5 * DAY, poll=HOUR)
        )
        await vclock.sleep(DAY)
        await d.start_perfusion(500.0)
        second = await d.program()
        assert (second.state, second.step_name, second.step_number) == (
            ProgramState.RUNNING,
            "perfusion",
            2,
        )
        assert second.runtime_s == pytest.approx(DAY, abs=120.0)
        await vclock.sleep(2 * DAY)
        # the bag cannot be drained while the rocker or pumps run
        with pytest.raises(DeviceBusyError):
            await d.harvest()
        assert not waiter.done()
        await d.stop_perfusion()
        await d.stop_rocking()
        true_cells = r.model.culture.xv_per_ml * r.model.culture.volume_ml
        product = await d.harvest()
        assert product.viable_cells == pytest.approx(true_cells, rel=1e-3)
        assert product.viable_cells > 1.5 * SEED_VCD * SEED_ML  # it grew in 3 days
        assert product.volume_ml == pytest.approx(1000.0, abs=0.5)
        assert product.vcd_per_ml == pytest.approx(product.viable_cells / product.volume_ml)
        assert 90.0 < product.viability_pct <= 100.0
        assert r.model.culture.volume_ml == 0.0
        done = await d.program()
        assert (done.state, done.step_name, done.step_number) == (
            ProgramState.COMPLETE,
            "harvest",
            3,
        )
        assert done.runtime_s == pytest.approx(vclock.now() - seeded_at, abs=120.0)
        assert await asyncio.wait_for(waiter, RECOVER_S) is ProgramState.COMPLETE
        assert await d.status() is DeviceStatus.IDLE
        # a new culture starts a new program
        await d.seed(2.5e8, 500.0, 90.0)
        assert (await d.program()).state is ProgramState.RUNNING
        with pytest.raises(ConditionTimeout):
            await d.wait_program_done(within=HOUR, poll=600.0)


@each_kind
async def test_hold_keeps_the_culture_alive(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r)
        await d.set_co2(5.0)
        await d.start_perfusion(500.0)
        await d.safe_state(SafeAction.HOLD)
        m = r.model
        assert m.read("perfusing") is False
        assert m.read("perfusion_rate_sp") == 500.0  # kept for the restart
        assert m.read("rocking") is True
        assert (m.read("temperature_sp"), m.read("co2_sp")) == (37.0, 5.0)
        await vclock.sleep(12 * HOUR)
        c = m.culture
        assert c.temperature_c == pytest.approx(37.0, abs=0.1)
        assert c.do_pct > 50.0  # still oxygenated by the rocker
        assert (await d.program()).state is ProgramState.RUNNING
        await d.safe_state(SafeAction.HOLD)  # idempotent
        await d.perfuse(500.0)  # the restart resumes
        assert m.read("perfusing") is True


@each_kind
async def test_abort_stops_motion_but_keeps_the_cells_warm(kind: str, vclock: VirtualClock) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r)
        await d.start_perfusion(500.0)
        await d.safe_state(SafeAction.ABORT)
        m = r.model
        assert m.read("perfusing") is False
        assert m.read("rocking") is False
        assert m.read("temperature_sp") == 37.0
        aborted = await d.program()
        assert (aborted.state, aborted.step_name) == (ProgramState.ABORTED, "perfusion")
        await vclock.sleep(12 * HOUR)
        assert m.culture.temperature_c == pytest.approx(37.0, abs=0.1)  # still controlled
        assert await d.wait_program_done(within=60.0) is ProgramState.ABORTED
        await d.safe_state(SafeAction.ABORT)  # idempotent
        product = await d.harvest()  # a person decides to drain it
        assert product.volume_ml > 0
        assert (await d.program()).state is ProgramState.ABORTED


# -- faults, as the driver sees them --------------------------------------------------------


@each_kind
async def test_device_refusals_are_typed(
    kind: str, vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        # a device whose own envelope is narrower than the profile: the write is refused
        monkeypatch.setitem(twin._SETPOINTS, "temperature_sp", (35.0, 39.0))
        with pytest.raises(ProtocolError) as caught:
            await d.set_temperature(32.0)
        assert caught.value.code == REJECTED_CODE[kind]
        assert r.model.read("temperature_sp") == 37.0
        assert d.transport.state is ConnectionState.CONNECTED
        # a command the device refuses: the feed would overfill the 2 L bag (sent past
        # the driver, which refuses anything above the 1 L working volume itself)
        await seeded(r, settle=False)
        await d.command("feed", 1000.0)
        with pytest.raises(ProtocolError) as caught:
            await d.command("feed", 1.0)
        assert caught.value.code == REJECTED_CODE[kind]
        assert r.model.culture.volume_ml == pytest.approx(2000.0)
        # busy: the rocker already runs, the bag is not empty
        with pytest.raises(DeviceBusyError):
            await d.start_rocking()
        with pytest.raises(DeviceBusyError):
            await d.seed(5e8, 1000.0, 95.0)
        assert r.model.culture.volume_ml == pytest.approx(2000.0)


# -- review regressions: a lost harvest reply, the program on the device, abort, rocker ----


def _harvest_call_goes_wrong(
    r: Rig, monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]
) -> list[str]:
    """Apply ``fault`` to the server just before the harvest command goes out (once)."""
    transport = r.pair.transport
    real_call = transport.call
    seen: list[str] = []

    async def call(command: CommandAddress, args: Any = ()) -> list[Any]:
        if command.name == "harvest" and not seen:
            seen.append(command.name)
            fault()
        try:
            return await real_call(command, args)
        finally:
            if seen == ["harvest"]:
                seen.append("done")
                if r.pair.server.faults.error is not None:
                    r.pair.server.faults.clear()  # the device's error was for this call only

    monkeypatch.setattr(transport, "call", call)
    return seen


async def _ready_to_harvest(r: Rig) -> float:
    await r.driver.seed(2.5e8, 500.0)
    await r.driver.start_rocking()
    await r.clock.sleep(DAY)
    await r.driver.stop_rocking()
    c = r.model.culture
    return c.xv_per_ml * c.volume_ml


@each_kind
async def test_a_harvest_whose_reply_is_lost_is_read_back_from_the_device(
    kind: str, vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (harvest_lost.py): the bag drained, the reply damaged, the figures were lost."""
    async with rig(kind, vclock) as r:
        d = r.driver
        true_cells = await _ready_to_harvest(r)
        viability = r.model.culture.viability_pct

        def damage_the_reply() -> None:
            r.pair.server.faults.corrupt = 1

        seen = _harvest_call_goes_wrong(r, monkeypatch, damage_the_reply)
        product = await d.harvest()
        assert seen == ["harvest", "done"]
        assert r.model.harvest_count == 1 and r.model.culture.volume_ml == 0.0
        print(f"\n[{kind}] harvest reply damaged; read back: {product}")
        assert product.recovered is True and product.number == 1
        assert product.viable_cells == pytest.approx(true_cells, rel=1e-6)
        assert product.volume_ml == pytest.approx(500.0)
        assert product.viability_pct == pytest.approx(viability, rel=1e-6)
        assert d.transport.state is ConnectionState.CONNECTED
        assert (await d.program()).state is ProgramState.COMPLETE
        assert await d.last_harvest() == Harvest(
            product.viable_cells, product.volume_ml, product.viability_pct, number=1
        )
        # a retry on the harvested bag says so, with the figures, and sends nothing
        before = vclock.requests
        with pytest.raises(AlreadyHarvested, match="already harvested") as caught:
            await d.harvest()
        assert vclock.requests == before + 1  # one read
        assert isinstance(caught.value, DeviceBusyError)
        assert caught.value.harvest.viable_cells == product.viable_cells
        assert caught.value.harvest.number == 1


@each_kind
async def test_a_harvest_the_device_never_ran_says_it_is_safe_to_retry(
    kind: str, vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with rig(kind, vclock) as r:
        d = r.driver
        assert await d.last_harvest() is None
        await _ready_to_harvest(r)

        def refuse() -> None:
            r.pair.server.faults.error = FAULT_CODE[kind]

        _harvest_call_goes_wrong(r, monkeypatch, refuse)
        with pytest.raises(ProtocolError) as caught:
            await d.harvest()
        notes = " ".join(getattr(caught.value, "__notes__", []))
        assert "did not happen" in notes and "safe to harvest again" in notes
        assert r.model.harvest_count == 0 and r.model.culture.volume_ml > 0
        assert (await d.program()).state is ProgramState.RUNNING
        product = await d.harvest()  # the retry drains the bag
        assert (product.recovered, product.number) == (False, 1)
        assert product.volume_ml == pytest.approx(500.0)


@each_kind
async def test_the_program_end_is_the_devices_and_survives_a_new_driver(
    kind: str, vclock: VirtualClock
) -> None:
    """Review: an aborted culture read as Running after a supervisor restart."""
    async with rig(kind, vclock) as r:
        await seeded(r, settle=False)
        await r.driver.start_perfusion(500.0)
        await vclock.sleep(HOUR)
        before = vclock.requests
        await r.driver.safe_state(SafeAction.ABORT)
        assert vclock.requests == before + 1  # one command: it cannot be half applied
        # a restarted supervisor builds a new driver: it reads the same program
        restarted = Bioreactor("bioreactor", r.pair.transport, vclock)
        aborted = await restarted.program()
        assert (aborted.state, aborted.step_name, aborted.step_number) == (
            ProgramState.ABORTED,
            "perfusion",
            2,
        )
        assert aborted.runtime_s == pytest.approx(HOUR, abs=1.0)
        assert r.model.read("program_state") == "aborted"
        assert await restarted.wait_program_done(within=0.0) is ProgramState.ABORTED
        assert not hasattr(restarted, "_ended")


@each_kind
async def test_a_failed_abort_propagates_and_marks_nothing(kind: str, vclock: VirtualClock) -> None:
    """Review: safe_state(ABORT) marked Aborted even when stopping the pumps failed."""
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r, settle=False)
        await d.start_perfusion(500.0)
        r.pair.server.faults.error = FAULT_CODE[kind]
        with pytest.raises(ProtocolError) as caught:
            await d.safe_state(SafeAction.ABORT)
        assert caught.value.code == FAULT_CODE[kind]
        r.pair.server.faults.clear()
        m = r.model
        assert (m.read("perfusing"), m.read("rocking")) == (True, True)
        running = await d.program()
        assert (running.state, running.step_name) == (ProgramState.RUNNING, "perfusion")
        await d.abort()  # tried again, it lands whole
        assert (m.read("perfusing"), m.read("rocking")) == (False, False)
        assert (await d.program()).state is ProgramState.ABORTED


@each_kind
async def test_set_rocking_waits_for_the_motor(kind: str, vclock: VirtualClock) -> None:
    """Review: the rocker read back its setpoint at once, so a wait for it meant nothing."""
    async with rig(kind, vclock) as r:
        d = r.driver
        await seeded(r, settle=False)
        await vclock.sleep(60.0)
        assert (await d.reading("rock_rate")).value == 15.0
        start = vclock.now()
        await d.set_rocking(30.0, 10.0)  # no wait: the motor is still on its way
        moving = await d.reading("rock_rate")
        assert moving.target == 30.0 and _num(moving.value) < 16.0
        await d.set_rocking(30.0, 10.0, within=60.0, poll=1.0)
        took = vclock.now() - start
        # 15 -> 30 rpm at 2 rpm/s is 7.5 s (the angle takes 4 s); polled every second
        assert 7.0 <= took <= 9.0
        assert (await d.reading("rock_rate")).value == 30.0
        assert (await d.reading("rock_angle")).value == 10.0
        with pytest.raises(ConditionTimeout):
            await d.set_rocking(2.0, 2.0, within=5.0, poll=1.0)  # 14 s of travel
