"""Dry-plate thaw twin: fidelity to domain.md 1.3, end point, overshoot, envelope."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexctl.clock import VirtualClock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError
from simulators.models.program import PROGRAM_STATES, STATUSES
from simulators.models.thaw import STEP_NAMES, ThawModel
from tests.model_replay import replay

PLATEAU_BAND = (-4.5, -2.5)  # a 2 °C band just below the -3 °C melting point
EVERY_S = 5.0


@dataclass
class Thaw:
    volume_ml: float
    end_point_min: float
    complete_min: float
    plateau_min: float
    max_sample_c: float
    alarm: str
    state: str


async def _thaw(clock: VirtualClock, model: ThawModel, volume_ml: float) -> Thaw:
    """Thaw a bag from -150 °C; watch for 10 min after the program ends."""
    model.call("load_bag", [volume_ml, -150.0])
    model.call("start", ["standard"])
    start = clock.now()
    plateau = 0.0
    highest = -math.inf
    end_point = complete = math.nan
    done_at = math.inf
    while clock.now() - start < 60 * 60 and clock.now() < done_at + 600:
        await clock.sleep(EVERY_S)
        sample = model.read("sample_temperature")
        assert isinstance(sample, float)
        highest = max(highest, sample)
        if PLATEAU_BAND[0] <= sample <= PLATEAU_BAND[1]:
            plateau += EVERY_S
        minute = (clock.now() - start) / 60
        if math.isnan(end_point) and model.read("end_point_detected"):
            end_point = minute
        if math.isnan(complete) and model.read("thaw_complete"):
            complete = minute
        if model.read("program_state") != "running" and done_at == math.inf:
            done_at = clock.now()
    return Thaw(
        volume_ml,
        end_point,
        complete,
        plateau / 60,
        highest,
        str(model.read("alarm")),
        str(model.read("program_state")),
    )


async def test_standard_thaw_plateau_end_point_and_no_overshoot(vclock: VirtualClock) -> None:
    runs = [await _thaw(vclock, ThawModel(vclock, seed=1), volume) for volume in (25, 50, 100)]
    print("\nthaw standard from -150 °C (sample read every 5 s):")
    for run in runs:
        print(
            f"  {run.volume_ml:5.0f} mL: plateau {PLATEAU_BAND} °C for {run.plateau_min:.1f} min, "
            f"end point at {run.end_point_min:.1f} min, complete at {run.complete_min:.1f} min, "
            f"max sample {run.max_sample_c:.1f} °C, state {run.state}, alarm {run.alarm!r}"
        )
    for run in runs:
        assert run.state == "complete" and run.alarm == ""
        assert run.max_sample_c < 10.0
        assert run.plateau_min >= 1.0
        assert run.end_point_min <= run.complete_min <= run.end_point_min + 2.0
    plateaus = [run.plateau_min for run in runs]
    assert plateaus == sorted(plateaus) and plateaus[0] < plateaus[-1]
    assert 5.0 <= runs[1].end_point_min <= 15.0
    assert 5.0 <= runs[2].end_point_min <= 15.0
    assert runs[1].end_point_min < runs[2].end_point_min


async def test_end_point_comes_from_the_sample_not_a_timer(vclock: VirtualClock) -> None:
    """A warmer bag (-80 °C) reaches its end point sooner, the program adapts."""
    cold, warm = ThawModel(vclock), ThawModel(vclock)
    cold.load_bag(50, -150)
    warm.load_bag(50, -80)
    cold.start("standard")
    warm.start("standard")
    steps = []
    for _ in range(40 * 6):
        await vclock.sleep(10)
        steps.append((cold.read("step_name"), warm.read("step_name")))
        if cold.read("thaw_complete") and warm.read("thaw_complete"):
            break
    assert cold.end_point_time is not None and warm.end_point_time is not None
    print(
        f"\nthaw 50 mL end point from -150 °C at {cold.end_point_time / 60:.1f} min, "
        f"from -80 °C at {warm.end_point_time / 60:.1f} min"
    )
    assert warm.end_point_time < cold.end_point_time - 30
    assert [name for name, _ in steps if name] == sorted(
        (name for name, _ in steps if name), key=STEP_NAMES.index
    )
    assert cold.read("step_number") == 3 and cold.read("plate_sp") == 4.0


async def test_overshoot_alarm_when_end_point_is_missed(vclock: VirtualClock) -> None:
    model = ThawModel(vclock, end_point_delay_s=math.inf)  # fault: detection disabled
    run = await _thaw(vclock, model, 50)
    print(
        f"\nthaw end point disabled: max sample {run.max_sample_c:.1f} °C, "
        f"state {run.state}, alarm {run.alarm!r}"
    )
    assert run.alarm == "OVERSHOOT"
    assert run.state == "aborted"
    assert model.read("status") == "error"
    assert model.read("end_point_detected") is False
    assert model.read("thaw_complete") is False
    assert run.max_sample_c > 10.0

    late = ThawModel(vclock, end_point_delay_s=240.0)  # fault: end point 4 min late
    run = await _thaw(vclock, late, 50)
    print(f"thaw end point 4 min late: max sample {run.max_sample_c:.1f} °C, alarm {run.alarm!r}")
    assert run.alarm == "OVERSHOOT"


async def test_envelope_and_states(vclock: VirtualClock) -> None:
    model = ThawModel(vclock)
    with pytest.raises(DeviceBusyError):
        model.call("start", ["standard"])  # no bag
    with pytest.raises(DeviceBusyError):
        model.call("unload_bag", [])
    with pytest.raises(OutOfRangeError):
        model.call("load_bag", [1000.0, -150.0])
    with pytest.raises(OutOfRangeError):
        model.call("load_bag", [50.0, -250.0])
    with pytest.raises(OutOfRangeError):
        model.call("load_bag", [50.0])
    model.call("load_bag", [50.0, -150.0])
    assert model.read("bag_loaded") is True and model.read("fill_volume_ml") == 50.0
    with pytest.raises(OutOfRangeError):
        model.call("start", ["fast"])
    with pytest.raises(OutOfRangeError):
        model.start("fast")
    with pytest.raises(UnknownTagError):
        model.read("lid")
    with pytest.raises(UnknownTagError):
        model.call("eject", [])
    with pytest.raises(UnknownTagError):
        model.write("lid", True)
    with pytest.raises(OutOfRangeError):
        model.write("plate_temperature", 37.0)
    model.call("start", ["standard"])
    await vclock.sleep(60)
    assert model.read("status") == "busy"
    for method, args in (("start", ["standard"]), ("load_bag", [50.0, -150.0])):
        with pytest.raises(DeviceBusyError):
            model.call(method, args)
    with pytest.raises(DeviceBusyError):
        model.call("unload_bag", [])
    model.call("stop", [])
    assert model.read("program_state") == "stopped" and model.read("plate_sp") == 4.0
    model.call("start", ["standard"])
    model.call("abort", [])
    assert model.read("program_state") == "aborted" and model.read("status") == "idle"
    [temperature] = model.call("unload_bag", [])
    assert isinstance(temperature, float) and temperature < 0.0
    assert model.read("bag_loaded") is False and model.read("fill_volume_ml") == 0.0


_ACTIONS = st.one_of(
    st.tuples(st.just("sleep"), st.floats(0.0, 1800.0)),
    st.tuples(st.just("load_bag"), st.floats(0.0, 300.0), st.floats(-200.0, 30.0)),
    st.tuples(st.just("start"), st.sampled_from(["standard", "fast"])),
    st.tuples(st.sampled_from(["stop", "abort", "unload_bag"])),
)


def _check_invariants(model: ThawModel) -> None:
    values: dict[str, Value] = {tag: model.read(tag) for tag in model.tags()}
    for tag, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), tag
    for tag in ("plate_temperature", "sample_temperature"):
        value = values[tag]
        assert isinstance(value, float) and -200.0 <= value <= 60.0, (tag, value)
    volume = values["fill_volume_ml"]
    assert isinstance(volume, float) and volume >= 0.0
    assert values["program_state"] in PROGRAM_STATES
    assert values["status"] in STATUSES
    assert values["step_name"] in ("", *STEP_NAMES)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), actions=st.lists(_ACTIONS, max_size=14))
async def test_random_commands_keep_invariants(
    seed: int, actions: list[tuple[object, ...]]
) -> None:
    clock = VirtualClock()
    try:
        model = ThawModel(clock, seed=seed)
        await replay(model, clock, actions, lambda: _check_invariants(model))
    finally:
        await clock.aclose()
