"""Small builders for the record-store tests: batches, entries, audit records, samples."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.record.migrations import APPEND_ONLY_TABLES
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import AuditRecord, BatchInfo, Sample, UserRecord

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def batch_info(batch_id: str = "B-1", *, line: str = "sim", simulated: bool = True) -> BatchInfo:
    return BatchInfo(
        batch_id=batch_id,
        procedure_name="car-t",
        procedure_version="1.2",
        procedure_path="procedures/car-t.yaml",
        procedure_sha256="ab" * 32,
        procedure_text="name: car-t\nversion: '1.2'\n# ünïcode ✓\n",
        line_name=line,
        line_path=f"config/lines/{line}.yaml",
        line_text=f"name: {line}\n",
        parameters={"culture_temp": 37.0, "vector_lot": "LV-1", "doses": 3, "ok": True},
        seed=42 if simulated else None,
        simulated=simulated,
        devices={"bioreactor": {"driver": "Bioreactor", "transport": "opcua", "serial": None}},
        created_utc=T0,
        created_by="alice",
    )


def entry(
    n: int = 0,
    *,
    batch: str = "B-1",
    kind: EntryKind = EntryKind.COMMAND,
    payload: dict[str, JSONValue] | None = None,
) -> JournalEntry:
    return JournalEntry(
        process_time=n * 0.1,
        utc=T0 + timedelta(seconds=n * 0.1),
        kind=kind,
        actor="system",
        batch=batch,
        unit_procedure="expand",
        step=f"step-{n}",
        device="bioreactor",
        payload={"n": n, "setpoint": 36.6 + n / 3} if payload is None else payload,
    )


def audit_record(n: int = 0, *, batch: str = "B-1") -> AuditRecord:
    return AuditRecord(
        utc=T0 + timedelta(seconds=n),
        actor="bob",
        action="parameter changed",
        object=f"parameter:p{n}",
        old_value={"value": n},
        new_value={"value": n + 0.5},
        reason=f"deviation DV-{n}",
        batch=batch,
        process_time=float(n),
    )


def sample(
    t: float, value: float | int | str | bool | None = 1.0, *, signal: str = "temperature"
) -> Sample:
    return Sample(
        batch="B-1",
        device="bioreactor",
        signal=signal,
        process_time=t,
        utc=T0 + timedelta(seconds=t),
        value=value,
    )


def user(user_id: str = "alice", *, disabled: bool = False) -> UserRecord:
    return UserRecord(
        user_id=user_id,
        printed_name=user_id.title() + " Example",
        roles=frozenset({"operator", "supervisor"}),
        password_hash="scrypt$16384$8$1$c2FsdA$aGFzaA",
        created_utc=T0,
        disabled=disabled,
    )


def filled_store(path: Path, *, entries: int = 5, audits: int = 5) -> SqliteStore:
    """A store at ``path`` with batch B-1, ``entries`` journal entries and ``audits`` records."""
    store = SqliteStore(path)
    store.create_batch(batch_info())
    journal = store.journal("B-1")
    for n in range(entries):
        journal.append(entry(n))
    for n in range(audits):
        store.audit(audit_record(n))
    return store


@contextmanager
def raw(path: Path, *, drop_triggers: bool = False) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the store's file (committed on exit), as a tamperer has."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if drop_triggers:
            for table in APPEND_ONLY_TABLES:
                for verb in ("update", "delete"):
                    conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        yield conn
    finally:
        conn.close()
