"""The SQLite store: every method round-trips, append-only holds, the file is checked at open."""

from __future__ import annotations

import itertools
import math
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from flexctl.record.canonical import GENESIS_HASH
from flexctl.record.journal import EntryKind, Journal, JournalEntry
from flexctl.record.migrations import APPEND_ONLY_TABLES, LATEST
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import AuditRecord, RecordError, Sample, Store
from tests.record_factory import T0, audit_record, batch_info, entry, raw, sample, user

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "flexctl.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(path) as opened:
        opened.create_batch(batch_info())
        yield opened


def test_it_is_a_store_and_its_journal_a_journal(store: SqliteStore, path: Path) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.journal("B-1"), Journal)
    assert store.location == str(path)


# -- batches ---------------------------------------------------------------------------


def test_a_batch_reads_back_equal(store: SqliteStore) -> None:
    assert store.batch("B-1") == batch_info()
    assert store.batch("B-1").created_utc.tzinfo is UTC


def test_batches_are_listed_oldest_first_and_by_line(store: SqliteStore) -> None:
    store.create_batch(batch_info("B-0", line="suite-2", simulated=False))
    store.create_batch(batch_info("B-2"))
    assert [b.batch_id for b in store.batches()] == ["B-1", "B-0", "B-2"]
    assert [b.batch_id for b in store.batches(line="sim")] == ["B-1", "B-2"]
    assert store.batches(line="suite-2") == [batch_info("B-0", line="suite-2", simulated=False)]
    assert store.batches(line="nowhere") == []


def test_a_duplicate_batch_id_is_refused_and_the_first_kept(store: SqliteStore) -> None:
    with pytest.raises(RecordError, match=r"batch 'B-1' already exists"):
        store.create_batch(replace(batch_info(), created_by="mallory"))
    assert store.batch("B-1").created_by == "alice"
    assert len(store.batches()) == 1


def test_an_unknown_batch_is_named_in_every_error(store: SqliteStore, path: Path) -> None:
    for call in (
        lambda: store.batch("B-404"),
        lambda: store.journal("B-404"),
        lambda: store.journal_entries("B-404"),
        lambda: store.samples("B-404"),
        lambda: store.append_entry(entry(batch="B-404")),
        lambda: store.write_samples([replace(sample(1.0), batch="B-404")]),
    ):
        with pytest.raises(RecordError, match=r"no batch 'B-404'") as caught:
            call()
        assert str(path) in str(caught.value)
    assert store.journal_entries("B-1") == []


def test_a_batch_that_json_cannot_hold_is_refused(store: SqliteStore) -> None:
    with pytest.raises(RecordError, match="finite"):
        store.create_batch(replace(batch_info("B-2"), parameters={"x": math.inf}))
    with pytest.raises(RecordError, match="no time zone"):
        store.create_batch(replace(batch_info("B-2"), created_utc=datetime(2025, 1, 1)))
    assert [b.batch_id for b in store.batches()] == ["B-1"]


# -- journal ---------------------------------------------------------------------------


