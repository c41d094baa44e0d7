"""CellProcessor driver against its twin over every transport, in virtual time.

Parametrised over OPC UA, Modbus TCP, Modbus RTU (pty) and serial (pty); each
test drives the real twin (simulators/models/cell_processor.py) through the
shipped ``cell_processor.*`` profiles and the real wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from drivers.base import DeviceStatus, ProgramState, SafeAction
from drivers.cell_processor import CellProcessor, ProcessProgram, ProcessResult
from flexctl.clock import VirtualClock
from flexctl.errors import (
    ConditionTimeout,
    ConfigurationError,
    DeviceBusyError,
    OutOfRangeError,
    ProgramAborted,
    ProtocolError,
)
from flexctl.profile import Value
from flexctl.resources import shipped_profile
from flexctl.transports.base import ConnectionState, TransportOptions
from flexctl.transports.registry import create_transport
from flexctl.twins import FAMILY, KINDS, Pair, twin_pair
from simulators.models.cell_processor import CellProcessorModel, min_intermediate_volume_ml

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
# The code each protocol answers a model's refusal with, and the one the error fault returns.
REFUSED_CODE = {"opcua": 0x803C0000, "modbus-tcp": 3, "modbus-rtu": 3, "serial": 3}
# How long (wall) a test may wait for a link to come back; never a sleep.
MIN = 60.0
# Modbus carries volumes and percentages as float32.
REL = 1e-6

pytestmark = pytest.mark.parametrize("kind", KINDS)


@asynccontextmanager
async def processor(
    kind: str, clock: VirtualClock, seed: int = 0
) -> AsyncIterator[tuple[CellProcessor, CellProcessorModel, Pair]]:
    model = CellProcessorModel(clock, seed)
    async with twin_pair(kind, model, clock, device="cell_processor", options=OPTIONS) as pair:
        yield CellProcessor("processor", pair.transport, clock), model, pair


def state_of(model: CellProcessorModel) -> dict[str, Value]:
    """Everything the model shows, read in-process (no wire)."""
    return {tag: model.read(tag) for tag in sorted(model.tags())}


def check_runtime(result: ProcessResult) -> None:
    assert 30 * MIN <= result.runtime_s <= 90 * MIN  # domain.md 1.2: 30-90 min per protocol


# -- the device's operations ---------------------------------------------------------


async def test_harvest_recovers_85_to_95_percent(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock, seed=3) as (cp, model, _):
        print(f"\n{kind}: culture_harvest of 1 L at 95 % (FV 20, IV 20, RV 10 mL, 2 cycles)")
        recoveries = []
        for cells in (1e9, 2e9, 4e9):
            await cp.load_input(1000.0, cells, 95.0)
            bag = await cp.input_bag()
            assert (bag.volume_ml, bag.cells, bag.viability_pct, bag.loaded) == (
                1000.0,
                cells,
                95.0,
                True,
            )
            result = await cp.culture_harvest()
            print(
                f"  {cells:.0e} cells -> {result.output_cells:.3e} in "
                f"{result.output_volume_ml:g} mL, recovery {result.recovery_pct:.1f} %, "
                f"viability {result.output_viability_pct:.1f} %, "
                f"{result.runtime_s / MIN:.0f} min"
            )
            assert result.program == "culture_harvest"
            assert result.input_cells == cells
            assert 85.0 <= result.recovery_pct <= 95.0
            assert result.output_volume_ml == pytest.approx(20.0)
            # recovery is what the output holds of the input
            assert result.output_cells == pytest.approx(cells * result.recovery_pct / 100, rel=1e-4)
            # three spins cost 0-5 % viability each
            assert 95.0 * 0.95**3 <= result.output_viability_pct < 95.0
            check_runtime(result)
            recoveries.append(result.recovery_pct)
            output = await cp.unload()
            assert output.cells == result.output_cells
            assert output.volume_ml == pytest.approx(20.0)
            assert output.viability_pct == pytest.approx(result.output_viability_pct, rel=REL)
            assert (await cp.input_bag()).loaded is False
            assert model.read("output_cells") == 0.0  # handed over
        assert recoveries[0] > recoveries[2]  # a bigger pellet resuspends less well


async def test_formulation_fills_the_asked_number_of_bags(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock, seed=1) as (cp, _, _):
        await cp.load_input(100.0, 3e9, 92.0)
        await cp.start_program(ProcessProgram.FORMULATION, bag_count=4, bag_volume_ml=50.0)
        filled = await cp.wait_bags_filled(2, poll=MIN)
        partial = await cp.result()
        program = await cp.program()
        assert 2 <= filled < 4
        assert program.state is ProgramState.RUNNING and program.step_name == "fill"
        assert partial.output_volume_ml == pytest.approx(50.0 * filled)
        assert await cp.wait_program_done(within=3600.0) is ProgramState.COMPLETE
        result = await cp.result()
        print(
            f"\n{kind}: formulation of 3e9 cells in 100 mL into 4 x 50 mL: "
            f"{result.bags_filled} bags, {result.output_volume_ml:g} mL, "
            f"{result.output_cells:.3e} cells ({result.recovery_pct:.1f} %)"
        )
        assert result.bags_filled == 4
        assert result.output_volume_ml == pytest.approx(200.0)
        assert 85.0 <= result.recovery_pct < 100.0
        check_runtime(result)
        await cp.unload()

        await cp.load_input(60.0, 1.5e9, 90.0)
        result = await cp.formulation(3, 100.0)
        print(f"  formulation into 3 x 100 mL: {result.bags_filled} bags")
        assert result.bags_filled == 3
        assert result.output_volume_ml == pytest.approx(300.0)
        output = await cp.unload()
        assert output.volume_ml == pytest.approx(300.0)


async def test_isolation_wash_and_volume_reduction(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock, seed=2) as (cp, _, _):
        # an apheresis product: the gradient keeps the mononuclear cells and drops dead ones
        await cp.load_input(300.0, 1e10, 80.0)
        iso = await cp.isolation(final_volume_ml=50.0)
        print(
            f"\n{kind}: isolation 1e10 at 80 % -> {iso.output_cells:.2e} at "
            f"{iso.output_viability_pct:.1f} % ({iso.recovery_pct:.1f} %)"
        )
        assert iso.output_volume_ml == pytest.approx(50.0)
        assert 35.0 < iso.recovery_pct < 56.0  # 70 % MNC x 80 % banding, less the spins
        assert iso.output_viability_pct > 80.0  # dead cells pellet through the Ficoll
        check_runtime(iso)
        await cp.unload()

        await cp.load_input(500.0, 2e9, 90.0)
        washed = await cp.wash(cycles=3, final_volume_ml=50.0)
        print(f"  wash x3 -> {washed.output_volume_ml:g} mL, {washed.recovery_pct:.1f} %")
        assert washed.output_volume_ml == pytest.approx(50.0)
        assert 85.0 < washed.recovery_pct < 100.0
        assert washed.output_viability_pct < 90.0
        check_runtime(washed)
        await cp.unload()

        await cp.load_input(800.0, 1e9, 90.0)
        reduced = await cp.volume_reduction(100.0)
        print(
            f"  volume_reduction 800 -> {reduced.output_volume_ml:g} mL, "
            f"{reduced.recovery_pct:.1f} %"
        )
        assert reduced.output_volume_ml == pytest.approx(100.0)
        assert 85.0 < reduced.recovery_pct < 100.0
        check_runtime(reduced)
        await cp.unload()


async def test_intermediate_volume_rescues_a_large_pellet(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        await cp.load_input(1000.0, 1e10, 95.0)
        standard = await cp.culture_harvest()
        await cp.unload()
        iv = round(min_intermediate_volume_ml(1e10), 1)
        assert await cp.set_intermediate_volume(iv) == pytest.approx(iv, rel=REL)
        assert model.read("intermediate_volume_ml") == pytest.approx(iv, rel=REL)
        assert await cp.set_rinse_volume(20.0) == pytest.approx(20.0)
        await cp.load_input(1000.0, 1e10, 95.0)
        tuned = await cp.culture_harvest()
        print(
            f"\n{kind}: 1e10 cells: {standard.recovery_pct:.1f} % with IV 20 mL, "
            f"{tuned.recovery_pct:.1f} % with IV {iv:g} mL, RV 20 mL"
        )
        assert 60.0 <= standard.recovery_pct <= 75.0  # domain.md 1.2: about 68 %
        assert tuned.recovery_pct > 86.0  # ... rising to > 86 % with optimised IV/RV


# -- limits, waits, program state ------------------------------------------------------


async def test_out_of_envelope_is_refused_before_sending(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        refused_loads = [
            (20.0, 1e9, 95.0),  # below the 30 mL the kit can draw
            (3500.0, 1e9, 95.0),  # above 3 L
            (1000.0, 2e12, 95.0),
            (1000.0, -1.0, 95.0),
            (1000.0, 1e9, 101.0),
        ]
        before, requests = state_of(model), vclock.requests
        for load in refused_loads:
            with pytest.raises(OutOfRangeError):
                await cp.load_input(*load)
        with pytest.raises(OutOfRangeError):
            await cp.set_intermediate_volume(5.0)
        with pytest.raises(OutOfRangeError):
            await cp.set_rinse_volume(60.0)
        assert vclock.requests == requests
        assert state_of(model) == before

        await cp.load_input(1000.0, 2e9, 95.0)
        before, requests = state_of(model), vclock.requests
        harvest = ProcessProgram.CULTURE_HARVEST
        with pytest.raises(OutOfRangeError, match="final_volume_ml"):
            await cp.start_program(harvest, final_volume_ml=5.0)
        with pytest.raises(OutOfRangeError, match="final_volume_ml"):
            await cp.run_program(ProcessProgram.WASH, final_volume_ml=1500.0)
        for cycles in (0, 5):
            with pytest.raises(OutOfRangeError, match="cycles"):
                await cp.culture_harvest(cycles=cycles)
        with pytest.raises(OutOfRangeError, match="bag_count"):
            await cp.formulation(9, 50.0)
        with pytest.raises(OutOfRangeError, match="bag_volume_ml"):
            await cp.formulation(2, 300.0)
        with pytest.raises(OutOfRangeError, match="exceeds 1000 mL"):
            await cp.formulation(5, 250.0)
        with pytest.raises(OutOfRangeError, match="unknown program"):
            await cp.start_program("centrifuge")
        assert vclock.requests == requests
        assert state_of(model) == before
        assert model.read("input_loaded") is True and model.read("program_state") == "stopped"


async def test_program_state_running_to_complete(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        idle = await cp.program()
        assert idle.state is ProgramState.STOPPED and idle.step_number == 0
        await cp.load_input(1000.0, 2e9, 95.0)
        start = vclock.now()
        await cp.start_program(ProcessProgram.CULTURE_HARVEST)
        program = await cp.program()
        assert program.state is ProgramState.RUNNING
        assert (program.step_name, program.step_number) == ("prime", 1)
        assert program.runtime_s == 0.0
        assert await cp.status() is DeviceStatus.BUSY
        assert (await cp.get("program")) == "culture_harvest"

        await vclock.sleep(20 * MIN)  # prime takes 15 min, then 1 L loads at 120 mL/min
        program = await cp.program()
        assert (program.step_name, program.step_number) == ("load_input", 2)
        assert program.runtime_s == pytest.approx(20 * MIN, abs=1.0)
        await vclock.sleep(10 * MIN)
        program = await cp.program()
        assert (program.step_name, program.step_number) == ("concentrate", 3)
        assert (await cp.result()).output_cells == 0.0  # published at completion only

        assert await cp.wait_program_done(within=2 * 3600.0, poll=MIN) is ProgramState.COMPLETE
        done = await cp.program()
        assert model.last_result is not None
        steps = model.last_result.steps
        assert (done.step_name, done.step_number) == ("transfer", len(steps))
        assert done.runtime_s == pytest.approx(model.last_result.duration_s, abs=0.01)
        assert vclock.now() - start < done.runtime_s + MIN + 1.0  # noticed within one poll
        assert await cp.status() is DeviceStatus.IDLE
        await vclock.sleep(10 * MIN)
        assert (await cp.program()).runtime_s == done.runtime_s  # frozen at the end
        assert await cp.alarm() == ""


async def test_set_and_wait_and_condition_timeouts(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        assert await cp.set_intermediate_volume(35.0) == 35.0
        assert model.read("intermediate_volume_ml") == 35.0
        # the profile's tolerance is the default band
        assert await cp.set_and_wait(
            "rinse_volume_ml", 12.5, readback="rinse_volume_ml", within=10.0
        ) == pytest.approx(12.5)

        await cp.load_input(1000.0, 2e9, 95.0)
        start = vclock.now()
        with pytest.raises(ConditionTimeout) as caught:
            await cp.culture_harvest(within=10 * MIN, poll=MIN)
        assert caught.value.timeout == 10 * MIN
        assert vclock.now() - start == pytest.approx(10 * MIN)
        assert model.read("program_state") == "running"  # a timeout does not stop the device
        with pytest.raises(ConditionTimeout):
            await cp.wait_bags_filled(1, within=5 * MIN)  # a harvest fills no bags
        await cp.abort()
        assert model.read("program_state") == "aborted"


async def test_busy_device_is_device_busy_error(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        with pytest.raises(DeviceBusyError):  # no input bag
            await cp.start_program(ProcessProgram.WASH)
        await cp.load_input(1000.0, 2e9, 95.0)
        await cp.start_program(ProcessProgram.WASH)
        with pytest.raises(DeviceBusyError):
            await cp.load_input(500.0, 1e9, 90.0)
        with pytest.raises(DeviceBusyError):
            await cp.set_intermediate_volume(30.0)
        with pytest.raises(DeviceBusyError):
            await cp.start_program(ProcessProgram.CULTURE_HARVEST)
        with pytest.raises(DeviceBusyError):
            await cp.unload()
        assert model.read("intermediate_volume_ml") == 20.0
        assert model.read("program") == "wash"
        assert cp.transport.state is ConnectionState.CONNECTED
        await cp.abort()


# -- safe state ----------------------------------------------------------------------


async def test_hold_lets_the_running_program_finish(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model, pair):
        await cp.load_input(1000.0, 2e9, 95.0)
        await cp.start_program(ProcessProgram.CULTURE_HARVEST)
        await vclock.sleep(30 * MIN)  # mid-program: spinning
        requests = vclock.requests
        await cp.safe_state(SafeAction.HOLD)
        assert vclock.requests == requests  # nothing sent
        assert model.read("program_state") == "running"
        # HOLD sends nothing, so it holds even when the device does not answer
        pair.server.faults.stall = True
        await cp.safe_state(SafeAction.HOLD)
        pair.server.faults.clear()
        assert cp.transport.state is ConnectionState.CONNECTED
        assert await cp.wait_program_done(within=3600.0, poll=MIN) is ProgramState.COMPLETE
        result = await cp.result()
        assert 85.0 <= result.recovery_pct <= 95.0  # the product made it to the bag


async def test_abort_stops_the_program_and_run_program_says_so(
    kind: str, vclock: VirtualClock
) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        await cp.load_input(1000.0, 2e9, 95.0)
        run = asyncio.create_task(cp.culture_harvest(poll=MIN))
        await vclock.sleep(20 * MIN)
        assert model.read("program_state") == "running"
        await cp.safe_state(SafeAction.ABORT)
        with pytest.raises(ProgramAborted, match="load_input"):
            await run
        program = await cp.program()
        assert program.state is ProgramState.ABORTED
        assert program.step_name == "load_input"
        assert program.runtime_s == pytest.approx(20 * MIN, abs=1.0)
        result = await cp.result()
        assert (result.output_cells, result.bags_filled) == (0.0, 0)  # cells stay in the kit
        assert await cp.status() is DeviceStatus.IDLE
        await cp.safe_state(SafeAction.ABORT)  # nothing running: no effect, no error
        assert model.read("program_state") == "aborted"
        output = await cp.unload()
        assert output.cells == 0.0


# -- describe --------------------------------------------------------------------------


async def test_describe_lists_signals_and_commands(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, _, pair):
        info = cp.describe()
        assert info["kind"] == "cell_processor"
        assert info["profile"] == f"cell_processor.{FAMILY[kind]}"
        assert info["source"] == pair.server.endpoint
        signals = info["signals"]
        assert set(CellProcessor.required_signals) <= set(signals)
        assert signals["input_volume_ml"]["unit"] == "mL"
        assert signals["input_volume_ml"]["limits"] == [30.0, 3000.0]
        assert signals["input_cells"]["limits"] == [0.0, 1e12]
        assert signals["intermediate_volume_ml"]["writable"] is True
        assert signals["intermediate_volume_ml"]["limits"] == [10.0, 200.0]
        assert signals["output_cells"]["writable"] is False
        assert signals["program_state"]["enum"] == ["stopped", "running", "complete", "aborted"]
        assert signals["program"]["enum"][1:] == [p.value for p in ProcessProgram]
        commands = info["commands"]
        assert commands["load"]["args"] == ["volume_ml", "cells", "viability_pct"]
        assert commands["start_program"]["args"] == [
            "program",
            "final_volume_ml",
            "cycles",
            "bag_count",
            "bag_volume_ml",
        ]
        assert commands["abort"]["args"] == commands["unload"]["args"] == []
        # a profile for another device cannot drive a cell processor
        demo = create_transport(
            shipped_profile(f"demo.{FAMILY[kind]}"), pair.server.endpoint, clock=vclock
        )
        with pytest.raises(ConfigurationError, match="cannot drive a cell_processor"):
            CellProcessor("wrong", demo, vclock)


# -- faults of the servers, seen from the driver ----------------------------------------


async def test_device_refusal_is_a_protocol_error_with_the_code(
    kind: str, vclock: VirtualClock
) -> None:
    async with processor(kind, vclock) as (cp, model, _):
        await cp.load_input(100.0, 1e9, 90.0)
        # within the envelope, but a volume reduction must end below its input: the device says no
        with pytest.raises(ProtocolError) as caught:
            await cp.volume_reduction(150.0)
        assert caught.value.code == REFUSED_CODE[kind]
        assert model.read("program_state") == "stopped"
        assert model.read("input_loaded") is True
        assert cp.transport.state is ConnectionState.CONNECTED
        result = await cp.volume_reduction(50.0, poll=MIN)
        assert result.output_volume_ml == pytest.approx(50.0)
