"""The executor on real twins: the drivers talk to simulated devices over the real wire.

A thaw device (Modbus TCP) and a bioreactor (OPC UA or Modbus TCP) twin, built
with :func:`flexctl.twins.twin_pair` and the registry's driver classes, on a
virtual clock with a fixed epoch, so the same seed gives the same journal.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers.base import Driver, ProgramState
from drivers.registry import driver_class
from flexctl.clock import VirtualClock
from flexctl.line import shipped_line
from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import Procedure
from flexctl.procedure.validate import validate_procedure
from flexctl.record.journal import EntryKind, JournalEntry, MemoryJournal
from flexctl.supervisor.batch_state import BatchCommand, BatchState
from flexctl.supervisor.executor import Batch, Executor
from flexctl.supervisor.interlocks import Interlock
from flexctl.supervisor.prompts import SIM_USER, AutoSigner
from flexctl.transports.base import TransportOptions
from flexctl.twins import Pair, make_model, twin_pair

S = BatchState
C = BatchCommand
EPOCH = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
MIN = 60.0
OPTIONS = TransportOptions(
    timeout=0.3, connect_timeout=0.5, backoff_initial=1.0, backoff_max=10.0, seed=7
)
MODBUS = {"thaw": "modbus-tcp", "bioreactor": "modbus-tcp"}

PROCEDURE = """\
procedure: thaw-and-seed
version: "1.0"
line: sim
parameters:
  bag_volume: {type: float, unit: mL, default: 50, limits: [20, 250]}
  culture_temp: {type: float, unit: degC, default: 37, limits: [35, 38]}
unit_procedures:
  - name: thaw
    steps:
      - id: load_bag
        command: thaw.twin_load_bag
        args: {volume_ml: "=bag_volume", start_temperature_c: -150}
      - {id: start_thaw, command: thaw.start, args: {program: standard}}
      - id: thawed
        wait_until: thaw.thaw_complete
        timeout: 30 min
        poll: 30 s
        on_timeout: hold
      - {id: thaw_end, record: thaw.sample_temperature, unit: degC}
      - id: bag_id
        prompt: Scan the apheresis bag barcode (chain of identity)
        entry: {type: text, pattern: "^[A-Z0-9-]{6,}$"}
        role: operator
  - name: expansion
    steps:
      - {id: warm, set: bioreactor.temperature_sp, value: "=culture_temp"}
      - id: seed
        command: bioreactor.seed
        args: {viable_cells: 2.5e8, volume_ml: 500}
      - {id: settle, wait: 2 h}
      - {id: count, command: bioreactor.sample, args: {volume_ml: 1}}
      - {id: density, record: count.vcd_per_ml, unit: 1/mL}
      - {id: confirm, prompt: Confirm the culture is seeded, role: supervisor, meaning: verified}
    rules:
      - id: perfusion
        every: 30 min
        when: bioreactor.culture_day >= 0
        command: bioreactor.perfuse
        args: {rate_ml_per_day: "=0 if bioreactor.sample_vcd < 2e6 else 500"}