def test_journal_entries_read_back_equal_with_the_same_floats_and_utc(
    store: SqliteStore,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    appended = [
        entry(0),
        JournalEntry(
            process_time=3,  # an int: stored as the float it stands for
            utc=datetime(2025, 3, 4, 9, 0, 0, tzinfo=plus_two),
            kind=EntryKind.DEVIATION,
            actor="bob",
            batch="B-1",
            payload={
                "tiny": 5e-324,
                "third": 1 / 3,
                "minus_zero": -0.0,
                "big": 2**80,
                "nested": {"list": [1, 1.0, True, None, "ü"]},
            },
        ),
        JournalEntry(-0.0, T0, EntryKind.RECORD, "system", "B-1"),
    ]
    journal = store.journal("B-1")
    for one in appended:
        journal.append(one)
    back = journal.entries()
    assert back == appended
    assert all(e.utc.tzinfo is UTC for e in back)
    assert back[1].process_time == 3.0 and isinstance(back[1].process_time, float)
    assert math.copysign(1, back[2].process_time) == -1
    assert math.copysign(1, back[1].payload["minus_zero"]) == -1  # type: ignore[arg-type]
    assert back[1].payload["nested"] == {"list": [1, 1.0, True, None, "ü"]}
    assert type(back[1].payload["nested"]["list"][1]) is float  # type: ignore[index]


def test_stored_entries_form_one_chain_across_batches(store: SqliteStore) -> None:
    store.create_batch(batch_info("B-2"))
    first = store.append_entry(entry(0))
    second = store.append_entry(entry(1, batch="B-2"))
    third = store.append_entry(entry(2))
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert store.journal_entries("B-1") == [first, third]
    assert store.journal_entries("B-2") == [second]
    assert [e.entry for e in store.journal_entries("B-1")] == store.journal("B-1").entries()


def test_a_journal_refuses_another_batchs_entry_and_non_entries(store: SqliteStore) -> None:
    store.create_batch(batch_info("B-2"))
    journal = store.journal("B-1")
    with pytest.raises(
        RecordError, match=r"journal of batch 'B-1' refuses an entry of batch 'B-2'"
    ):
        journal.append(entry(batch="B-2"))
    with pytest.raises(TypeError):
        journal.append({"kind": "record"})  # type: ignore[arg-type]
    assert store.journal_entries("B-2") == []


def test_an_unstorable_entry_is_refused_and_nothing_is_appended(store: SqliteStore) -> None:
    journal = store.journal("B-1")
    with pytest.raises(RecordError, match="not finite"):
        journal.append(replace(entry(), process_time=math.nan))
    with pytest.raises(RecordError, match="actor must be text"):
        journal.append(replace(entry(), actor=7))  # type: ignore[arg-type]
    journal.append(entry(1))
    assert [e.seq for e in store.journal_entries("B-1")] == [1]


# -- audit trail -----------------------------------------------------------------------


def test_audit_records_read_back_equal_and_chain(store: SqliteStore) -> None:
    records = [
        audit_record(0),
        AuditRecord(utc=T0, actor="admin", action="user added", object="user:carol"),
        audit_record(2, batch="B-9"),
        AuditRecord(
            T0, "qa", "note", "batch:B-1", old_value=[1, "a"], new_value=None, process_time=4
        ),
    ]
    stored = [store.audit(record) for record in records]
    assert [s.seq for s in stored] == [1, 2, 3, 4]
    assert stored[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert store.audit_entries() == stored
    assert [s.record for s in stored] == records
    assert stored[3].record.process_time == 4.0
    assert [s.seq for s in store.audit_entries(batch="B-1")] == [1]
    assert [s.seq for s in store.audit_entries(batch="")] == [2, 4]
    assert store.audit_entries(batch="B-404") == []


def test_an_unstorable_audit_record_is_refused(store: SqliteStore) -> None:
    with pytest.raises(RecordError, match="no time zone"):
        store.audit(replace(audit_record(), utc=datetime(2025, 1, 1)))
    with pytest.raises(RecordError, match="finite"):
        store.audit(replace(audit_record(), new_value=math.nan))
    with pytest.raises(TypeError):
        store.audit(entry())  # type: ignore[arg-type]
    assert store.audit_entries() == []


# -- historian samples -----------------------------------------------------------------


def test_sample_values_come_back_as_the_same_type(store: SqliteStore) -> None:
    values: list[float | int | str | bool | None] = [
        36.6, -0.0, math.inf, 1.0, 1, 2**62, -(2**63), True, False, "ok", "", None,
    ]  # fmt: skip
    written = [sample(float(i), value) for i, value in enumerate(values)]
    store.write_samples(written)
    back = store.samples("B-1")
    assert back == written
    for got, value in zip(back, values, strict=True):
        assert type(got.value) is type(value), (got.value, value)
    assert math.copysign(1, back[1].value) == -1  # type: ignore[arg-type]
    assert back[0].utc.tzinfo is UTC


def test_a_nan_sample_stays_a_float_nan(store: SqliteStore) -> None:
    store.write_samples([sample(0.0, math.nan)])
    (back,) = store.samples("B-1")
    assert isinstance(back.value, float) and math.isnan(back.value)


def test_samples_are_filtered_by_device_signal_and_inclusive_time_range(
    store: SqliteStore,
) -> None:
    temps = [sample(t, 37.0 + t) for t in (0.0, 60.0, 120.0, 180.0)]
    ph = [sample(t, 7.2, signal="ph") for t in (30.0, 90.0)]
    other = replace(sample(60.0, 5.0), device="freezer")
    store.write_samples([temps[2], ph[1], temps[0], other, ph[0], temps[3], temps[1]])
    assert store.samples("B-1", device="bioreactor", signal="temperature") == temps
    assert store.samples("B-1", signal="temperature", start=60.0, end=120.0) == [
        other,
        *temps[1:3],
    ]
    assert store.samples("B-1", device="bioreactor", start=60.0, end=120.0) == [
        temps[1],
        ph[1],
        temps[2],
    ]
    assert store.samples("B-1", signal="ph", start=31.0) == ph[1:]
    assert store.samples("B-1", device="freezer") == [other]
    assert [s.process_time for s in store.samples("B-1", end=30.0)] == [0.0, 30.0]
    assert store.samples("B-1", signal="missing") == []


def test_a_sample_write_is_all_or_nothing(store: SqliteStore) -> None:
    good = sample(1.0)
    with pytest.raises(RecordError, match="no batch 'B-404'"):
        store.write_samples([good, replace(good, batch="B-404")])
    assert store.samples("B-1") == []
    store.write_samples([])
    assert store.samples("B-1") == []


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"value": [1]}, TypeError, "not a float, int, bool, str or None"),
        ({"value": 2**63}, ValueError, "64 bits"),
        ({"process_time": math.nan}, ValueError, "finite"),
        ({"process_time": "1"}, ValueError, "finite"),
        ({"utc": datetime(2025, 1, 1)}, ValueError, "time zone"),
    ],
)
def test_a_bad_sample_cannot_be_made(
    changes: dict[str, object], error: type[Exception], match: str
) -> None:
    fields = {
        "batch": "B-1",
        "device": "bioreactor",
        "signal": "temperature",
        "process_time": 1.0,
        "utc": T0,
        "value": 1.0,
    }
    with pytest.raises(error, match=match):
        Sample(**{**fields, **changes})  # type: ignore[arg-type]


