"""The store's schema, versioned with ``PRAGMA user_version`` and migrated at open.

:data:`MIGRATIONS` is the ordered list of steps; step *n* takes a store from
version *n - 1* to *n* in one transaction (SQLite's DDL is transactional, and so
is ``user_version``), so a crash mid-way leaves the previous version whole. A
flexctl store is marked with :data:`APPLICATION_ID` in the SQLite header: a file
without it that is not empty is someone else's database and is refused, as is a
store written by a newer flexctl than this one.

Append-only is enforced in the file itself: triggers abort any UPDATE or DELETE
on the record's tables, whatever program opens it. (Anyone who can drop a
trigger can still edit; the hash chains are what detect that.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from flexctl.record.store import RecordError

#: "FLXC": marks an SQLite file as a flexctl store (``PRAGMA application_id``).
APPLICATION_ID = 0x464C5843

#: Tables no row of which is ever updated or deleted.
APPEND_ONLY_TABLES = ("batches", "journal", "audit", "samples", "users", "user_events")


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the statements that take it to ``version``."""

    version: int
    summary: str
    statements: tuple[str, ...]


def _append_only(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'flexctl record: {table} is append-only, "
        f"{verb} refused'); END"
        for verb in ("UPDATE", "DELETE")
    ]


# JSON columns hold the canonical encoding (flexctl.record.canonical); times are
# UTC ISO 8601 text with microseconds. process_time and sample values have no
# declared type on purpose: a REAL column would store -0.0 as 0.0.
_V1_TABLES = (
    """CREATE TABLE batches (
        seq INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        procedure_name TEXT NOT NULL,
        procedure_version TEXT NOT NULL,
        procedure_path TEXT NOT NULL,
        procedure_sha256 TEXT NOT NULL,
        procedure_text TEXT NOT NULL,
        line_name TEXT NOT NULL,
        line_path TEXT NOT NULL,
        line_text TEXT NOT NULL,
        parameters TEXT NOT NULL,
        seed INTEGER,
        simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
        devices TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    "CREATE INDEX batches_line ON batches (line_name, seq)",
    """CREATE TABLE journal (
        seq INTEGER PRIMARY KEY,
        batch TEXT NOT NULL REFERENCES batches (batch_id),
        process_time NOT NULL,
        utc TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        unit_procedure TEXT NOT NULL,
        step TEXT NOT NULL,
        device TEXT NOT NULL,
        payload TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX journal_batch ON journal (batch, seq)",
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        utc TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        old_value TEXT NOT NULL,
        new_value TEXT NOT NULL,
        reason TEXT NOT NULL,
        batch TEXT NOT NULL,
        process_time,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX audit_batch ON audit (batch, seq)",
    """CREATE TABLE samples (
        seq INTEGER PRIMARY KEY,
        batch TEXT NOT NULL REFERENCES batches (batch_id),
        device TEXT NOT NULL,
        signal TEXT NOT NULL,
        process_time NOT NULL,
        utc TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('none', 'bool', 'int', 'float', 'str')),
        value
    )""",
    "CREATE INDEX samples_signal ON samples (batch, signal, process_time)",
    """CREATE TABLE users (
        seq INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL UNIQUE,
        printed_name TEXT NOT NULL,
        roles TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_utc TEXT NOT NULL
    )""",
    """CREATE TABLE user_events (
        seq INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (user_id),
        utc TEXT NOT NULL,
        disabled INTEGER NOT NULL CHECK (disabled IN (0, 1))
    )""",
    "CREATE INDEX user_events_user ON user_events (user_id, seq)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "batches, chained journal and audit trail, samples, users; append-only triggers",
        (
            *_V1_TABLES,
            *(trigger for table in APPEND_ONLY_TABLES for trigger in _append_only(table)),
            f"PRAGMA application_id = {APPLICATION_ID}",
        ),
    ),
)

#: The schema version this code writes.
LATEST = MIGRATIONS[-1].version

#: Tables a store of the latest version has.
TABLES = frozenset(APPEND_ONLY_TABLES)


def migrate(conn: sqlite3.Connection, location: str) -> int:
    """Check that ``conn`` is a flexctl store (or empty), bring it to :data:`LATEST`.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the
    version the store had before. Raises :class:`RecordError` naming ``location``
    for a file that is not a store, a newer schema, or a failed step.
    """
    try:
        application_id = _pragma(conn, "application_id")
        version = _pragma(conn, "user_version")
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise RecordError(
            f"{location}: not a flexctl store (not an SQLite database: {exc})"
        ) from None
    if application_id != APPLICATION_ID and (application_id or version or tables):
        found = ", ".join(sorted(tables)) or "none"
        raise RecordError(
            f"{location}: not a flexctl store (an SQLite database with application_id "
            f"{application_id:#x}, expected {APPLICATION_ID:#x}; tables: {found})"
        )
    if version > LATEST:
        raise RecordError(
            f"{location}: store schema version {version} is newer than this flexctl knows "
            f"(version {LATEST}); open it with a newer flexctl"
        )
    for migration in MIGRATIONS:
        if migration.version > version:
            _apply(conn, migration, location)
    missing = TABLES - _tables(conn)
    if missing:
        raise RecordError(
            f"{location}: flexctl store (schema version {LATEST}) lacks the table(s) "
            f"{', '.join(sorted(missing))}: the file is damaged"
        )
    return version


def _apply(conn: sqlite3.Connection, migration: Migration, location: str) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while this one waited for the lock.
            if _pragma(conn, "user_version") >= migration.version:
                conn.execute("ROLLBACK")
                return
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {migration.version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise RecordError(
            f"{location}: migration to schema version {migration.version} failed: {exc}"
        ) from exc


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0])


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {str(name) for (name,) in rows}
