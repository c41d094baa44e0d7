"""The batch report's content, built from a record store alone (tests/report_factory.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flexctl.clock import VirtualClock
from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import Entry, Meaning, Role
from flexctl.profile import Value
from flexctl.record.journal import EntryKind, MemoryJournal
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import RecordError
from flexctl.report.model import BatchReport, build_report
from flexctl.report.rows import StepRow
from flexctl.supervisor.batch_state import BatchCommand, BatchState
from flexctl.supervisor.executor import Batch, Executor
from flexctl.supervisor.prompts import PromptRequest, Signer
from tests.record_factory import T0, raw
from tests.report_factory import (
    BATCH,
    COUNT,
    DAY,
    GROW,
    RESTART,
    START,
    TRIP,
    Journal,
    batch,
    report_store,
)

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "record.db"
    report_store(path).close()
    return path


def report_of(path: Path, batch_id: str = BATCH) -> BatchReport:
    with SqliteStore(path, create=False) as store:
        return build_report(store, batch_id, now=NOW)


@pytest.fixture
def report(db: Path) -> BatchReport:
    return report_of(db)


def step(report: BatchReport, step_id: str) -> StepRow:
    return next(s for u in report.units for s in u.steps if s.step == step_id)


def test_the_header_says_what_ran_where_and_how_it_ended(report: BatchReport) -> None:
    h = report.header
    assert (h.batch_id, h.procedure_name, h.procedure_version) == (BATCH, "mini-car-t", "2.1")
    assert h.procedure_sha256 == batch().procedure_sha256 and h.procedure_text_matches
    assert (h.line_name, h.simulated, h.seed, h.created_by) == ("sim", True, 42, "alice")
    assert h.created_utc == T0
    params = {p.name: (p.value, p.unit, p.type, p.default) for p in h.parameters}
    assert params == {
        "target_dose": (1.0e9, "cells", "float", True),
        "coi_id": ("COI-123456", "", "text", False),
    }
    devices = {d.name: d for d in h.devices}
    assert sorted(devices) == ["bioreactor", "freezer", "thaw"]
    reactor = devices["bioreactor"]
    assert (reactor.driver, reactor.profile, reactor.transport, reactor.serial) == (
        "bioreactor", "bioreactor.modbus", "modbus-tcp", "BR-0042",
    )  # fmt: skip
    assert reactor.source == "modbus://127.0.0.1:5020"
    assert reactor.origin == "in-process twin"  # from the journal's device origin record
    assert reactor.other == {"firmware": "3.1.4"}
    assert devices["freezer"].serial == ""
    assert h.started is not None and h.started.process_time == START
    assert h.started.stamp == "d00 00:00"
    assert h.final_state == "Stopped"
    assert h.final_at is not None and h.final_at.stamp == "d03 04:33"
    assert h.procedure_note == ""
    assert report.generated_utc == NOW


def test_every_step_is_listed_with_each_attempt(report: BatchReport) -> None:
    assert [u.name for u in report.units] == ["thaw", "expansion", "cryopreservation"]
    assert [u.complete for u in report.units] == [True, True, False]
    grow = step(report, "grow")
    assert grow.kind == "wait_until" and grow.action.startswith("wait until bioreactor")
    first, second = grow.attempts
    assert (first.number, first.result, first.reason) == (1, "interrupted", "batch Holding")
    assert first.start is not None and first.start.process_time == GROW
    assert first.end is not None and first.end.process_time == TRIP
    assert (first.start.stamp, first.end.stamp) == ("d00 00:35", "d02 00:35")
    assert (second.number, second.result) == (2, "done")
    assert second.start is not None and second.start.process_time == RESTART
    assert second.fields == {"elapsed_s": DAY, "timed_out": False}
    assert grow.result == "done"
    count = step(report, "count")
    assert count.attempts[0].fields["viable_cells"] == 1.2e9
    freeze = step(report, "freeze")
    assert freeze.attempts[0].sent == ("freezer.run_profile(name='standard_bag')",)
    never = step(report, "to_storage")
    assert never.attempts == () and never.result == "not run" and never.planned


def test_signatures_show_the_11_50_manifestation_and_an_intact_binding(
    report: BatchReport,
) -> None:
    first, second = report.signatures
    assert (first.printed_name, first.user, first.meaning, first.role) == (
        "Jane Doe", "jdoe", "performed", "operator",
    )  # fmt: skip
    assert first.value == "COI-123456"
    assert first.signed_at == first.at.utc.isoformat()
    assert first.text == "Scan the bag's chain-of-identity label"
    assert (first.binding, first.binding_note) == ("intact", "")
    assert first.recomputed == first.sha256 and len(first.sha256) == 64
    assert (second.printed_name, second.meaning, second.value) == ("Quinn Adams", "verified", True)
    assert second.binding == "intact"
    assert report.integrity.ok and report.integrity.signatures_broken == 0


def _tamper_signature(path: Path, step_id: str, **changes: object) -> None:
    with raw(path, drop_triggers=True) as conn:
        seq, payload = conn.execute(
            "SELECT seq, payload FROM journal WHERE kind = 'signature' AND step = ?", (step_id,)
        ).fetchone()
        edited = {**json.loads(payload), **changes}
        conn.execute(
            "UPDATE journal SET payload = ? WHERE seq = ?",
            (json.dumps(edited, sort_keys=True, separators=(",", ":")), seq),
        )


def test_a_signed_value_changed_in_the_store_shows_a_broken_binding(db: Path) -> None:
    _tamper_signature(db, "review", value=False)
    report = report_of(db)
    intact, broken = report.signatures
    assert intact.binding == "intact"
    assert broken.value is False
    assert broken.binding == "broken" and broken.recomputed != broken.sha256
    assert "changed" in broken.binding_note
    assert report.summary.signatures_not_intact == 1
    integrity = report.integrity
    assert integrity.signatures_broken == 1 and not integrity.ok
    # The hash chain finds the edit as well, and names the entry.
    assert not integrity.chains_intact
    (problem,) = integrity.problems
    assert problem.table == "journal"
    assert integrity.untrusted["journal"] >= 1


def test_a_changed_signer_name_or_time_breaks_the_binding_too(db: Path) -> None:
    _tamper_signature(db, "bag_id", printed_name="Someone Else")
    _tamper_signature(db, "review", signed_at="2025-01-01T00:00:00+00:00")
    assert [s.binding for s in report_of(db).signatures] == ["broken", "broken"]


def test_a_signature_without_its_prompt_cannot_be_checked(tmp_path: Path) -> None:
    journal = Journal()
    journal.signed(
        "thaw", "bag_id", START, text="Scan", value="X", user="jdoe",
        printed_name="Jane Doe", role="operator", meaning="performed",
    )  # fmt: skip
    with SqliteStore(tmp_path / "r.db") as store:
        store.create_batch(batch())
        for entry in journal.entries:
            if entry.kind is not EntryKind.PROMPT:
                store.append_entry(entry)
        (signature,) = build_report(store, BATCH).signatures
    assert signature.binding == "unverifiable"
    assert "prompt" in signature.binding_note


def test_deviations_interlocks_alarms_states_and_records_with_their_times(
    report: BatchReport,
) -> None:
    (deviation,) = report.deviations
    assert (deviation.deviation, deviation.step, deviation.device) == (
        "wait_until timeout", "count", "bioreactor",
    )  # fmt: skip
    assert deviation.message == "sample taken 1 h late; continued"
    assert deviation.details == {"on_timeout": "continue"}
    assert deviation.at.process_time == COUNT
    trips = [i for i in report.interlocks if i.tripped]
    assert len(trips) == 1 and trips[0].interlock == "band:bioreactor_temp"
    assert trips[0].action == "hold" and trips[0].at.process_time == TRIP
    assert [i.event for i in report.interlocks] == ["out of band", "tripped", "restart check"]
    raised, cleared = report.alarms
    assert (raised.raised, raised.active, cleared.cleared) == (("HIGH_TEMP",),) * 3
    assert cleared.at.stamp == "d02 01:35"
    assert [(s.old, s.new, s.actor) for s in report.states] == [
        ("Idle", "Running", "alice"),
        ("Running", "Holding", "system"),
        ("Holding", "Held", "system"),
        ("Held", "Restarting", "bob"),
        ("Restarting", "Running", "system"),
        ("Running", "Stopping", "alice"),
        ("Stopping", "Stopped", "system"),
    ]
    assert report.states[3].reason == "temperature back in band"
    (error,) = report.command_errors
    assert (error.step, error.device, error.command) == ("feed_rule", "bioreactor", "feed")
    assert error.error == "DeviceBusyError: bioreactor busy"
    # The device origin records are the devices' origin, not measurements.
    assert [(m.expression, m.value) for m in report.measurements] == [
        ("freezer.program_state", "complete")
    ]


def test_the_summary_has_the_dose_figures_and_the_counts(report: BatchReport) -> None:
    s = report.summary
    assert s.final_state == "Stopped"
    assert s.completed_units == ("thaw", "expansion")
    assert s.product_step == "count"
    assert s.final_viable_cells == 1.2e9 and s.final_viability == 91.5
    assert s.final_cells == pytest.approx(1.2e9 * 100 / 91.5)
    assert (s.target_dose, s.dose_reached) == (1.0e9, True)
    assert (s.bags_filled, s.freezer_program) == (2, "complete")
    assert (s.deviations, s.holds, s.interlock_trips, s.alarms_raised) == (1, 1, 1, 1)
    assert (s.signatures, s.signatures_by_simulation, s.signatures_not_intact) == (2, 0, 0)


def test_the_audit_trail_is_this_batchs_only(report: BatchReport) -> None:
    assert [(a.seq, a.action, a.actor) for a in report.audit] == [
        (1, "batch created", "alice"),
        (2, "parameter changed", "alice"),
    ]
    changed = report.audit[1]
    assert (changed.old_value, changed.new_value) == (2.0e9, 1.0e9)
    assert changed.reason == "dose per <prescription>"
    assert changed.at is not None and changed.at.elapsed == 5.0
    assert report.audit[0].at is None  # made before the batch ran: no process time


def test_trends_plot_what_was_sampled_and_note_what_was_not(report: BatchReport) -> None:
    plots = {t.key: t for t in report.trends.plots}
    assert list(plots) == ["bioreactor", "thaw", "freezer", "other:bioreactor"]
    culture = plots["bioreactor"]
    assert culture.x_unit == "days" and culture.x_origin == 0.0
    assert [p.title for p in culture.panels] == [
        "Temperature", "Dissolved oxygen", "pH", "Viable cell density", "Viability",
    ]  # fmt: skip
    assert len(culture.panels[0].series[0].points) == 72
    assert culture.panels[3].log
    thaw = plots["thaw"]
    assert thaw.x_unit == "minutes" and thaw.x_origin == 60.0  # its first sample, in batch time
    assert [s.label for s in thaw.panels[0].series] == ["plate", "sample"]
    assert thaw.scope == (
        "while in use: d00 00:01 to d00 00:31 (unit procedure thaw); "
        "12 samples outside it are not shown"
    )
    assert len(thaw.panels[0].series[0].points) == 31
    assert [s.signal for s in plots["other:bioreactor"].panels[0].series] == ["volume"]
    assert report.trends.notes == (
        "processor.step_name: 1 of 1 samples are not numbers; not plotted",
    )


def test_a_plot_without_samples_is_left_out_with_a_note(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "r.db") as store:
        store.create_batch(batch())
        for entry in Journal().entries:
            store.append_entry(entry)
        report = build_report(store, BATCH)
    assert report.trends.plots == ()
    assert len(report.trends.notes) == 3
    assert all("left out" in note for note in report.trends.notes)
    # Never started: every planned step is "not run", the state Idle.
    assert report.header.final_state == "Idle" and report.header.started is None
    assert all(s.result == "not run" for u in report.units for s in u.steps)


def test_a_procedure_text_that_does_not_parse_lists_steps_from_the_journal(
    tmp_path: Path,
) -> None:
    with SqliteStore(tmp_path / "r.db") as store:
        store.create_batch(replace(batch(), procedure_text="not: [a procedure"))
        journal = Journal()
        journal.step("thaw", "load", "command", START, START + 60)
        for entry in journal.entries:
            store.append_entry(entry)
        report = build_report(store, BATCH)
    assert "does not parse" in report.header.procedure_note
    assert not report.header.procedure_text_matches
    assert not report.integrity.ok
    (unit,) = report.units
    assert [(s.step, s.result) for s in unit.steps] == [("load", "done")]


def test_an_unknown_batch_is_a_record_error_naming_it(db: Path) -> None:
    with SqliteStore(db, create=False) as store, pytest.raises(RecordError, match="'B-404'"):
        build_report(store, "B-404")


# -- against the executor's own journal ------------------------------------------------------

PROMPTS = """\
procedure: prompts
version: "1"
unit_procedures:
  - name: main
    steps:
      - id: count
        prompt: Enter the cell count
        entry: {type: int, limits: [1, 10]}
        role: operator
      - {id: ok, prompt: Confirm the count, role: supervisor, meaning: verified}