# -- users -----------------------------------------------------------------------------


def test_users_round_trip_and_disabling_is_a_new_fact(store: SqliteStore, path: Path) -> None:
    store.add_user(user("alice"))
    store.add_user(user("bob", disabled=True))
    assert store.user("alice") == user("alice")
    assert store.users() == [user("alice"), user("bob", disabled=True)]
    store.set_user_disabled("alice", True)
    store.set_user_disabled("bob", False)
    assert store.user("alice").disabled and not store.user("bob").disabled
    store.set_user_disabled("alice", False)
    assert store.user("alice") == user("alice")
    with raw(path) as conn:
        events = conn.execute("SELECT user_id, disabled FROM user_events ORDER BY seq").fetchall()
    assert events == [("bob", 1), ("alice", 1), ("bob", 0), ("alice", 0)]


def test_a_user_id_is_never_reused_and_unknown_users_are_named(store: SqliteStore) -> None:
    store.add_user(user("alice"))
    with pytest.raises(RecordError, match="user 'alice' already exists"):
        store.add_user(replace(user("alice"), printed_name="Someone Else"))
    assert store.user("alice").printed_name == "Alice Example"
    with pytest.raises(RecordError, match="no user 'carol'"):
        store.user("carol")
    with pytest.raises(RecordError, match="no user 'carol'"):
        store.set_user_disabled("carol", True)


