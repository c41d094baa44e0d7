"""The rocking-bag bioreactor twin: fidelity, physics trends, determinism, envelope, invariants."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.clock import VirtualClock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import TwinModel, UnknownTagError
from simulators.models.bioreactor import (
    MEDIUM_DENSITY_G_PER_ML,
    METHODS,
    STATUSES,
    TAGS,
    BioreactorModel,
)
from simulators.models.bioreactor_kinetics import Culture, janas_perfusion_rate, kla_per_h
from simulators.models.program import PROGRAM_STATES

DAY = 86400.0
HOUR = 3600.0


def _num(model: BioreactorModel, tag: str) -> float:
    value = model.read(tag)
    assert isinstance(value, int | float) and not isinstance(value, bool)
    return float(value)


def _state(culture: Culture) -> tuple[float, ...]:
    return tuple(getattr(culture, name) for name in Culture.__slots__)


def _seeded(clock: VirtualClock, *, vcd: float = 0.5e6, volume: float = 1000.0) -> BioreactorModel:
    model = BioreactorModel(clock, seed=7)
    model.call("seed", [vcd * volume, volume, 95.0])
    model.call("start_rocking", [])
    return model


async def _run_culture(
    clock: VirtualClock, *, perfusion: bool, days: int = 14
) -> list[tuple[int, float, float, float, float, float, float]]:
    """Seed 0.5e6/mL in 1 L, rock 15 rpm / 6°, sample 2 mL daily; Janas schedule if perfused."""
    model = BioreactorModel(clock, seed=1)
    model.write("temperature_sp", 37.0)
    model.write("co2_sp", 5.0)
    model.write("rock_rate_sp", 15.0)
    model.write("rock_angle_sp", 6.0)
    model.call("seed", [0.5e6 * 1000.0, 1000.0, 95.0])
    model.call("start_rocking", [])
    if perfusion:
        model.call("start_perfusion", [0.0])
    rows = []
    for day in range(days + 1):
        if day:
            await clock.sleep(DAY)
        vcd, viability = (float(v) for v in model.call("sample", [2.0]))
        if perfusion:
            model.write("perfusion_rate_sp", janas_perfusion_rate(vcd))
        row = (
            day,
            vcd,
            viability,
            _num(model, "glucose"),
            _num(model, "lactate"),
            _num(model, "do"),
            _num(model, "ph"),
        )
        rows.append(row)
        print(
            f"  day {day:2d}  VCD {vcd / 1e6:6.2f}e6/mL  viab {viability:5.1f} %  "
            f"glc {row[3]:5.2f} g/L  lac {row[4]:5.2f} g/L  DO {row[5]:5.1f} %  pH {row[6]:5.2f}  "
            f"perfusion {_num(model, 'perfusion_rate'):6.0f} mL/d  alarm {model.read('alarm')!r}"
        )
    return rows


# -- fidelity ---------------------------------------------------------------------------


async def test_fidelity_perfused_culture_reaches_1e7_per_ml_above_85_pct(
    vclock: VirtualClock,
) -> None:
    print("\nperfused culture (Janas schedule from daily 2 mL samples):")
    rows = await _run_culture(vclock, perfusion=True)
    reached = next(day for day, vcd, *_ in rows if vcd > 1e7)
    _, final_vcd, final_viability, *_ = rows[-1]
    print(
        f"  reached 1e7/mL on day {reached}; day 14: {final_vcd / 1e6:.2f}e6/mL "
        f"at {final_viability:.1f} % viability"
    )
    assert reached <= 14
    assert rows[reached][2] > 85.0
    for day, vcd, viability, glucose, lactate, do, ph in rows[10:]:
        assert vcd > 1e7, f"day {day}"
        assert viability > 85.0, f"day {day}"
        assert glucose > 0.2 and lactate < 2.0 and 6.8 < ph < 7.4 and do > 0.0
    # a 20-fold expansion or more in 14 days, not an explosion
    assert 1e7 < final_vcd < 6e7


async def test_without_perfusion_nutrients_run_out_and_viability_falls(
    vclock: VirtualClock,
) -> None:
    print("\nbatch culture (no perfusion):")
    rows = await _run_culture(vclock, perfusion=False)
    peak = max(vcd for _, vcd, *_ in rows)
    last = rows[-1]
    print(f"  peak {peak / 1e6:.2f}e6/mL; day 14: {last[1] / 1e6:.2f}e6/mL at {last[2]:.1f} %")
    assert min(r[3] for r in rows) < 0.1  # glucose g/L
    assert max(r[4] for r in rows) > 1.5  # lactate g/L
    assert last[2] < 60.0  # viability collapses once glucose is gone
    assert last[1] < peak / 2  # not just exponential: the culture declines
    assert min(r[6] for r in rows) < 6.9  # pH falls with lactate


# -- physics trends ---------------------------------------------------------------------


async def test_temperature_follows_a_setpoint_step_with_a_first_order_lag(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock)
    await vclock.sleep(6 * HOUR)
    assert _num(model, "temperature") == pytest.approx(37.0, abs=0.1)
    model.write("temperature_sp", 32.0)
    tau_s = 0.5 * HOUR  # 1 L: 0.25 h + 0.25 h per litre
    trace = []
    for _ in range(12):
        await vclock.sleep(tau_s / 2)
        trace.append(model.culture.temperature_c)
    assert all(a > b for a, b in itertools.pairwise(trace))  # monotonic, no overshoot
    assert trace[1] == pytest.approx(32.0 + 5.0 * math.exp(-1.0), abs=0.05)  # one tau
    assert trace[-1] == pytest.approx(32.0, abs=0.05)
    assert _num(model, "temperature") == pytest.approx(32.0, abs=0.1)
    assert model.read("alarm") == ""  # a setpoint step is not a deviation


async def test_do_falls_when_rocking_stops_at_high_density_and_recovers(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock, vcd=1.5e7)
    await vclock.sleep(3 * HOUR)
    rocking_do = _num(model, "do")
    model.call("stop_rocking", [])
    assert model.read("rocking") is False
    assert model.read("rock_rate") == 15.0  # the motor runs down over seconds
    await vclock.sleep(10.0)
    assert model.read("rock_rate") == 0.0 and model.read("rock_angle") == 0.0
    await vclock.sleep(2 * HOUR)
    still_do = _num(model, "do")
    alarm = model.read("alarm")
    status = model.read("status")
    model.call("start_rocking", [])
    await vclock.sleep(2 * HOUR)
    again_do = _num(model, "do")
    print(
        f"\nDO at 1.5e7/mL: rocking {rocking_do} %, still {still_do} %, rocking again {again_do} %"
    )
    assert rocking_do > 30.0
    assert still_do < 5.0
    assert alarm == "DO_CRITICAL" and status == "error"
    assert again_do > 30.0
    assert model.read("status") == "busy"


def test_kla_rises_with_rock_rate_much_more_than_with_angle() -> None:
    base = kla_per_h(15.0, 6.0, 1000.0, 2000.0)
    assert kla_per_h(30.0, 6.0, 1000.0, 2000.0) / base > 1.8
    assert kla_per_h(15.0, 12.0, 1000.0, 2000.0) / base < 1.3
    assert kla_per_h(15.0, 6.0, 300.0, 2000.0) > base  # less fill, more surface per volume
    assert kla_per_h(0.0, 0.0, 1000.0, 2000.0) < base / 50


async def test_ph_falls_with_lactate_and_rises_when_perfusion_washes_it_out(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock, vcd=5e6)
    await vclock.sleep(HOUR)
    ph0, lac0 = _num(model, "ph"), _num(model, "lactate")
    await vclock.sleep(3 * DAY)
    ph1, lac1 = _num(model, "ph"), _num(model, "lactate")
    model.call("start_perfusion", [2000.0])
    await vclock.sleep(DAY)
    ph2, lac2 = _num(model, "ph"), _num(model, "lactate")
    print(f"\npH {ph0} -> {ph1} (lactate {lac0} -> {lac1} g/L), perfused {ph2} ({lac2} g/L)")
    assert lac1 > lac0 + 0.5 and ph1 < ph0 - 0.1
    assert lac2 < lac1 and ph2 > ph1 + 0.05


async def test_ph_follows_headspace_co2(vclock: VirtualClock) -> None:
    model = _seeded(vclock)
    await vclock.sleep(HOUR)
    ph5 = _num(model, "ph")
    model.write("co2_sp", 10.0)
    await vclock.sleep(2 * HOUR)
    assert _num(model, "co2") == pytest.approx(10.0, abs=0.1)
    assert _num(model, "ph") < ph5 - 0.2  # more dissolved CO2, more carbonic acid


async def test_volume_balance(vclock: VirtualClock) -> None:
    model = _seeded(vclock, volume=500.0)
    assert model.culture.volume_ml == 500.0
    assert _num(model, "weight") == pytest.approx(500.0 * MEDIUM_DENSITY_G_PER_ML, abs=1.5)
    model.call("feed", [200.0])
    assert model.culture.volume_ml == pytest.approx(700.0)
    model.call("sample", [10.0])
    assert model.culture.volume_ml == pytest.approx(690.0)
    model.call("start_perfusion", [1000.0])
    await vclock.sleep(DAY)
    assert _num(model, "perfusion_rate") == 1000.0
    assert model.culture.volume_ml == pytest.approx(690.0)
    assert _num(model, "volume") == pytest.approx(690.0, abs=1.5)
    model.call("feed", [400.0])  # past the 1 L working maximum: a warning, not a refusal
    assert model.read("alarm") == "OVERFILL" and model.read("status") == "warn"
    model.call("stop_perfusion", [])
    model.call("stop_rocking", [])
    cells, volume, viability = (float(v) for v in model.call("harvest", []))
    assert volume == pytest.approx(1090.0)
    assert cells > 0 and 0 < viability <= 100
    assert model.read("volume") == 0.0 and model.read("status") == "idle"
    assert model.read("culture_day") == 0.0
    model.call("seed", [1e8, 300.0, 90.0])  # an empty bag takes a new culture


async def test_feed_dilutes_and_cools_and_samples_keep_concentrations(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock, vcd=4e6, volume=500.0)
    await vclock.sleep(DAY)
    before = model.culture
    xv, lactate = before.xv_per_ml, before.lactate_g_per_l
    model.call("sample", [5.0])
    assert model.culture.xv_per_ml == xv and model.culture.lactate_g_per_l == lactate
    model.call("feed", [495.0])
    after = model.culture
    assert after.xv_per_ml == pytest.approx(xv / 2)
    assert after.lactate_g_per_l == pytest.approx(lactate / 2)
    assert after.temperature_c < 31.0  # room-temperature medium
    await vclock.sleep(3 * HOUR)
    assert model.culture.temperature_c == pytest.approx(37.0, abs=0.2)


async def test_temperature_alarm_needs_a_lasting_deviation_not_a_cold_start(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock, volume=300.0)  # the inoculum arrives at room temperature
    seen: set[str] = set()
    for _ in range(12):
        await vclock.sleep(600.0)
        seen.update(str(model.read("alarm")).split(","))
    assert "TEMP_DEVIATION" not in seen  # warming up is not a deviation
    for _ in range(14):  # cold boluses every 15 min keep the culture off setpoint
        model.call("feed", [100.0])
        await vclock.sleep(900.0)
        seen.update(str(model.read("alarm")).split(","))
    assert "TEMP_DEVIATION" in seen
    await vclock.sleep(6 * HOUR)
    assert model.read("alarm") == "OVERFILL"  # 1.7 L in a bag worked at up to 1 L


async def test_sample_reports_noisy_counts_and_updates_the_sample_tags(
    vclock: VirtualClock,
) -> None:
    model = _seeded(vclock, vcd=2e6)
    counts = [float(model.call("sample", [0.5])[0]) for _ in range(200)]
    mean = sum(counts) / len(counts)
    cv = math.sqrt(sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)) / mean
    assert mean == pytest.approx(2e6, rel=0.02)
    assert 0.035 < cv < 0.065
    assert model.read("sample_vcd") == counts[-1]
    assert 85.0 < _num(model, "sample_viability") <= 100.0


def test_janas_schedule() -> None:
    assert janas_perfusion_rate(0.0) == 0.0
    assert janas_perfusion_rate(1.99e6) == 0.0
    assert janas_perfusion_rate(2e6) == 500.0
    assert janas_perfusion_rate(9.9e6) == 500.0
    assert janas_perfusion_rate(10e6) == 750.0
    assert janas_perfusion_rate(15e6) == 750.0
    assert janas_perfusion_rate(15.1e6) == 1000.0
    assert janas_perfusion_rate(12e6, volume_ml=5000.0) == 3750.0
    with pytest.raises(OutOfRangeError):
        janas_perfusion_rate(-1.0)
    with pytest.raises(OutOfRangeError):
        janas_perfusion_rate(math.nan)


# -- the culture program, the harvest record and the rocker -------------------------------


def _program(model: BioreactorModel) -> tuple[Value, ...]:
    return tuple(model.read(t) for t in ("program_state", "step_name", "step_number"))


async def test_the_culture_program_lives_in_the_device(vclock: VirtualClock) -> None:
    """Review: the program end lived in the driver; now the device keeps it, like the others."""
    model = BioreactorModel(vclock, seed=2)
    assert _program(model) == ("stopped", "", 0) and model.read("runtime_s") == 0.0
    await vclock.sleep(HOUR)
    model.call("seed", [5e8, 1000.0, 95.0])
    model.call("start_rocking", [])
    assert _program(model) == ("running", "batch", 1)
    await vclock.sleep(DAY)
    model.call("start_perfusion", [500.0])
    assert _program(model) == ("running", "perfusion", 2)
    assert model.read("runtime_s") == pytest.approx(DAY)
    model.call("stop_perfusion", [])  # a hold: back to batch
    assert _program(model) == ("running", "batch", 1)
    model.call("start_perfusion", [500.0])
    await vclock.sleep(HOUR)
    # abort: pumps and motor stop, temperature and CO2 control stay, the program says so
    assert model.call("abort", []) == []
    assert _program(model) == ("aborted", "perfusion", 2)
    assert (model.read("perfusing"), model.read("rocking")) == (False, False)
    assert (model.read("temperature_sp"), model.read("co2_sp")) == (37.0, 5.0)
    assert model.read("perfusion_rate_sp") == 500.0
    runtime = model.read("runtime_s")
    assert runtime == pytest.approx(DAY + HOUR)
    await vclock.sleep(6 * HOUR)
    assert model.read("runtime_s") == runtime  # frozen at the end
    assert model.culture.temperature_c == pytest.approx(37.0, abs=0.1)
    model.call("abort", [])  # idempotent
    assert _program(model) == ("aborted", "perfusion", 2)
    with pytest.raises(OutOfRangeError):
        model.call("abort", [1.0])
    with pytest.raises(DeviceBusyError):
        model.call("seed", [5e8, 500.0, 95.0])  # the aborted culture is still in the bag
    # a person drains the aborted culture: it stays aborted, the product is recorded
    cells, volume, _ = (float(v) for v in model.call("harvest", []))
    assert _program(model) == ("aborted", "perfusion", 2)
    assert model.read("harvest_count") == 1 and model.read("harvest_cells") == cells
    # a new culture is a new run
    model.call("seed", [2.5e8, 500.0, 95.0])
    assert _program(model) == ("running", "batch", 1)
    assert model.read("runtime_s") == 0.0
    model.call("harvest", [])
    assert _program(model) == ("complete", "harvest", 3)
    assert volume == pytest.approx(1000.0)


async def test_the_last_harvest_is_kept_and_a_second_harvest_says_why_not(
    vclock: VirtualClock,
) -> None:
    """Review: a harvest whose reply is lost must not lose the product's figures."""
    model = _seeded(vclock, vcd=1e6, volume=600.0)
    assert [model.read(t) for t in ("harvest_count", "harvest_cells")] == [0, 0.0]
    with pytest.raises(DeviceBusyError, match="stop rocking"):
        model.call("harvest", [])
    model.call("stop_rocking", [])
    await vclock.sleep(2 * DAY)
    true_cells = model.culture.xv_per_ml * model.culture.volume_ml
    viability = model.culture.viability_pct
    product = model.call("harvest", [])
    assert product == [true_cells, 600.0, viability]
    kept = [model.read(t) for t in ("harvest_cells", "harvest_volume_ml", "harvest_viability")]
    assert kept == product and model.read("harvest_count") == 1
    await vclock.sleep(DAY)
    assert [model.read(t) for t in ("harvest_cells", "harvest_volume_ml")] == product[:2]
    with pytest.raises(DeviceBusyError, match=r"already harvested \(harvest 1: "):
        model.call("harvest", [])
    fresh = BioreactorModel(vclock)
    with pytest.raises(DeviceBusyError, match="nothing to harvest"):
        fresh.call("harvest", [])
    # a sample may not drain the bag (that is a harvest)
    model.call("seed", [1e8, 300.0, 95.0])
    for _ in range(5):
        model.call("sample", [50.0])
    with pytest.raises(OutOfRangeError, match="harvest instead"):
        model.call("sample", [50.0])
    assert model.culture.volume_ml == pytest.approx(50.0)