"""


def procedure() -> Procedure:
    loaded = parse_procedure(textwrap.dedent(PROCEDURE), "thaw-and-seed.yaml")
    assert not loaded.problems, [str(p) for p in loaded.problems]
    assert loaded.procedure is not None
    return loaded.procedure


@dataclass
class Line:
    clock: VirtualClock
    drivers: dict[str, Driver]
    pairs: dict[str, Pair]
    journal: MemoryJournal

    def executor(self, **options: Any) -> Executor:
        return Executor(
            Batch.create("CAR-T-0001", procedure()),
            self.drivers,
            clock=self.clock,
            journal=self.journal,
            prompter=AutoSigner(),
            **options,
        )

    def kinds(self, *kinds: EntryKind) -> list[JournalEntry]:
        return [e for e in self.journal.entries() if e.kind in kinds]

    def states(self) -> list[str]:
        entries = self.kinds(EntryKind.BATCH_STATE)
        return [str(e.payload["new"]) for e in entries if "new" in e.payload]


@asynccontextmanager
async def twin_line(kinds: Mapping[str, str] = MODBUS, seed: int = 1) -> AsyncIterator[Line]:
    clock = VirtualClock(epoch=EPOCH)
    try:
        async with AsyncExitStack() as stack:
            drivers: dict[str, Driver] = {}
            pairs: dict[str, Pair] = {}
            for name, kind in kinds.items():
                model = make_model(name, clock, seed)
                pair = await stack.enter_async_context(
                    twin_pair(kind, model, clock, device=name, options=OPTIONS)
                )
                pairs[name] = pair
                drivers[name] = driver_class(name)(name, pair.transport, clock)
            yield Line(clock, drivers, pairs, MemoryJournal())
    finally:
        await clock.aclose()


def test_the_procedure_is_valid_on_the_simulated_line() -> None:
    assert validate_procedure(procedure(), shipped_line("sim")) == []


async def test_a_procedure_on_two_twins_runs_to_complete() -> None:
    async with twin_line({"thaw": "modbus-tcp", "bioreactor": "opcua"}) as line:
        executor = line.executor()
        assert await executor.run(actor="alice") is S.Complete
        assert line.states() == ["Running", "Complete"]
        ends = [(e.step, e.payload["result"]) for e in line.kinds(EntryKind.STEP_END)]
        assert ends == [
            (s, "done")
            for s in [
                "load_bag", "start_thaw", "thawed", "thaw_end", "bag_id",
                "warm", "seed", "settle", "count", "density", "confirm",
            ]
        ]  # fmt: skip
        # The thaw reached its end point within minutes of process time (domain.md 1.3).
        thawed = executor.results["thawed"]
        assert thawed["timed_out"] is False
        assert 4 * MIN <= float(thawed["elapsed_s"]) <= 20 * MIN
        assert -5.0 < float(executor.results["thaw_end"]["value"]) < 10.0
        assert executor.results["bag_id"]["value"] == "SIM-BAG-ID"
        count = executor.results["count"]
        assert set(count) == {"vcd_per_ml", "viability_pct", "volume_ml"}
        assert executor.results["density"]["value"] == count["vcd_per_ml"]
        assert 2e5 < float(count["vcd_per_ml"]) < 1e6  # 2.5e8 cells in 500 mL, 2 h later
        result = await line.drivers["thaw"].program()
        assert result.state is ProgramState.COMPLETE
        # The rule ran beside the expansion steps every 30 min (at 0, 30, 60, 90, 120 min).
        rule = [e for e in line.kinds(EntryKind.COMMAND_RESULT) if e.step == "perfusion"]
        assert len(rule) == 5 and all("error" not in e.payload for e in rule)
        signatures = line.kinds(EntryKind.SIGNATURE)
        assert [(e.step, e.actor, e.payload["meaning"]) for e in signatures] == [
            ("bag_id", SIM_USER, "performed"),
            ("confirm", SIM_USER, "verified"),
        ]
        assert line.kinds(EntryKind.DEVIATION) == []
        assert line.kinds(EntryKind.INTERLOCK) == []
        for entry in line.journal.entries():
            assert entry.batch == "CAR-T-0001"
            assert (entry.utc - EPOCH).total_seconds() == entry.process_time


async def test_a_stalled_twin_holds_the_batch_and_a_person_restarts_it() -> None:
    async with twin_line() as line:
        executor = line.executor(monitor_period=MIN, link_wait=10 * MIN)
        run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
        await line.clock.sleep_until(3 * MIN + 10)  # mid-thaw, inside the wait_until
        line.pairs["thaw"].server.faults.stall = True
        assert await executor.wait_for(S.Held) is S.Held
        tripped = [e for e in line.kinds(EntryKind.INTERLOCK) if e.payload.get("action") == "hold"]
        assert len(tripped) == 1
        assert (tripped[0].device, tripped[0].payload["interlock"]) == ("thaw", "link:thaw")
        hold = next(
            e for e in line.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding"
        )
        assert hold.actor == "system" and "link:thaw" in str(hold.payload["reason"])
        assert 3 * MIN < hold.process_time <= 4 * MIN
        interrupted = [e for e in line.kinds(EntryKind.STEP_END) if e.step == "thawed"]
        # The poll's read was in flight when the link went: the step failed, not cancelled.
        assert [e.payload["result"] for e in interrupted] == ["failed"]
        assert interrupted[0].payload["error_type"] == "CommunicationTimeout"

        line.pairs["thaw"].server.faults.clear()
        executor.command(C.Restart, actor="bob", reason="thaw link checked")
        assert await run is S.Complete
        assert line.states() == ["Running", "Holding", "Held", "Restarting", "Running", "Complete"]
        starts = [
            e.payload["attempt"] for e in line.kinds(EntryKind.STEP_START) if e.step == "thawed"
        ]
        assert starts == [1, 2]
        assert executor.results["thawed"]["timed_out"] is False
        assert line.drivers["thaw"].transport.reconnects >= 1


async def test_a_value_out_of_its_band_longer_than_the_delay_holds() -> None:
    text = PROCEDURE.replace('value: "=culture_temp"', "value: 30")
    loaded = parse_procedure(text, "cold.yaml")
    assert loaded.procedure is not None and not loaded.problems
    band = Interlock("bioreactor.temperature", low=36.0, high=38.0, delay=10 * MIN)
    async with twin_line() as line:
        executor = Executor(
            Batch.create("CAR-T-0002", loaded.procedure),
            line.drivers,
            clock=line.clock,
            journal=line.journal,
            prompter=AutoSigner(),
            interlocks=[band],
            monitor_period=MIN,
        )
        run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
        assert await executor.wait_for(S.Held) is S.Held
        events = [e for e in line.kinds(EntryKind.INTERLOCK) if e.device == "bioreactor"]
        out, tripped = events[0], events[-1]
        assert out.payload["event"] == "out of band" and float(str(out.payload["value"])) < 36.0
        assert tripped.payload["action"] == "hold"
        assert tripped.process_time - out.process_time >= 10 * MIN
        assert tripped.process_time - out.process_time < 11 * MIN
        hold = next(
            e for e in line.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding"
        )
        assert hold.actor == "system"
        assert "band:bioreactor.temperature" in str(hold.payload["reason"])
        executor.command(C.Abort, actor="alice", reason="culture too cold")
        assert await run is S.Aborted
        program = await line.drivers["bioreactor"].program()
        assert program.state is ProgramState.ABORTED  # the device's abort ran


async def test_a_persons_abort_aborts_the_thaw_program_on_the_device() -> None:
    async with twin_line() as line:
        executor = line.executor()
        run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
        await line.clock.sleep_until(2 * MIN)
        executor.command(C.Abort, actor="alice", reason="wrong bag")
        assert await run is S.Aborted
        assert line.states() == ["Running", "Aborting", "Aborted"]
        program = await line.drivers["thaw"].program()
        assert program.state is ProgramState.ABORTED
        results = line.kinds(EntryKind.COMMAND_RESULT)
        safe = [e.device for e in results if e.payload.get("method") == "safe_state"]
        assert safe == ["thaw", "bioreactor"]


async def _journal_of_one_run(seed: int) -> list[dict[str, Any]]:
    async with twin_line(seed=seed) as line:
        executor = line.executor(monitor_period=10 * MIN)
        assert await executor.run(actor="alice") is S.Complete
        return [entry.as_dict() for entry in line.journal.entries()]


async def test_the_same_seed_gives_the_same_journal() -> None:
    first = await _journal_of_one_run(3)
    second = await _journal_of_one_run(3)
    assert len(first) > 40
    assert first == second
    other = await _journal_of_one_run(4)
    assert other != first  # the seed matters (the sample count differs)


async def test_a_stalled_bioreactor_during_a_wait_is_found_by_the_monitor() -> None:
    stall_at = 40 * MIN + 1
    async with twin_line() as line:
        executor = line.executor(monitor_period=5 * MIN, link_wait=10 * MIN)
        run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
        await executor.wait_for(S.Running)
        await line.clock.sleep_until(stall_at)
        # The batch sits in its 2 h wait: the monitor (or the rule) finds the lost device.
        line.pairs["bioreactor"].server.faults.stall = True
        assert await executor.wait_for(S.Held) is S.Held
        assert line.clock.now() <= stall_at + 5 * MIN
        line.pairs["bioreactor"].server.faults.clear()
        executor.command(C.Restart, actor="bob")
        assert await run is S.Complete
