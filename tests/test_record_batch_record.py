"""A batch's record: every entry in the journal, the GMP-relevant ones in the audit trail too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from record_factory import batch_info, entry

from flexctl.record.batch_record import audit_record, batch_info_hash, create_batch
from flexctl.record.journal import EntryKind, JSONValue
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import AuditRecord, RecordError

AUDITED: list[tuple[EntryKind, dict[str, JSONValue], str, str, JSONValue, JSONValue, str]] = [
    (
        EntryKind.BATCH_STATE,
        {"old": "Held", "new": "Restarting", "command": "Restart", "reason": "pump mended"},
        "batch Restart",
        "batch B-1",
        "Held",
        "Restarting",
        "pump mended",
    ),
    (
        EntryKind.PARAMETER,
        {"name": "moi", "value": 5.0, "default": False},
        "parameter set",
        "parameter moi",
        None,
        5.0,
        "set for this batch",
    ),
    (
        EntryKind.SIGNATURE,
        {"value": "LOT-1", "meaning": "verified", "role": "supervisor", "printed_name": "Bo"},
        "e-signature",
        "step expand/step-3",
        None,
        "LOT-1",
        "verified as supervisor by Bo; record sha256 ",
    ),
    (
        EntryKind.PROMPT,
        {"rejected": 250.0, "why": "250.0 is outside [0.1, 200]"},
        "entry rejected",
        "step expand/step-3",
        None,
        250.0,
        "250.0 is outside [0.1, 200]",
    ),
    (
        EntryKind.DEVIATION,
        {"deviation": "safe state failed", "message": "bioreactor: stop_perfusion failed"},
        "deviation",
        "device bioreactor",
        None,
        "safe state failed",
        "bioreactor: stop_perfusion failed",
    ),
    (
        EntryKind.INTERLOCK,
        {"interlock": "band:do_floor", "action": "hold", "reason": "do = 4 outside [10, +inf]"},
        "interlock tripped",
        "band:do_floor",
        None,
        "hold",
        "do = 4 outside [10, +inf]",
    ),
    (
        EntryKind.ALARM,
        {"active": ["TEMP", "DO_LOW"], "raised": ["DO_LOW"], "cleared": ["PH_LOW"]},
        "device alarms changed",
        "device bioreactor",
        ["TEMP", "PH_LOW"],  # what was active before: still active, and cleared now
        ["TEMP", "DO_LOW"],
        "raised DO_LOW",
    ),
]


@pytest.mark.parametrize("case", AUDITED, ids=[c[0].value for c in AUDITED])
def test_gmp_relevant_entries_map_to_who_what_when_old_new_why(
    case: tuple[EntryKind, dict[str, JSONValue], str, str, JSONValue, JSONValue, str],
) -> None:
    kind, payload, action, obj, old, new, reason = case
    source = entry(3, kind=kind, payload=payload)
    record = audit_record(source)
    assert record == AuditRecord(
        utc=source.utc,
        actor=source.actor,
        action=action,
        object=obj,
        old_value=old,
        new_value=new,
        reason=reason,
        batch="B-1",
        process_time=source.process_time,
    )


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (EntryKind.COMMAND, {"method": "sample", "args": {}}),
        (EntryKind.COMMAND_RESULT, {"method": "sample", "result": 1.0}),
        (EntryKind.STEP_START, {"attempt": 1}),
        (EntryKind.STEP_END, {"result": "done"}),
        (EntryKind.RECORD, {"value": 1.0}),
        (EntryKind.PROMPT, {"text": "scan the bag"}),  # asked, not yet answered
        (EntryKind.INTERLOCK, {"event": "armed", "interlocks": ["x"]}),
    ],
)
def test_process_data_stays_in_the_journal_only(
    kind: EntryKind, payload: dict[str, JSONValue]
) -> None:
    assert audit_record(entry(1, kind=kind, payload=payload)) is None


def test_a_batch_record_writes_the_journal_and_audits_its_creation(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "x.db") as store:
        info = batch_info()
        record = create_batch(store, info, process_time=0.0)
        record.append(entry(1, payload={"n": 1}))
        record.append(entry(2, kind=EntryKind.DEVIATION, payload={"deviation": "late"}))
        assert [e.payload.get("n") for e in record.entries()] == [1, None]
        audit = store.audit_entries(batch="B-1")
        assert [a.record.action for a in audit] == ["batch created", "deviation"]
        created = audit[0].record.new_value
        assert isinstance(created, dict)
        assert created["batch_info_sha256"] == batch_info_hash(info)
        assert store.verify().ok


def test_an_entry_and_its_audit_record_are_written_together_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing audit write fails the append (the executor holds) and leaves no journal entry."""
    store = SqliteStore(tmp_path / "x.db")
    record = create_batch(store, batch_info(), process_time=0.0)
    record.append(entry(1, payload={"n": 1}))

    def refuse(db: sqlite3.Connection, audit: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_insert_audit", refuse)
    with pytest.raises(RecordError, match="disk I/O error"):
        record.append(entry(2, kind=EntryKind.DEVIATION, payload={"deviation": "late"}))
    record.append(entry(3, payload={"n": 3}))  # not audited: goes in alone
    assert [e.payload.get("n") for e in record.entries()] == [1, 3]
    monkeypatch.undo()
    assert [a.record.action for a in store.audit_entries(batch="B-1")] == ["batch created"]
    assert store.verify().ok
    store.close()


def test_the_batch_hash_changes_with_what_was_run() -> None:
    info = batch_info()
    other = batch_info()
    assert batch_info_hash(info) == batch_info_hash(other)
    changed = type(info)(**{**info.__dict__, "procedure_text": info.procedure_text + "#"})
    assert batch_info_hash(changed) != batch_info_hash(info)
