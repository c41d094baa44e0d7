"""Cell processor twin: fidelity to domain.md 1.2, programs, errors, invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexctl.clock import VirtualClock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError
from simulators.models.cell_processor import (
    PROGRAMS,
    CellProcessorModel,
    min_intermediate_volume_ml,
)
from simulators.models.program import PROGRAM_STATES, STATUSES
from tests.model_replay import replay


async def _run(
    clock: VirtualClock, model: CellProcessorModel, args: list[Value], every_s: float = 60.0
) -> float:
    """Start a program with ``args`` (wire form) and wait for it; returns minutes."""
    model.call("start_program", args)
    start = clock.now()
    while model.read("program_state") == "running":
        await clock.sleep(every_s)
    assert model.read("program_state") == "complete"
    runtime = model.read("runtime_s")
    assert isinstance(runtime, float)
    assert runtime <= clock.now() - start
    return runtime / 60.0


async def test_harvest_recovery_between_85_and_95_percent(vclock: VirtualClock) -> None:
    print("\ncell processor culture_harvest, 1 L, defaults (FV 20, IV 20, RV 10 mL, 2 cycles):")
    for cells in (1e9, 2e9, 4e9):
        recoveries = []
        for seed in range(5):
            model = CellProcessorModel(vclock, seed=seed)
            model.call("load", [1000.0, cells, 95.0])
            minutes = await _run(vclock, model, ["culture_harvest", 20.0, 2, 1, 50.0])
            recovery = model.read("recovery_pct")
            assert isinstance(recovery, float)
            recoveries.append(recovery)
            assert model.read("output_volume_ml") == 20.0
            assert 30.0 <= minutes <= 90.0
        print(
            f"  {cells:.0e} cells: recovery {min(recoveries):.1f}-{max(recoveries):.1f} % "
            f"over seeds 0-4 ({minutes:.0f} min)"
        )
        assert all(85.0 <= r <= 95.0 for r in recoveries)
        assert all(r > 88.0 for r in recoveries)  # domain.md 1.2: > 88 % up to 4e9
    big = CellProcessorModel(vclock)
    big.load(1000.0, 1e10, 95.0)
    await _run(vclock, big, ["culture_harvest"])
    tuned = CellProcessorModel(vclock)
    iv = min_intermediate_volume_ml(1e10)
    tuned.write("intermediate_volume_ml", iv)
    tuned.load(1000.0, 1e10, 95.0)
    await _run(vclock, tuned, ["culture_harvest"])
    low, high = big.read("recovery_pct"), tuned.read("recovery_pct")
    assert isinstance(low, float) and isinstance(high, float)
    print(f"  1e10 cells: {low:.1f} % with IV 20 mL, {high:.1f} % with IV {iv:.0f} mL")
    assert 60.0 <= low <= 75.0 and high > 86.0  # domain.md 1.2: about 68 % -> > 86 %


async def test_programs_give_sane_volumes_and_counts(vclock: VirtualClock) -> None:
    print("\ncell processor programs (input volume, cells, viability -> output):")

    async def one(name: str, load: list[Value], args: list[Value]) -> CellProcessorModel:
        model = CellProcessorModel(vclock, seed=2)
        model.call("load", load)
        minutes = await _run(vclock, model, [name, *args])
        out = [model.read(t) for t in ("output_volume_ml", "output_cells", "output_viability")]
        print(
            f"  {name:16s} {load[0]:6.0f} mL {float(load[1]):.2e} {load[2]:.0f} % -> "
            f"{out[0]:6.1f} mL {float(out[1]):.2e} {float(out[2]):.1f} %, "
            f"recovery {model.read('recovery_pct'):.1f} %, {minutes:.0f} min"
        )
        assert 30.0 <= minutes <= 90.0
        assert model.read("program") == name
        return model

    iso = await one("isolation", [200.0, 1.0e10, 92.0], [40.0])
    assert iso.read("output_volume_ml") == 40.0
    cells = iso.read("output_cells")
    assert isinstance(cells, float) and 0.4e10 <= cells <= 0.6e10  # PBMC share of TNC

    wash = await one("wash", [150.0, 2e9, 90.0], [50.0, 3])
    assert wash.read("output_volume_ml") == 50.0
    recovery = wash.read("recovery_pct")
    assert isinstance(recovery, float) and 85.0 <= recovery < 100.0

    reduced = await one("volume_reduction", [1000.0, 3e9, 90.0], [50.0])
    assert reduced.read("output_volume_ml") == 50.0
    assert reduced.read("input_volume_ml") == 1000.0

    formulation = CellProcessorModel(vclock, seed=3)
    formulation.load(100.0, 5e9, 90.0)
    formulation.call("start_program", ["formulation", 999.0, 9, 4, 70.0])  # FV, cycles ignored
    filled = []
    while formulation.read("program_state") == "running":
        await vclock.sleep(30)
        filled.append(formulation.read("bags_filled"))
    assert filled == sorted(filled) and set(filled) >= {0, 1, 2, 3, 4}
    volume, bags = formulation.read("output_volume_ml"), formulation.read("bags_filled")
    out = float(formulation.read("output_cells"))
    print(
        f"  formulation       100 mL 5.00e+09 90 % -> {bags} bags, {volume:.0f} mL, "
        f"{out:.2e} cells, bags counted up {sorted(set(filled))}"
    )
    assert bags == 4 and volume == 280.0
    out_cells, out_ml, out_viability = formulation.call("unload", [])
    assert out_ml == 280.0 and isinstance(out_cells, float) and 4e9 < out_cells < 5e9
    assert isinstance(out_viability, float) and 85.0 < out_viability <= 90.0
    assert formulation.read("output_cells") == 0.0 and formulation.read("input_loaded") is False


async def test_viability_loss_per_spin_is_0_to_5_percent(vclock: VirtualClock) -> None:
    per_spin: list[float] = []
    for seed in range(10):
        model = CellProcessorModel(vclock, seed=seed)
        model.load(500.0, 2e9, 95.0)
        await _run(vclock, model, ["wash", 20.0, 4])
        result = model.last_result
        assert result is not None and result.spins == 4
        out = model.read("output_viability")
        assert isinstance(out, float)
        geometric = 1.0 - (out / 95.0) ** (1.0 / result.spins)
        assert 0.0 <= geometric <= 0.05
        per_spin += result.viability_loss_per_spin
    print(
        f"\ncell processor viability loss per spin over {len(per_spin)} spins: "
        f"{100 * min(per_spin):.2f}-{100 * max(per_spin):.2f} % "
        f"(mean {100 * sum(per_spin) / len(per_spin):.2f} %)"
    )
    assert all(0.0 <= loss <= 0.05 for loss in per_spin)


async def test_errors(vclock: VirtualClock) -> None:
    model = CellProcessorModel(vclock)
    for volume in (20.0, 3500.0):
        with pytest.raises(OutOfRangeError):
            model.call("load", [volume, 1e9, 90.0])
    with pytest.raises(OutOfRangeError):
        model.call("load", [100.0, -1.0, 90.0])
    with pytest.raises(OutOfRangeError):
        model.call("load", [100.0, 1e9, 101.0])
    with pytest.raises(DeviceBusyError):
        model.call("start_program", ["wash"])  # nothing loaded
    model.call("load", [100.0, 1e9, 90.0])
    with pytest.raises(OutOfRangeError):
        model.call("start_program", ["centrifuge"])
    with pytest.raises(OutOfRangeError):
        model.call("start_program", ["none"])
    with pytest.raises(OutOfRangeError):
        model.call("start_program", ["volume_reduction", 150.0])  # not a reduction
    with pytest.raises(OutOfRangeError):
        model.call("start_program", ["wash", 20.0, 9])
    with pytest.raises(OutOfRangeError):
        model.call("start_program", ["formulation", 20.0, 2, 8, 250.0])  # 2 L of product
    with pytest.raises(OutOfRangeError):
        model.write("intermediate_volume_ml", 5.0)
    with pytest.raises(OutOfRangeError):
        model.write("output_cells", 5.0)
    with pytest.raises(UnknownTagError):
        model.read("bowl_speed")
    with pytest.raises(UnknownTagError):
        model.write("bowl_speed", 1.0)
    with pytest.raises(UnknownTagError):
        model.call("spin", [])
    model.call("start_program", ["wash", 20.0, 2])
    assert model.read("status") == "busy" and model.read("step_name") == "prime"
    with pytest.raises(DeviceBusyError):
        model.call("start_program", ["wash", 20.0, 2])
    for action in (
        lambda: model.call("load", [100.0, 1e9, 90.0]),
        lambda: model.call("unload", []),
        lambda: model.write("rinse_volume_ml", 20.0),
    ):
        with pytest.raises(DeviceBusyError):
            action()
    await vclock.sleep(20 * 60)
    assert model.read("step_name") in ("wash_1", "wash_2")
    model.call("abort", [])
    assert model.read("program_state") == "aborted"
    assert model.call("unload", []) == [0.0, 0.0, 0.0]


_ACTIONS = st.one_of(
    st.tuples(st.just("sleep"), st.floats(0.0, 7200.0)),
    st.tuples(st.just("load"), st.floats(0.0, 4000.0), st.floats(0.0, 2e10), st.floats(0.0, 100.0)),
    st.tuples(
        st.just("start_program"),
        st.sampled_from(PROGRAMS),
        st.floats(0.0, 1200.0),
        st.integers(0, 5),
        st.integers(0, 9),
        st.floats(0.0, 300.0),
    ),
    st.tuples(st.sampled_from(["abort", "unload"])),
    st.tuples(st.just("iv"), st.floats(0.0, 250.0)),
)


def _check_invariants(model: CellProcessorModel) -> None:
    values: dict[str, Value] = {tag: model.read(tag) for tag in model.tags()}
    for tag, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), tag
            assert value >= 0.0, (tag, value)
    for tag in ("input_viability", "output_viability"):
        value = values[tag]
        assert isinstance(value, float) and value <= 100.0
    bags = values["bags_filled"]
    assert isinstance(bags, int) and 0 <= bags <= 8
    assert values["program_state"] in PROGRAM_STATES
    assert values["status"] in STATUSES
    assert values["program"] in PROGRAMS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), actions=st.lists(_ACTIONS, max_size=14))
async def test_random_commands_keep_invariants(
    seed: int, actions: list[tuple[object, ...]]
) -> None:
    clock = VirtualClock()
    try:
        model = CellProcessorModel(clock, seed=seed)
        await replay(
            model,
            clock,
            actions,
            lambda: _check_invariants(model),
            writes={"iv": "intermediate_volume_ml"},
        )
    finally:
        await clock.aclose()
