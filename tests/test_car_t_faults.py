"""The whole CAR-T batch with faults injected mid-run: each holds the batch, a person restarts it.

The simulated line, as ``flexctl run`` brings it up (four twins behind their
real protocols, virtual clock, the simulation user signing), but the batch is
run here so that a test can play the person at the line: it watches the
journal, breaks a twin at a chosen step, waits for the hold, mends the twin
after a while of process time and restarts the batch.

Two faults in one run, each where a product is in the device:
- day 3 of the expansion, the bioreactor's link drops and the twin stops
  answering for 30 min (its culture goes on growing: physics does not stop);
- during the freeze, the Modbus RTU freezer stalls for 10 min.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flexctl.cli.main import build_parser
from flexctl.cli.run import Plan, _plan
from flexctl.clock import VirtualClock
from flexctl.line_runtime import LineRuntime
from flexctl.record.journal import EntryKind, JournalEntry, MemoryJournal
from flexctl.supervisor.batch_state import BatchCommand as C
from flexctl.supervisor.batch_state import BatchState as S
from flexctl.supervisor.executor import Batch, Executor
from flexctl.supervisor.prompts import AutoSigner
from flexctl.transports.base import TransportOptions

CAR_T = Path(__file__).resolve().parent.parent / "procedures" / "car-t.yaml"
MIN = 60.0
DAY = 86400.0

pytestmark = pytest.mark.timeout(240)

#: A request to a stalled twin waits its timeout in wire (wall) time, with the
#: virtual clock standing still meanwhile; short timeouts and a long backoff
#: keep the outage to a few seconds of wall time.
OPTIONS = TransportOptions(timeout=0.5, connect_timeout=0.5, backoff_max=10 * MIN)


@dataclass
class Fault:
    """Break ``device``'s twin once ``after`` process seconds into step ``step``, for ``lasts``."""

    step: str
    device: str
    after: float
    lasts: float
    drop: bool = False
    broken_at: float | None = None
    held_at: float | None = None
    mended_at: float | None = None
    restarts: int = 0


@dataclass
class Person:
    """The technician: restarts a held batch once its fault is mended."""

    executor: Executor
    runtime: LineRuntime
    clock: VirtualClock
    faults: list[Fault]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def observe(self, entry: JournalEntry) -> None:
        if entry.kind is not EntryKind.STEP_START:
            return
        for fault in self.faults:
            if entry.step == fault.step and fault.held_at is None and not self.tasks_for(fault):
                task = asyncio.get_running_loop().create_task(self._inject(fault))
                task.set_name(f"fault-{fault.device}")
                self.tasks.append(task)

    def tasks_for(self, fault: Fault) -> bool:
        return any(t.get_name() == f"fault-{fault.device}" for t in self.tasks)

    async def _inject(self, fault: Fault) -> None:
        server = self.runtime.servers[fault.device]
        await self.clock.sleep(fault.after)
        broken_at = fault.broken_at = self.clock.now()
        server.faults.stall = True
        if fault.drop:
            await server.drop_connections()
        assert await self.executor.wait_for(S.Held) is S.Held
        fault.held_at = self.clock.now()
        await self.clock.sleep_until(broken_at + fault.lasts)
        server.faults.clear()
        fault.mended_at = self.clock.now()
        # As a person would: restart; if the restart check holds again (the link
        # still backing off), wait a while and try again.
        for _ in range(5):
            self.executor.command(C.Restart, actor="alice", reason=f"{fault.device} mended")
            fault.restarts += 1
            if await self.executor.wait_for(S.Running, S.Held) is S.Running:
                return
            await self.clock.sleep(10 * MIN)
        raise AssertionError(f"{fault.device}: still held after {fault.restarts} restarts")


def _plan_for_test() -> Plan:
    args = build_parser().parse_args(
        ["run", str(CAR_T), "--batch-id", "CAR-T-FAULTS", "--monitor-period", "5 min"]
    )
    plan = _plan(args)
    assert isinstance(plan, Plan), [str(p) for p in plan]
    return plan


async def test_faults_mid_run_hold_the_batch_and_a_restart_completes_it() -> None:
    plan = _plan_for_test()
    clock = VirtualClock()
    journal = MemoryJournal()
    faults = [
        Fault("dose_or_limit", "bioreactor", after=3 * DAY, lasts=30 * MIN, drop=True),
        Fault("freeze_done", "freezer", after=20 * MIN, lasts=10 * MIN),
    ]
    try:
        async with LineRuntime(plan.line, clock, seed=plan.seed, options=OPTIONS) as runtime:
            person: Person | None = None

            class Observed(MemoryJournal):
                def append(self, entry: JournalEntry) -> None:
                    journal.append(entry)
                    if person is not None:
                        person.observe(entry)

            executor = Executor(
                Batch(plan.batch_id, plan.procedure, plan.values),
                runtime.drivers,
                clock=clock,
                journal=Observed(),
                prompter=AutoSigner(plan.answers),
                monitor_period=plan.monitor_period,
            )
            person = Person(executor, runtime, clock, faults)
            final = await executor.run(actor="alice")
            await asyncio.gather(*person.tasks)
    finally:
        await clock.aclose()

    assert final is S.Complete
    entries = journal.entries()
    for fault in faults:
        assert fault.restarts, f"{fault.device}: never held, or never restarted"
        assert fault.broken_at is not None and fault.held_at is not None
        # At once (the link drops) or at the next check (in use: every monitor period).
        assert fault.broken_at <= fault.held_at <= fault.broken_at + plan.monitor_period
        print(f"{fault.device}: broken {fault.broken_at:.0f} s, held {fault.held_at:.0f} s")
    interlocks = [e for e in entries if e.kind is EntryKind.INTERLOCK and "interlock" in e.payload]
    tripped = {(e.device, str(e.payload["interlock"])) for e in interlocks}
    assert ("bioreactor", "link:bioreactor") in tripped
    assert ("freezer", "link:freezer") in tripped
    changes = [e for e in entries if e.kind is EntryKind.BATCH_STATE]
    holds = [e for e in changes if e.payload.get("new") == "Holding"]
    restarts = [e for e in changes if e.payload.get("new") == "Restarting"]
    # Held by the system only; restarted by the person only, as often as she tried.
    tries = sum(f.restarts for f in faults)
    assert len(holds) == tries and {e.actor for e in holds} == {"system"}
    assert [e.actor for e in restarts] == ["alice"] * tries
    # Every unit procedure still ran to its end, and the held steps ran again.
    ends = [(e.step, e.payload.get("result")) for e in entries if e.kind is EntryKind.STEP_END]
    for fault in faults:
        # Its own read or the monitor met the fault first: failed or interrupted, then done.
        results = [r for step, r in ends if step == fault.step]
        assert results[-1] == "done" and set(results[:-1]) <= {"failed", "interrupted"}
        assert len(results) >= 2
    assert ends[-1] == ("ln2_storage", "done")
    # The product is still a product: the dose was reached and the freeze completed.
    results = executor.results
    assert results["freeze_end_state"]["value"] == "complete"
    assert float(results["total_viable_cells"]["value"]) >= plan.values["target_dose"]  # type: ignore[arg-type]