async def test_the_rocker_slews_to_its_setpoints_over_seconds(vclock: VirtualClock) -> None:
    """Review: rate and angle read back the setpoint at once, so waiting meant nothing."""
    model = BioreactorModel(vclock)
    model.call("seed", [5e8, 1000.0, 95.0])
    model.call("start_rocking", [])
    assert (model.read("rock_rate"), model.read("rock_angle")) == (0.0, 0.0)
    await vclock.sleep(3.0)
    assert (model.read("rock_rate"), model.read("rock_angle")) == (6.0, 3.0)  # 2 rpm/s, 1 deg/s
    await vclock.sleep(4.0)
    assert (model.read("rock_rate"), model.read("rock_angle")) == (14.0, 6.0)
    await vclock.sleep(0.5)
    assert model.read("rock_rate") == 15.0
    model.write("rock_rate_sp", 25.0)  # from where it is, at the same speed
    await vclock.sleep(2.5)
    assert model.read("rock_rate") == 20.0
    model.write("rock_rate_sp", 10.0)  # reversed mid-ramp
    await vclock.sleep(2.0)
    assert model.read("rock_rate") == 16.0
    await vclock.sleep(60.0)
    assert model.read("rock_rate") == 10.0
    model.write("rock_angle_sp", 12.0)
    model.call("stop_rocking", [])  # a stopped rocker heads for rest, not the new setpoint
    await vclock.sleep(1.0)
    assert (model.read("rock_rate"), model.read("rock_angle")) == (8.0, 5.0)
    await vclock.sleep(10.0)
    assert (model.read("rock_rate"), model.read("rock_angle")) == (0.0, 0.0)

    # the axes are a closed form of the command times: reading changes nothing
    polled, quiet = BioreactorModel(vclock, seed=5), BioreactorModel(vclock, seed=5)
    for m in (polled, quiet):
        m.write("rock_rate_sp", 33.0)
        m.call("start_rocking", [])
    for _ in range(7):
        await vclock.sleep(1.3)
        polled.read("rock_rate")
        polled.read("rock_angle")
    for m in (polled, quiet):
        m.write("rock_rate_sp", 4.0)
    await vclock.sleep(2.2)
    assert [polled.read(t) for t in ("rock_rate", "rock_angle")] == [
        quiet.read(t) for t in ("rock_rate", "rock_angle")
    ]