# -- append-only, durability, the file -------------------------------------------------


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_every_record_table_refuses_update_and_delete(
    store: SqliteStore, path: Path, table: str
) -> None:
    store.append_entry(entry())
    store.audit(audit_record())
    store.write_samples([sample(1.0)])
    store.add_user(user("alice", disabled=True))
    with raw(path) as conn:
        (before,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert before == 1
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only, UPDATE"):
            conn.execute(f"UPDATE {table} SET seq = seq + 10")
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only, DELETE"):
            conn.execute(f"DELETE FROM {table}")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_reopening_keeps_everything_and_the_chains_go_on(path: Path) -> None:
    with SqliteStore(path) as store:
        store.create_batch(batch_info())
        store.add_user(user())
        first = store.append_entry(entry(0))
        audit = store.audit(audit_record(0))
        store.write_samples([sample(0.5, 3)])
    with SqliteStore(path) as store:
        assert store.batch("B-1") == batch_info()
        assert store.users() == [user()]
        assert store.journal_entries("B-1") == [first]
        assert store.audit_entries() == [audit]
        assert store.samples("B-1") == [sample(0.5, 3)]
        second = store.append_entry(entry(1))
        assert (second.seq, second.prev_hash) == (2, first.hash)
        assert store.verify().ok


def test_the_file_is_wal_with_foreign_keys_on(store: SqliteStore, path: Path) -> None:
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (LATEST,)
    # A connection's own settings: looked at through the store's connection.
    db = store._db
    assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_close_is_idempotent_and_a_closed_store_says_so(path: Path) -> None:
    store = SqliteStore(path)
    store.close()
    store.close()
    with pytest.raises(RecordError, match="closed"):
        store.batches()
    with SqliteStore(path) as again:
        assert again.batches() == []
    with pytest.raises(RecordError, match="closed"):
        again.verify()


def test_a_store_written_by_a_newer_flexctl_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 98}")
    with pytest.raises(RecordError) as caught:
        SqliteStore(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"version {LATEST + 98}" in message
    assert f"version {LATEST})" in message


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(path: Path) -> None:
    path.write_text("batch,step\nB-1,thaw\n" * 100)
    before = path.read_bytes()
    with pytest.raises(
        RecordError, match=r"not a flexctl store \(not an SQLite database"
    ) as caught:
        SqliteStore(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


def test_someone_elses_sqlite_database_is_refused_and_left_alone(path: Path) -> None:
    with raw(path) as conn:
        conn.execute("CREATE TABLE inventory (item TEXT)")
    before = path.read_bytes()
    with pytest.raises(RecordError, match=r"not a flexctl store .*tables: inventory"):
        SqliteStore(path)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + "-wal").exists()


def test_a_store_missing_its_tables_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    with raw(path, drop_triggers=True) as conn:
        conn.execute("DROP TABLE samples")
    with pytest.raises(RecordError, match=r"lacks the table.*samples"):
        SqliteStore(path)


def test_without_create_a_missing_file_is_refused_not_made(path: Path) -> None:
    with pytest.raises(RecordError, match="does not exist"):
        SqliteStore(path, create=False)
    assert not path.exists()


def _python(script: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_append_survives_a_sigkill_of_the_process(path: Path) -> None:
    child = _python(
        """
        import os, signal, sys
        from tests.record_factory import batch_info, entry
        from flexctl.record.sqlite_store import SqliteStore
        store = SqliteStore(sys.argv[1])
        store.create_batch(batch_info())
        for n in range(50):
            store.append_entry(entry(n))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint
        """,
        path,
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == -9, err
    with SqliteStore(path) as store:
        assert [e.entry for e in store.journal_entries("B-1")] == [entry(n) for n in range(50)]
        assert store.verify().ok


def test_two_processes_appending_to_one_file_keep_one_chain(path: Path) -> None:
    with SqliteStore(path) as store:
        store.create_batch(batch_info())
        store.create_batch(batch_info("B-2"))
    count = 1000
    child = _python(
        f"""
        import sys
        from tests.record_factory import entry
        from flexctl.record.sqlite_store import SqliteStore
        with SqliteStore(sys.argv[1]) as store:
            print("ready", flush=True)
            sys.stdin.readline()
            for n in range({count}):
                store.append_entry(entry(n, batch="B-2"))
        """,
        path,
    )
    assert child.stdout is not None and child.stdin is not None
    with SqliteStore(path) as store:
        # Both start appending at once, so their transactions interleave.
        assert child.stdout.readline() == "ready\n"
        child.stdin.write("go\n")
        child.stdin.flush()
        for n in range(count):
            store.append_entry(entry(n))
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        result = store.verify()
        assert result.ok, result.problems
        assert result.checked["journal"] == 2 * count
        assert [e.entry for e in store.journal_entries("B-2")] == [
            entry(n, batch="B-2") for n in range(count)
        ]
        # Whether the two actually interleaved is up to the scheduler (on a loaded
        # machine one may finish first); the chain must hold either way, and does above.
