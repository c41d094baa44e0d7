"""Tampering with the file behind the store's back: verify() finds it and names the first bad seq.

Each test opens the SQLite file as a tamperer would (plain sqlite3, triggers
dropped), changes it, and checks both chains. Two limits of a keyless chain are
not tested because no chain can find them: removing the newest entries, and
appending a well-formed entry at the end.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.record.chain import audit_rehash, journal_rehash
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import ChainProblem, RecordError
from tests.record_factory import entry, filled_store, raw

TABLES = ("journal", "audit")
REHASH: dict[str, Callable[[tuple[object, ...]], str]] = {
    "journal": journal_rehash,
    "audit": audit_rehash,
}


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _row(conn: sqlite3.Connection, table: str, seq: int) -> tuple[object, ...]:
    return tuple(conn.execute(f"SELECT * FROM {table} WHERE seq = ?", (seq,)).fetchone())


def edit(conn: sqlite3.Connection, table: str, seq: int, column: str, value: object) -> None:
    conn.execute(f"UPDATE {table} SET {column} = ? WHERE seq = ?", (value, seq))


def delete(conn: sqlite3.Connection, table: str, seq: int) -> None:
    conn.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,))


def swap(conn: sqlite3.Connection, table: str, first: int, second: int) -> None:
    """Exchange two entries' places: each row keeps its own content under the other's seq."""
    conn.execute(f"UPDATE {table} SET seq = -1 WHERE seq = ?", (first,))
    conn.execute(f"UPDATE {table} SET seq = ? WHERE seq = ?", (first, second))
    conn.execute(f"UPDATE {table} SET seq = ? WHERE seq = -1", (second,))


def insert_after(conn: sqlite3.Connection, table: str, after: int, *, well_formed: bool) -> None:
    """Insert a forged copy of entry ``after + 1`` after entry ``after``, renumbering the rest.

    ``well_formed``: the forger links it to its predecessor and gives it the
    hash its content should have, so only the entry after it can give it away.
    """
    model = list(_row(conn, table, after + 1))
    conn.execute(f"UPDATE {table} SET seq = -seq WHERE seq > ?", (after,))
    conn.execute(f"UPDATE {table} SET seq = 1 - seq WHERE seq < 0")
    columns = _columns(conn, table)
    forged = dict(zip(columns, model, strict=True))
    forged["seq"] = after + 1
    forged["actor"] = "mallory"
    if well_formed:
        previous = conn.execute(f"SELECT hash FROM {table} WHERE seq = ?", (after,)).fetchone()
        forged["prev_hash"] = previous[0] if previous else "0" * 64
        forged["hash"] = REHASH[table](tuple(forged.values()))
    marks = ", ".join("?" * len(columns))
    conn.execute(f"INSERT INTO {table} VALUES ({marks})", tuple(forged.values()))


def _problems(path: Path) -> list[ChainProblem]:
    with SqliteStore(path) as store:
        return list(store.verify().problems)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    location = tmp_path / "flexctl.db"
    filled_store(location, entries=6, audits=6).close()
    return location


def test_an_untouched_store_verifies_and_counts_every_entry(path: Path) -> None:
    with SqliteStore(path) as store:
        result = store.verify()
    assert result.ok
    assert result.checked == {"journal": 6, "audit": 6}


def test_an_empty_store_verifies(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "empty.db") as store:
        result = store.verify()
    assert result.ok
    assert result.checked == {"journal": 0, "audit": 0}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "mallory"), ("process_time", 99.5), ("utc", "2025-03-04T05:06:08.123456+00:00")],
)
def test_an_edited_field_is_found_at_its_seq(
    path: Path, table: str, column: str, value: object
) -> None:
    with raw(path, drop_triggers=True) as conn:
        edit(conn, table, 3, column, value)
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == (table, 3)
    assert "hash mismatch" in problem.reason


def test_an_edited_payload_or_value_is_found(path: Path) -> None:
    with raw(path, drop_triggers=True) as conn:
        payload = conn.execute("SELECT payload FROM journal WHERE seq = 4").fetchone()[0]
        edit(conn, "journal", 4, "payload", payload.replace('"n":3', '"n":33'))
        edit(conn, "audit", 2, "new_value", '{"value":9.5}')
    problems = _problems(path)
    assert [(p.table, p.seq) for p in problems] == [("journal", 4), ("audit", 2)]
    assert all("hash mismatch" in p.reason for p in problems)


@pytest.mark.parametrize("table", TABLES)
def test_an_edit_that_recomputes_its_own_hash_is_found_at_the_next_entry(
    path: Path, table: str
) -> None:
    with raw(path, drop_triggers=True) as conn:
        edit(conn, table, 2, "actor", "mallory")
        edit(conn, table, 2, "hash", REHASH[table](_row(conn, table, 2)))
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == (table, 3)
    assert "prev_hash is not the hash of seq 2" in problem.reason


def test_a_payload_rewritten_in_another_json_spelling_is_found(path: Path) -> None:
    with raw(path, drop_triggers=True) as conn:
        payload = conn.execute("SELECT payload FROM journal WHERE seq = 5").fetchone()[0]
        edit(conn, "journal", 5, "payload", payload.replace(",", ", "))
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == ("journal", 5)
    assert "not canonical JSON" in problem.reason


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(("deleted", "found"), [(1, 2), (3, 4), (5, 6)])
def test_a_deleted_entry_is_found_at_the_entry_after_it(
    path: Path, table: str, deleted: int, found: int
) -> None:
    with raw(path, drop_triggers=True) as conn:
        delete(conn, table, deleted)
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == (table, found)
    assert "seq gap" in problem.reason


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("after", [0, 2, 5])
def test_an_inserted_forgery_is_found(path: Path, table: str, after: int) -> None:
    with raw(path, drop_triggers=True) as conn:
        insert_after(conn, table, after, well_formed=True)
    (problem,) = _problems(path)
    # The forgery itself is well formed; the renumbered entry after it is not.
    assert (problem.table, problem.seq) == (table, after + 2)
    assert "hash mismatch" in problem.reason


@pytest.mark.parametrize("table", TABLES)
def test_a_naive_forgery_is_found_at_itself(path: Path, table: str) -> None:
    with raw(path, drop_triggers=True) as conn:
        insert_after(conn, table, 3, well_formed=False)
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == (table, 4)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(("first", "second"), [(1, 2), (2, 5), (5, 6)])
def test_two_swapped_entries_are_found_at_the_first(
    path: Path, table: str, first: int, second: int
) -> None:
    with raw(path, drop_triggers=True) as conn:
        swap(conn, table, first, second)
    (problem,) = _problems(path)
    assert (problem.table, problem.seq) == (table, first)


def test_an_unreadable_entry_is_found_at_its_seq(path: Path) -> None:
    with raw(path, drop_triggers=True) as conn:
        edit(conn, "journal", 2, "kind", "coffee_break")
        edit(conn, "audit", 6, "old_value", "{not json")
    problems = _problems(path)
    assert [(p.table, p.seq) for p in problems] == [("journal", 2), ("audit", 6)]
    assert all(p.reason.startswith("unreadable entry") for p in problems)


def test_reading_an_unreadable_entry_is_a_record_error(path: Path) -> None:
    with raw(path, drop_triggers=True) as conn:
        edit(conn, "journal", 2, "utc", "yesterday")
        edit(conn, "audit", 1, "new_value", "{")
    with SqliteStore(path) as store:
        with pytest.raises(RecordError, match=r"a row of journal cannot be read.*audit verify"):
            store.journal_entries("B-1")
        with pytest.raises(RecordError, match="a row of audit cannot be read"):
            store.audit_entries()


def test_only_the_first_problem_of_a_chain_is_named_and_every_entry_counted(path: Path) -> None:
    with raw(path, drop_triggers=True) as conn:
        edit(conn, "journal", 5, "actor", "mallory")
        edit(conn, "journal", 2, "actor", "mallory")
    with SqliteStore(path) as store:
        result = store.verify()
    assert not result.ok
    assert [(p.table, p.seq) for p in result.problems] == [("journal", 2)]
    assert result.checked == {"journal": 6, "audit": 6}


# -- any tampering, anywhere -----------------------------------------------------------

TAMPERINGS = ("edit", "relinked edit", "delete", "insert", "swap")


@st.composite
def _tampering(draw: st.DrawFn) -> tuple[int, int, str, str, int, int]:
    """(entries, audits, table, what, position, other): a store and one change to it."""
    entries = draw(st.integers(2, 12))
    audits = draw(st.integers(2, 12))
    table = draw(st.sampled_from(TABLES))
    length = entries if table == "journal" else audits
    what = draw(st.sampled_from(TAMPERINGS))
    if what == "edit":
        position = draw(st.integers(1, length))
    elif what == "insert":
        position = draw(st.integers(0, length - 1))  # at the end it is just a new entry
    else:
        # Not the newest: a relinked edit or a deletion of it leaves no trace in the chain.
        position = draw(st.integers(1, length - 1))
    other = draw(st.integers(position + 1, length)) if what == "swap" else 0
    return entries, audits, table, what, position, other


def _expected_seq(what: str, position: int) -> int:
    return {"edit": position, "swap": position, "insert": position + 2}.get(what, position + 1)


@settings(max_examples=60, deadline=None)
@given(_tampering(), st.data())
def test_any_one_tampering_is_found_at_the_right_seq(
    case: tuple[int, int, str, str, int, int], data: st.DataObject
) -> None:
    entries, audits, table, what, position, other = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flexctl.db"
        store = filled_store(path, entries=0, audits=audits)
        for n in range(entries):
            payload = data.draw(st.dictionaries(st.text(max_size=5), st.floats(-1e9, 1e9)))
            store.append_entry(entry(n, payload=dict(payload)))
        store.close()
        with raw(path, drop_triggers=True) as conn:
            if what == "edit":
                edit(conn, table, position, "actor", "mallory")
            elif what == "relinked edit":
                edit(conn, table, position, "actor", "mallory")
                edit(conn, table, position, "hash", REHASH[table](_row(conn, table, position)))
            elif what == "delete":
                delete(conn, table, position)
            elif what == "insert":
                insert_after(conn, table, position, well_formed=True)
            else:
                swap(conn, table, position, other)
        problems = _problems(path)
    assert [(p.table, p.seq) for p in problems] == [(table, _expected_seq(what, position))]