# -- determinism ------------------------------------------------------------------------


async def test_same_seed_same_readings_and_read_pattern_does_not_change_the_trajectory(
    vclock: VirtualClock,
) -> None:
    minute_a, minute_b, hourly = (BioreactorModel(vclock, seed=3) for _ in range(3))
    models = (minute_a, minute_b, hourly)
    readings: dict[int, list[Value]] = {id(m): [] for m in models}
    states: dict[int, list[tuple[float, ...]]] = {id(m): [] for m in models}
    for model in models:
        model.call("seed", [4e8, 800.0, 93.0])
        model.call("start_rocking", [])
    for minute in range(1, 3 * 24 * 60 + 1):
        await vclock.sleep(60.0)
        for model in (minute_a, minute_b):
            readings[id(model)] += [model.read(tag) for tag in sorted(TAGS)]
        if minute == 30 * 60:
            await vclock.sleep(17.0)  # a command between two grid points
            for model in models:
                model.call("start_perfusion", [600.0])
                model.write("rock_rate_sp", 22.0)
        if minute == 50 * 60:
            for model in models:
                model.call("feed", [100.0])
                model.call("sample", [2.0])
        if minute % 60 == 0:
            for model in models:
                states[id(model)].append(_state(model.culture))
    assert readings[id(minute_a)] == readings[id(minute_b)]
    assert states[id(minute_a)] == states[id(hourly)]
    assert states[id(minute_a)] == states[id(minute_b)]
    other = BioreactorModel(vclock, seed=4)
    assert other.read("temperature") != minute_a.read("temperature")  # the seed matters


