"""The whole CAR-T procedure, end to end, through ``flexctl run``.

Four twins in this process behind their real protocols (OPC UA, Modbus TCP,
serial and Modbus RTU on ptys), a virtual clock, the simulation user signing.
The batch runs twice with the same seed; the tests assert on the outcome and
on the two process records being the same.

The interlock monitor checks every 5 min of process time here (the command's
default is 1 min): the outcome does not depend on it, and the run takes about
half the wall time.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flexctl.cli.main import build_parser
from flexctl.cli.run import RunOutcome, run_batch
from flexctl.procedure.model import PromptStep
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.sqlite_store import SqliteStore
from flexctl.supervisor.batch_state import BatchState
from flexctl.supervisor.prompts import SIM_USER

CAR_T = Path(__file__).resolve().parent.parent / "procedures" / "car-t.yaml"
UNITS = (
    "thaw",
    "isolation",
    "activation",
    "expansion",
    "harvest",
    "formulation",
    "cryopreservation",
)
#: Payload fields that carry wall-clock (UTC) time, or are derived from it.
UTC_FIELDS = {EntryKind.SIGNATURE: ("signed_at", "sha256")}
PROGRESS = re.compile(r"^d\d\d \d\d:\d\d  \S+\s+\S+\s+\S")

pytestmark = pytest.mark.timeout(240)


@dataclass
class Run:
    outcome: RunOutcome
    output: str
    wall_s: float
    db: Path


def _run(db: Path, *extra: str) -> Run:
    argv = ["run", str(CAR_T), "--batch-id", "CAR-T-TEST-1", "--monitor-period", "5 min"]
    args = build_parser().parse_args([*argv, "--db", str(db), *extra])
    out = io.StringIO()
    began = time.perf_counter()
    outcome = asyncio.run(run_batch(args, out=out))
    return Run(outcome, out.getvalue(), time.perf_counter() - began, db)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, Run]]:
    first = _run(tmp_path_factory.mktemp("first") / "flexctl.db")  # the default seed
    second = _run(tmp_path_factory.mktemp("second") / "flexctl.db", "--seed", "0")
    for name, run in (("first", first), ("second", second)):
        summary = run.outcome.summary
        assert summary is not None
        print(
            f"car-t {name} run: wall {run.wall_s:.1f} s, process "
            f"{summary.process_seconds / 86400:.2f} d, {summary.requests} requests"
        )
    yield first, second


def test_the_batch_completes_and_exits_0(runs: tuple[Run, Run]) -> None:
    run = runs[0]
    assert run.outcome.exit_code == 0, run.output[-3000:]
    assert run.outcome.state is BatchState.Complete
    assert "== batch CAR-T-TEST-1: Complete ==" in run.output


def test_all_seven_unit_procedures_complete(runs: tuple[Run, Run]) -> None:
    outcome = runs[0].outcome
    assert outcome.summary is not None
    assert outcome.summary.units == UNITS
    assert outcome.summary.completed_units == UNITS
    assert outcome.plan is not None
    assert set(outcome.results) == {s.id for s in outcome.plan.procedure.steps()}


def test_the_dose_is_reached_with_the_default_parameters(runs: tuple[Run, Run]) -> None:
    outcome = runs[0].outcome
    summary = outcome.summary
    assert summary is not None and outcome.plan is not None
    target = outcome.plan.values["target_dose"]
    assert target == 8.0e9
    # Either the dose is reached, or dose_reached times out and records a deviation:
    # with the default parameters it is reached, and no deviation is recorded at all.
    final_bags = outcome.results["final_bags"]
    viable = float(final_bags["cells"]) * float(final_bags["viability_pct"]) / 100
    assert summary.product_step == "final_bags"
    assert summary.final_viable_cells == pytest.approx(viable)
    assert viable >= target
    assert summary.dose_reached is True
    assert outcome.results["dose_reached"]["timed_out"] is False
    assert float(outcome.results["total_viable_cells"]["value"]) >= target
    assert summary.deviations == ()
    assert "target dose     8.00e9 viable cells: reached" in runs[0].output


def test_the_bags_are_frozen_by_a_complete_freezer_program(runs: tuple[Run, Run]) -> None:
    outcome = runs[0].outcome
    assert outcome.summary is not None and outcome.plan is not None
    assert outcome.summary.freezer_program == "complete"
    assert outcome.results["freeze_end_state"]["value"] == "complete"
    assert outcome.summary.bags_filled == outcome.plan.values["bag_count"] == 2
    assert "2 filled, frozen (freezer program complete)" in runs[0].output


def test_every_prompt_is_signed_by_the_marked_simulation_user(runs: tuple[Run, Run]) -> None:
    outcome = runs[0].outcome
    assert outcome.plan is not None
    prompts = [s.id for s in outcome.plan.procedure.steps() if isinstance(s, PromptStep)]
    signatures = [e for e in outcome.entries if e.kind is EntryKind.SIGNATURE]
    assert [e.step for e in signatures] == prompts
    for entry in signatures:
        assert entry.actor == SIM_USER
        assert entry.payload["printed_name"] == SIM_USER
        assert entry.payload["simulated"] is True
    # The made-up chain-of-identity ID is the one the simulated bag carries.
    coi = outcome.plan.simulated["coi_id"]
    assert outcome.results["bag_id"]["value"] == coi
    output = runs[0].output
    assert f"simulated parameter: coi_id = {coi!r}" in output
    assert f"signed by       {SIM_USER} [SIMULATION USER, not a person]: {len(prompts)}" in output


def test_progress_is_one_stamped_line_per_step_start(runs: tuple[Run, Run]) -> None:
    outcome = runs[0].outcome
    lines = runs[0].output.splitlines()
    starts = [e for e in outcome.entries if e.kind is EntryKind.STEP_START]
    for entry in starts:
        assert any(PROGRESS.match(line) and line.split()[3] == entry.step for line in lines), (
            entry.step
        )
    samples = [line for line in lines if " daily_sample " in line and "VCD" in line]
    assert samples and all("viability" in line for line in samples)


def _record(entries: list[JournalEntry]) -> list[tuple[Any, ...]]:
    record = []
    for e in entries:
        payload = dict(e.payload)
        for name in UTC_FIELDS.get(e.kind, ()):
            payload.pop(name)
        record.append((e.process_time, e.kind, e.unit_procedure, e.step, e.device, payload))
    return record


def test_the_same_seed_gives_the_same_process_record(runs: tuple[Run, Run]) -> None:
    first, second = (_record(run.outcome.entries) for run in runs)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a == b
    assert runs[0].outcome.results == runs[1].outcome.results


def test_the_batch_is_recorded_in_the_store(runs: tuple[Run, Run]) -> None:
    run = runs[0]
    with SqliteStore(run.db, create=False) as store:
        info = store.batch("CAR-T-TEST-1")
        assert info.simulated and info.procedure_name == "car-t" and info.line_name == "sim"
        assert info.procedure_text == CAR_T.read_text()
        assert set(info.devices) == {"bioreactor", "processor", "thaw", "freezer"}
        # The journal in the store is the run's journal, entry for entry.
        assert store.journal("CAR-T-TEST-1").entries() == run.outcome.entries
        assert store.verify().ok
        audit = store.audit_entries(batch="CAR-T-TEST-1")
        actions = [a.record.action for a in audit]
        assert actions[0] == "batch created"
        signatures = [a for a in audit if a.record.action == "e-signature"]
        signed = [e for e in run.outcome.entries if e.kind is EntryKind.SIGNATURE]
        assert len(signatures) == len(signed) > 0
        assert {a.record.actor for a in signatures} == {SIM_USER}
        # The historian kept the key process values of every device that held product.
        for device, signal in [
            ("bioreactor", "temperature"),
            ("bioreactor", "sample_vcd"),
            ("thaw", "sample_temperature"),
            ("freezer", "chamber_temperature"),
            ("freezer", "sample_temperature"),
        ]:
            samples = store.samples("CAR-T-TEST-1", device=device, signal=signal)
            assert samples, f"no samples of {device}.{signal}"
        days = store.samples("CAR-T-TEST-1", device="bioreactor", signal="temperature")
        assert days[-1].process_time - days[0].process_time > 7 * 86400