"""


class Scripted:
    """Answers from a list, signing as Jane Doe."""

    def __init__(self, answers: list[Value]) -> None:
        self.answers = answers

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]:
        return self.answers.pop(0), Signer("jdoe", "Jane Doe")


async def _executor_journal() -> MemoryJournal:
    """A real executor's run: three wrong entries hold the batch; bob restarts; it completes."""
    loaded = parse_procedure(PROMPTS, "prompts.yaml")
    assert loaded.procedure is not None and not loaded.problems
    clock = VirtualClock(epoch=T0)
    journal = MemoryJournal()
    executor = Executor(
        Batch.create(BATCH, loaded.procedure),
        {},
        clock=clock,
        journal=journal,
        prompter=Scripted([0, 11, 0, 7, True]),
    )
    try:
        run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
        await executor.wait_for(BatchState.Held)
        executor.command(BatchCommand.Restart, actor="bob", reason="count re-checked")
        assert await run is BatchState.Complete
    finally:
        await clock.aclose()
    return journal


async def test_the_binding_recomputed_is_the_one_the_executor_computed(tmp_path: Path) -> None:
    journal = await _executor_journal()
    with SqliteStore(tmp_path / "r.db") as store:
        store.create_batch(
            replace(batch(), procedure_text=PROMPTS, parameters={}, procedure_name="prompts")
        )
        for entry in journal.entries():
            store.append_entry(entry)
        report = build_report(store, BATCH)
    assert [(s.step, s.value, s.binding) for s in report.signatures] == [
        ("count", 7, "intact"),
        ("ok", True, "intact"),
    ]
    count = step(report, "count")
    assert [(a.number, a.result) for a in count.attempts] == [(1, "failed"), (2, "done")]
    assert "no acceptable entry" in count.attempts[0].error
    assert [e.value for e in report.rejected_entries] == [0, 11, 0]
    assert [d.deviation for d in report.deviations] == ["step failed"]
    assert report.header.final_state == "Complete"
    assert report.summary.holds == 1


def test_alarm_floods_and_chattering_alarms_are_counted(tmp_path: Path) -> None:
    """ISA-18.2 KPIs: > 10 activations in 10 min is a flood; 3 within 1 min is chattering."""
    from report_factory import BATCH, Journal, report_store

    from flexctl.report.model import build_report

    store = report_store(tmp_path / "kpi.db")
    extra = Journal()
    for n in range(11):  # 11 activations of distinct alarms within 5 min: one flood
        extra.add(
            EntryKind.ALARM,
            50_000 + 30 * n,
            device="bioreactor",
            alarm=f"A{n}",
            event="Activate",
            old="Normal",
            new="Unacknowledged",
            active=True,
        )
    for t in (60_000.0, 60_020.0, 60_040.0):  # one device code raised 3 times in 40 s
        extra.add(
            EntryKind.ALARM,
            t,
            device="freezer",
            active=["DOOR_OPEN"],
            raised=["DOOR_OPEN"],
            cleared=[],
        )
    for entry in extra.entries:
        store.append_entry(entry)
    summary = build_report(store, BATCH).summary
    assert summary.alarm_floods == 1
    assert summary.chattering_alarms == ("freezer:DOOR_OPEN",)
    store.close()