# -- envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "bad"),
    [
        ("temperature_sp", 29.9),
        ("temperature_sp", 39.1),
        ("co2_sp", -0.1),
        ("co2_sp", 10.5),
        ("rock_rate_sp", 1.0),
        ("rock_rate_sp", 41.0),
        ("rock_angle_sp", 1.5),
        ("rock_angle_sp", 13.0),
        ("perfusion_rate_sp", -1.0),
        ("perfusion_rate_sp", 2001.0),
        ("temperature_sp", math.nan),
        ("temperature_sp", math.inf),
        ("temperature_sp", True),
        ("temperature_sp", "37"),
    ],
)
async def test_writes_outside_the_envelope_are_refused_and_change_nothing(
    vclock: VirtualClock, tag: str, bad: Value
) -> None:
    model = _seeded(vclock)
    await vclock.sleep(HOUR)
    before = (model.read(tag), _state(model.culture))
    with pytest.raises(OutOfRangeError):
        model.write(tag, bad)
    assert (model.read(tag), _state(model.culture)) == before


async def test_commands_outside_the_envelope_or_against_the_state(vclock: VirtualClock) -> None:
    model = BioreactorModel(vclock)
    assert model.read("status") == "idle" and model.read("do") == 0.0
    for method, args in [("sample", [1.0]), ("feed", [10.0]), ("harvest", [])]:
        with pytest.raises(DeviceBusyError):
            model.call(method, args)
    with pytest.raises(DeviceBusyError):
        model.call("start_perfusion", [100.0])
    with pytest.raises(OutOfRangeError):
        model.call("seed", [1e8, 200.0, 95.0])  # below the 300 mL working minimum
    with pytest.raises(OutOfRangeError):
        model.call("seed", [1e8, 500.0, 0.0])
    with pytest.raises(OutOfRangeError):
        model.call("seed", [-1.0, 500.0, 95.0])
    with pytest.raises(OutOfRangeError):
        model.call("seed", [1e8, 500.0])
    model.call("seed", [1e8, 500.0, 95.0])
    with pytest.raises(DeviceBusyError):
        model.call("seed", [1e8, 500.0, 95.0])
    model.call("start_rocking", [])
    with pytest.raises(DeviceBusyError):
        model.call("start_rocking", [])
    with pytest.raises(DeviceBusyError):
        model.call("harvest", [])  # still rocking
    model.call("start_perfusion", [100.0])
    with pytest.raises(DeviceBusyError):
        model.call("start_perfusion", [100.0])
    with pytest.raises(OutOfRangeError):
        model.call("start_perfusion", [3000.0])
    volume = model.culture.volume_ml
    with pytest.raises(OutOfRangeError):
        model.call("feed", [1600.0])  # more than the 2 L bag holds
    with pytest.raises(OutOfRangeError):
        model.call("sample", [60.0])
    with pytest.raises(OutOfRangeError):
        model.call("feed", [0.0])
    assert model.culture.volume_ml == volume
    with pytest.raises(OutOfRangeError):
        model.write("temperature", 20.0)  # read-only
    with pytest.raises(OutOfRangeError):
        BioreactorModel(vclock, bag_volume_ml=30000.0)


