"""Driver.recover against the twins, over every transport, on a virtual clock.

After a supervisor crash the journal shows a command sent without its result;
``recover`` must say from device reads alone whether it took effect: what the
method would have returned (``Recovered``), ``None`` (send it again), or
``CannotTell``. Each overridden method is checked (a) never sent, (b) sent and
done, (c) where the method waits, sent and still running, and (d) where the
device cannot tell. Every recover call here fails if it sends a command or
writes a setpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from drivers.base import CannotTell, Driver, ProgramState, Recovered
from drivers.bioreactor import Bioreactor
from drivers.cell_processor import PROGRAM_POLL_S, CellProcessor, ProcessProgram, ProcessResult
from drivers.freezer import Freezer, Segment
from drivers.thaw import ThawDevice
from flexctl.clock import VirtualClock
from flexctl.errors import ConditionTimeout, ProgramAborted
from flexctl.profile import Value
from flexctl.transports.base import TransportOptions
from flexctl.twins import KINDS, twin_pair
from simulators.models.bioreactor import BioreactorModel
from simulators.models.cell_processor import CellProcessorModel
from simulators.models.freezer import FreezerModel
from simulators.models.thaw import ThawModel

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
MIN = 60.0
HOUR = 3600.0
DAY = 86400.0

pytestmark = pytest.mark.parametrize("kind", KINDS)


async def recover(
    driver: Driver, method: str, args: Mapping[str, Value] | None = None
) -> Recovered | None:
    """``driver.recover``, failing the test if it sends a command or writes a signal."""
    sent: list[str] = []

    async def call(command: Any, values: Any = ()) -> list[Value]:
        sent.append(f"command {command.name}")
        raise AssertionError(f"recover sent {command.name}")

    async def write(address: Any, value: Any) -> None:
        sent.append(f"write {address.name}")
        raise AssertionError(f"recover wrote {address.name}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver.transport, "call", call)
        patch.setattr(driver.transport, "write", write)
        result = await driver.recover(method, args or {})
    assert sent == []
    return result


# -- rigs -------------------------------------------------------------------------------


@asynccontextmanager
async def bioreactor(
    kind: str, clock: VirtualClock, seed: int = 3
) -> AsyncIterator[tuple[Bioreactor, BioreactorModel]]:
    model = BioreactorModel(clock, seed=seed)
    async with twin_pair(kind, model, clock, device="bioreactor", options=OPTIONS) as pair:
        yield Bioreactor("bioreactor", pair.transport, clock), model


@asynccontextmanager
async def processor(
    kind: str, clock: VirtualClock, seed: int = 0
) -> AsyncIterator[tuple[CellProcessor, CellProcessorModel]]:
    model = CellProcessorModel(clock, seed)
    async with twin_pair(kind, model, clock, device="cell_processor", options=OPTIONS) as pair:
        yield CellProcessor("processor", pair.transport, clock), model


@asynccontextmanager
async def thaw_device(
    kind: str, clock: VirtualClock
) -> AsyncIterator[tuple[ThawDevice, ThawModel]]:
    model = ThawModel(clock, seed=1)
    async with twin_pair(kind, model, clock, device="thaw", options=OPTIONS) as pair:
        yield ThawDevice("thaw", pair.transport, clock), model


@asynccontextmanager
async def freezer(kind: str, clock: VirtualClock) -> AsyncIterator[tuple[Freezer, FreezerModel]]:
    model = FreezerModel(clock, seed=1)
    async with twin_pair(kind, model, clock, device="freezer", options=OPTIONS) as pair:
        yield Freezer("freezer", pair.transport, clock), model


# -- bioreactor -------------------------------------------------------------------------

SEED: dict[str, Value] = {"viable_cells": 2.5e8, "volume_ml": 500.0, "viability_pct": 92.0}


async def test_bioreactor_seed(kind: str, vclock: VirtualClock) -> None:
    async with bioreactor(kind, vclock) as (br, model):
        # (a) the bag is empty: the seed never landed, seeding again is safe
        assert await recover(br, "seed", SEED) is None
        # (b) seeded: the culture of that volume is in the bag
        await br.seed(2.5e8, 500.0, 92.0)  # returns None
        await vclock.sleep(HOUR)  # the restart may come later; the culture stays
        assert await recover(br, "seed", SEED) == Recovered(None)
        assert model.harvest_count == 0 and model.culture.volume_ml == pytest.approx(500.0)
        # (d) a culture of another volume is not this seed's
        with pytest.raises(CannotTell, match=r"holds 50\d\.\d mL .* not the 1000 mL"):
            await recover(br, "seed", {**SEED, "volume_ml": 1000.0})
        # a harvested bag is empty again: a new seed did not land
        await br.harvest()
        assert await recover(br, "seed", SEED) is None
        # a journaled call without the volume cannot be judged
        with pytest.raises(CannotTell, match="volume_ml"):
            await recover(br, "seed", {"viable_cells": 2.5e8})


async def test_bioreactor_harvest(kind: str, vclock: VirtualClock) -> None:
    async with bioreactor(kind, vclock) as (br, model):
        # (a) never harvested, empty bag: nothing drained (the device refuses it as before)
        assert await recover(br, "harvest") is None
        await br.seed(2.5e8, 500.0, 92.0)
        await br.start_rocking()
        await vclock.sleep(DAY)
        await br.stop_rocking()
        # (a) culture in the bag: not drained
        assert await recover(br, "harvest") is None
        assert model.harvest_count == 0
        # (b) drained: the figures the harvest returned, read back from the device
        product = await br.harvest()
        assert product.number == 1 and not product.recovered
        recovered = await recover(br, "harvest", {"recover_within": 5.0})
        assert recovered == Recovered(dataclasses.replace(product, recovered=True))
        assert model.harvest_count == 1  # nothing was harvested again


async def test_bioreactor_harvest_of_a_second_culture(kind: str, vclock: VirtualClock) -> None:
    """The count grows over cultures; recovery reads the last one, not the first."""
    async with bioreactor(kind, vclock) as (br, model):
        await br.seed(2.5e8, 500.0, 92.0)
        first = await br.harvest()
        await br.seed(3e8, 600.0, 95.0)
        await vclock.sleep(HOUR)
        assert await recover(br, "harvest") is None
        second = await br.harvest()
        assert (first.number, second.number) == (1, 2)
        recovered = await recover(br, "harvest")
        assert recovered == Recovered(dataclasses.replace(second, recovered=True))
        assert recovered.result.volume_ml == pytest.approx(600.0)
        assert model.harvest_count == 2


async def test_bioreactor_start_rocking_and_perfusion(kind: str, vclock: VirtualClock) -> None:
    async with bioreactor(kind, vclock) as (br, model):
        await br.seed(2.5e8, 500.0, 92.0)
        # (a) the device refuses a second start_rocking, so recover reads the rocker
        assert await recover(br, "start_rocking") is None
        # (b)
        await br.start_rocking()
        assert await recover(br, "start_rocking") == Recovered(None)
        # start_perfusion is refused while perfusing, too
        assert await recover(br, "start_perfusion", {"rate_ml_per_day": 500.0}) is None
        await br.start_perfusion(500.0)
        assert await recover(br, "start_perfusion", {"rate_ml_per_day": 500.0}) == Recovered()
        # perfusing at another rate: this start did not land (the device refused it)
        assert await recover(br, "start_perfusion", {"rate_ml_per_day": 750.0}) is None
        assert model.read("perfusing") is True


async def test_bioreactor_resendable_and_unknown(kind: str, vclock: VirtualClock) -> None:
    async with bioreactor(kind, vclock) as (br, _):
        for method, args in (
            ("set_temperature", {"celsius": 37.0}),
            ("set_rocking", {"rate_rpm": 15.0, "angle_deg": 6.0}),
            ("stop_rocking", {}),
            ("stop_perfusion", {}),
            ("perfuse", {"rate_ml_per_day": 500.0}),
            ("sample", {"volume_ml": 1.0}),
            ("abort", {}),
        ):
            assert method in Bioreactor.resendable
            assert await recover(br, method, args) is None, method
        # a feed adds medium twice if resent, and the device cannot say if it landed
        with pytest.raises(CannotTell, match="feed"):
            await recover(br, "feed", {"volume_ml": 50.0})


# -- cell processor ---------------------------------------------------------------------

# A harvest bag's figures, as the batch computes them (not round in float32).
CELLS = 8.5e9 * 100 / 94.3
LOAD: dict[str, Value] = {"volume_ml": 987.6, "cells": CELLS, "viability_pct": 94.3}
HARVEST: dict[str, Value] = {"final_volume_ml": 50.0, "cycles": 2}


async def load(cp: CellProcessor) -> None:
    await cp.load_input(987.6, CELLS, 94.3)


async def culture_harvest(cp: CellProcessor) -> ProcessResult:
    return await cp.culture_harvest(final_volume_ml=50.0, cycles=2)


async def test_processor_load_input(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model):
        # (a) nothing loaded
        assert await recover(cp, "load_input", LOAD) is None
        # (b) loaded with these figures
        await load(cp)  # returns None
        assert await recover(cp, "load_input", LOAD) == Recovered(None)
        # (d) another bag is loaded
        with pytest.raises(CannotTell, match="another bag"):
            await recover(cp, "load_input", {**LOAD, "cells": 2e9})
        # a program drew the input in: no input waits, the load is not this one's
        await cp.start_program(ProcessProgram.CULTURE_HARVEST, final_volume_ml=50.0)
        assert await recover(cp, "load_input", LOAD) is None
        assert model.program.running


async def test_processor_program_never_started(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, _):
        # (a) no input at all: the device would refuse the start, as it did
        assert await recover(cp, "culture_harvest", HARVEST) is None
        # (a) the input waits unprocessed: no program started on it
        await load(cp)
        assert await recover(cp, "culture_harvest", HARVEST) is None
        assert await recover(cp, "start_program", {"program": "culture_harvest"}) is None
        # after a program, unload and a new load: the new input waits, the old run is stale
        await culture_harvest(cp)
        await cp.unload()
        await cp.load_input(60.0, 2e9, 90.0)
        assert await recover(cp, "culture_harvest", HARVEST) is None
        assert await recover(cp, "formulation", {"bag_count": 2, "bag_volume_ml": 50.0}) is None


async def test_processor_program_complete(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, _):
        # (b) the program ran to its end: its result, read from the device
        await load(cp)
        returned = await culture_harvest(cp)
        now = vclock.now()
        assert await recover(cp, "culture_harvest", HARVEST) == Recovered(returned)
        assert vclock.now() == now  # nothing to wait for
        start: dict[str, Value] = {"program": "culture_harvest", **HARVEST}
        assert await recover(cp, "start_program", start) == Recovered()
        # (d) complete, but with another final volume: another run of it
        with pytest.raises(CannotTell, match="not the 20 mL"):
            await recover(cp, "culture_harvest", {"final_volume_ml": 20.0})
        # (d) the input went into another program
        with pytest.raises(CannotTell, match=r"program culture_harvest .* not wash"):
            await recover(cp, "wash", {"cycles": 2})
        # (b) formulation: bags and volume must match too
        await cp.unload()
        await cp.load_input(100.0, 3e9, 92.0)
        formulated = await cp.formulation(2, 50.0)
        args = {"bag_count": 2, "bag_volume_ml": 50.0}
        assert await recover(cp, "formulation", args) == Recovered(formulated)
        assert await recover(cp, "run_program", {"program": "formulation", **args}) == Recovered(
            formulated
        )
        with pytest.raises(CannotTell, match="2 bag"):
            await recover(cp, "formulation", {"bag_count": 4, "bag_volume_ml": 50.0})


async def _crash_while_running(cp: CellProcessor) -> None:
    """The supervisor sends culture_harvest and dies 100 s into the program (between polls)."""
    task = asyncio.get_running_loop().create_task(culture_harvest(cp))
    await cp.clock.sleep(100.0)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_processor_program_running_is_waited_for(kind: str, vclock: VirtualClock) -> None:
    # What an uninterrupted run on the same twin returns.
    reference_clock = VirtualClock()
    try:
        async with processor(kind, reference_clock, seed=5) as (ref, _):
            await load(ref)
            expected = await culture_harvest(ref)
    finally:
        await reference_clock.aclose()

    async with processor(kind, vclock, seed=5) as (cp, model):
        await load(cp)
        await _crash_while_running(cp)
        assert model.program.running
        restarted = CellProcessor("processor", cp.transport, vclock)
        # start_program returns at its start: done, no wait
        now = vclock.now()
        assert await recover(restarted, "start_program", {"program": "culture_harvest"}) == (
            Recovered()
        )
        assert vclock.now() == now
        # (c) culture_harvest waits for the program's end, as the method would
        recovered = await recover(restarted, "culture_harvest", HARVEST)
        assert recovered == Recovered(expected)
        assert model.read("program_state") == "complete"
        assert vclock.now() - model.program.started_at == pytest.approx(
            expected.runtime_s, abs=PROGRAM_POLL_S
        )


async def test_processor_wait_keeps_the_methods_deadline(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model):
        await load(cp)
        await _crash_while_running(cp)
        # within counts from the program's start (the device's runtime), not from recover
        with pytest.raises(ConditionTimeout):
            await recover(cp, "culture_harvest", {**HARVEST, "within": 20 * MIN, "poll": 60.0})
        assert vclock.now() - model.program.started_at == pytest.approx(20 * MIN, abs=60.0)
        assert model.program.running  # the program runs on, as after the method's timeout


async def test_processor_program_aborted(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, model):
        await load(cp)
        await _crash_while_running(cp)
        await vclock.sleep(10 * MIN)
        model.abort()  # a person aborts it at the device while the supervisor is down
        # (d) the program methods raise what they would have raised
        with pytest.raises(ProgramAborted, match="culture_harvest aborted"):
            await recover(cp, "culture_harvest", HARVEST)
        # start_program only starts: that landed
        assert await recover(cp, "start_program", {"program": "culture_harvest"}) == (Recovered())
        # aborted while recover waits: the same
        await load(cp)
        await _crash_while_running(cp)

        async def abort_later() -> None:
            await vclock.sleep(5 * MIN)
            model.abort()

        aborter = asyncio.get_running_loop().create_task(abort_later())
        with pytest.raises(ProgramAborted):
            await recover(cp, "culture_harvest", HARVEST)
        await aborter


async def test_processor_unload(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, _):
        await load(cp)
        await culture_harvest(cp)
        # (a) the product is still in the device
        assert await recover(cp, "unload") is None
        # (d) unloaded: the device clears the figures the unload returned
        await cp.unload()
        with pytest.raises(CannotTell, match="figures it returned are cleared"):
            await recover(cp, "unload")


async def test_processor_resendable_and_unknown(kind: str, vclock: VirtualClock) -> None:
    async with processor(kind, vclock) as (cp, _):
        assert await recover(cp, "set_intermediate_volume", {"volume_ml": 40.0}) is None
        assert await recover(cp, "abort") is None
        with pytest.raises(CannotTell, match="does not bind"):
            await recover(cp, "culture_harvest", {"final_volume": 20.0})


# -- thaw -------------------------------------------------------------------------------

BAG: dict[str, Value] = {"volume_ml": 100.0, "start_temperature_c": -150.0}


async def test_thaw_load_and_unload_bag(kind: str, vclock: VirtualClock) -> None:
    async with thaw_device(kind, vclock) as (thaw, model):
        # (a) no bag on the plate
        assert await recover(thaw, "twin_load_bag", BAG) is None
        # (b) the bag is on the plate
        await thaw.twin_load_bag(100.0, -150.0)  # returns None
        assert await recover(thaw, "twin_load_bag", BAG) == Recovered(None)
        # (d) a bag of another fill
        with pytest.raises(CannotTell, match="100 mL is on the plate"):
            await recover(thaw, "twin_load_bag", {**BAG, "volume_ml": 50.0})
        # unload: (a) the bag is still there, (b) gone, with its temperature
        assert await recover(thaw, "twin_unload_bag") is None
        await vclock.sleep(5 * MIN)
        temperature = await thaw.twin_unload_bag()
        recovered = await recover(thaw, "twin_unload_bag")
        assert recovered is not None
        assert recovered.result == pytest.approx(temperature, abs=0.1)
        assert model.read("bag_loaded") is False


async def test_thaw_start(kind: str, vclock: VirtualClock) -> None:
    async with thaw_device(kind, vclock) as (thaw, _):
        # (a) no bag: the device refuses a start, as it did
        assert await recover(thaw, "start", {"program": "standard"}) is None
        # (a) a bag, no program ever run
        await thaw.twin_load_bag(100.0, -150.0)
        assert await recover(thaw, "start") is None
        # (b) running: done (start returns at once)
        await thaw.start("standard")
        assert await recover(thaw, "start", {"program": "standard"}) == Recovered(None)
        # (b) ran to its end while the supervisor was down
        result = await thaw.wait_complete(within=HOUR)
        assert result.state is ProgramState.COMPLETE
        assert await recover(thaw, "start") == Recovered(None)
        # (a) the next bag: Complete is the previous bag's; the flags are cleared
        await thaw.twin_unload_bag()
        await thaw.twin_load_bag(100.0, -150.0)
        assert (await thaw.program()).state is ProgramState.COMPLETE
        assert await recover(thaw, "start") is None


async def test_thaw_start_that_cannot_be_told(kind: str, vclock: VirtualClock) -> None:
    async with thaw_device(kind, vclock) as (thaw, _):
        await thaw.twin_load_bag(100.0, -150.0)
        await thaw.start("standard")
        await vclock.sleep(MIN)
        await thaw.abort()  # aborted before its end point
        # (d) this start's abort ...
        with pytest.raises(CannotTell, match="reads aborted"):
            await recover(thaw, "start")
        # ... and the previous run's, with a new bag placed, look alike
        await thaw.twin_unload_bag()
        await thaw.twin_load_bag(100.0, -150.0)
        with pytest.raises(CannotTell, match="reads aborted"):
            await recover(thaw, "start")


# -- freezer ----------------------------------------------------------------------------


async def test_freezer_run_profile(kind: str, vclock: VirtualClock) -> None:
    async with freezer(kind, vclock) as (fz, model):
        args = {"name": "standard_bag"}
        # (a) no program since power-on
        assert await recover(fz, "run_profile", args) is None
        assert await recover(fz, "start") is None
        # (b) running the profile
        await fz.run_profile("standard_bag")  # returns None
        await vclock.sleep(10 * MIN)
        assert await recover(fz, "run_profile", args) == Recovered(None)
        assert await recover(fz, "start") == Recovered(None)
        # (d) complete: this run's end and a previous run's look alike
        assert await fz.wait_done(within=3 * HOUR) is ProgramState.COMPLETE
        with pytest.raises(CannotTell, match=r"reads complete .*standard_bag"):
            await recover(fz, "run_profile", args)
        with pytest.raises(CannotTell, match="reads complete"):
            await recover(fz, "start")
        # (a) another profile loaded: the load, sent first, did not land
        await fz.define_profile([Segment(0.0, 4.0, 1.0)])
        assert await recover(fz, "run_profile", args) is None
        assert model.program.state.value == "complete"


async def test_freezer_run_aborted_by_the_door(kind: str, vclock: VirtualClock) -> None:
    async with freezer(kind, vclock) as (fz, model):
        await fz.run_profile("standard_bag")
        await vclock.sleep(5 * MIN)
        model.open_door()  # a person opens the door: the run aborts
        with pytest.raises(CannotTell, match=r"reads aborted .*DOOR_OPEN"):
            await recover(fz, "run_profile", {"name": "standard_bag"})


async def test_freezer_resendable(kind: str, vclock: VirtualClock) -> None:
    async with freezer(kind, vclock) as (fz, _):
        assert await recover(fz, "set_chamber", {"target_c": 4.0}) is None
        assert await recover(fz, "stop") is None
        assert await recover(fz, "abort") is None
        with pytest.raises(CannotTell):
            await recover(fz, "open_the_door")