async def test_unknown_names(vclock: VirtualClock) -> None:
    model = BioreactorModel(vclock)
    with pytest.raises(UnknownTagError):
        model.read("viable_cells")  # true state is not a device tag
    with pytest.raises(UnknownTagError):
        model.write("nope", 1.0)
    with pytest.raises(UnknownTagError):
        model.call("nope", [])


async def test_tag_table_types_and_protocol(vclock: VirtualClock) -> None:
    model = BioreactorModel(vclock, bag_volume_ml=20000.0)
    twin: TwinModel = model  # the generic servers see only the protocol
    assert twin.methods() == METHODS
    for tag in twin.tags():
        value = twin.read(tag)
        assert isinstance(value, bool | int | float | str), tag
    assert model.read("status") in STATUSES
    assert isinstance(model.read("rocking"), bool)
    model.call("seed", [1e10, 8000.0, 95.0])  # a large bag: 3-10 L working volume
    model.call("start_perfusion", [2000.0])
    assert model.read("perfusing") is True
    await vclock.sleep(DAY + HOUR)
    assert _num(model, "culture_day") == pytest.approx(1 + 1 / 24, abs=1e-3)


# -- invariants -------------------------------------------------------------------------

_SETPOINT_VALUES = {
    "temperature_sp": st.floats(30.0, 39.0),
    "co2_sp": st.floats(0.0, 10.0),
    "rock_rate_sp": st.floats(2.0, 40.0),
    "rock_angle_sp": st.floats(2.0, 12.0),
    "perfusion_rate_sp": st.floats(0.0, 2000.0),
}
_actions = st.one_of(
    st.tuples(st.just("wait"), st.floats(1.0, 4 * DAY)),
    st.tuples(st.just("write"), st.sampled_from(sorted(_SETPOINT_VALUES))).flatmap(
        lambda pair: st.tuples(st.just(pair[0]), st.just(pair[1]), _SETPOINT_VALUES[pair[1]])
    ),
    st.tuples(
        st.just("seed"), st.floats(1e5, 3e7), st.floats(300.0, 1000.0), st.floats(50.0, 100.0)
    ),
    st.tuples(
        st.sampled_from(["start_rocking", "stop_rocking", "stop_perfusion", "harvest", "abort"])
    ),
    st.tuples(st.just("start_perfusion"), st.floats(0.0, 2000.0)),
    st.tuples(st.just("feed"), st.floats(1.0, 1500.0)),
    st.tuples(st.just("sample"), st.floats(0.1, 50.0)),
)


def _check_invariants(model: BioreactorModel) -> None:
    c = model.culture
    values = _state(c)
    assert all(math.isfinite(v) for v in values), values
    assert 0.0 <= c.volume_ml <= model.bag_volume_ml
    assert 0.0 <= c.viability_pct <= 100.0
    assert 0.0 <= c.do_pct <= 110.0
    assert min(c.xv_per_ml, c.xd_per_ml, c.glucose_g_per_l, c.lactate_g_per_l) >= 0.0
    assert c.ammonia_mm >= 0.0
    for tag in TAGS:
        value = model.read(tag)
        if isinstance(value, float):
            assert math.isfinite(value), tag
    assert model.read("status") in STATUSES
    ph = _num(model, "ph")
    assert ph == 0.0 or 5.0 <= ph <= 9.6
    # the culture program: running only with a culture; a culture is running or aborted
    state = model.read("program_state")
    assert state in PROGRAM_STATES
    if state == "running":
        assert c.volume_ml > 0
    if c.volume_ml > 0:
        assert state in ("running", "aborted")
    assert 0.0 <= _num(model, "rock_rate") <= 40.0


async def _play(actions: list[tuple[object, ...]]) -> None:
    clock = VirtualClock()
    model = BioreactorModel(clock, seed=11)
    try:
        for action in actions:
            kind, *args = action
            try:
                if kind == "wait":
                    assert isinstance(args[0], float)
                    await clock.sleep(args[0])
                elif kind == "write":
                    tag, value = args
                    assert isinstance(tag, str) and isinstance(value, float)
                    model.write(tag, value)
                else:
                    assert isinstance(kind, str)
                    model.call(kind, [a for a in args if isinstance(a, float)])
            except (DeviceBusyError, OutOfRangeError):
                pass  # a valid command may still conflict with the state: refused, not broken
            _check_invariants(model)
    finally:
        await clock.aclose()


@settings(max_examples=80, deadline=None)
@given(actions=st.lists(_actions, min_size=1, max_size=25))
def test_random_command_sequences_keep_the_invariants(actions: list[tuple[object, ...]]) -> None:
    asyncio.run(_play(actions))


# -- cost -------------------------------------------------------------------------------


async def test_fourteen_days_of_minute_reads(vclock: VirtualClock) -> None:
    model = _seeded(vclock)
    model.call("start_perfusion", [500.0])
    tags = ("temperature", "do", "ph", "weight", "status", "alarm")
    in_model = 0.0
    started = time.perf_counter()
    for _ in range(14 * 24 * 60):
        await vclock.sleep(60.0)
        t = time.perf_counter()
        for tag in tags:
            model.read(tag)
        in_model += time.perf_counter() - t
    wall = time.perf_counter() - started
    assert vclock.now() == pytest.approx(14 * DAY)
    print(
        f"\n14 days of minute reads ({len(tags)} tags each): {wall:.3f} s wall in all, "
        f"{in_model:.3f} s inside the model"
    )
