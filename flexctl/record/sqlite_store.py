"""The default :class:`~flexctl.record.store.Store`: one SQLite file in WAL mode.

Durability: every append (journal entry, audit record) is its own transaction,
committed before the call returns. WAL with ``synchronous=NORMAL`` makes a
commit survive a crash of the process (a SIGKILLed supervisor); only a power
loss can take the last commits, which the operating system had not yet written.
Writes take the lock first (``BEGIN IMMEDIATE``), so reading the previous hash
and inserting the next entry are one atomic step even with a second process
appending to the same file.

The store is used synchronously from asyncio code: each call is one short
transaction, so no thread is involved.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from flexctl.record.canonical import GENESIS_HASH, encode_text, parse_utc, utc_text
from flexctl.record.chain import (
    AUDIT_FIELDS,
    JOURNAL_FIELDS,
    audit_hash,
    audit_record,
    audit_rehash,
    audit_values,
    journal_entry,
    journal_hash,
    journal_rehash,
    journal_values,
    text,
    verify_chain,
)
from flexctl.record.journal import JournalEntry
from flexctl.record.migrations import migrate
from flexctl.record.store import (
    AuditEntry,
    AuditRecord,
    BatchInfo,
    ChainProblem,
    RecordError,
    Sample,
    StoredEntry,
    UserRecord,
    Verification,
)

_T = TypeVar("_T")

#: How long a write waits for another process's transaction to finish (seconds).
BUSY_TIMEOUT_S = 10.0

_JOURNAL_COLUMNS = ("seq", *JOURNAL_FIELDS, "prev_hash", "hash")
_AUDIT_COLUMNS = ("seq", *AUDIT_FIELDS, "prev_hash", "hash")
_BATCH_COLUMNS = (
    "batch_id",
    "procedure_name",
    "procedure_version",
    "procedure_path",
    "procedure_sha256",
    "procedure_text",
    "line_name",
    "line_path",
    "line_text",
    "parameters",
    "seed",
    "simulated",
    "devices",
    "created_utc",
    "created_by",
)
_SAMPLE_COLUMNS = ("batch", "device", "signal", "process_time", "utc", "kind", "value")
_USER_COLUMNS = ("user_id", "printed_name", "roles", "password_hash", "created_utc")


def _select(columns: Sequence[str], table: str) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"


def _insert(columns: Sequence[str], table: str) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


class SqliteStore:
    """A :class:`~flexctl.record.store.Store` in one SQLite file.

    Args:
        path: the store's file; created (with the current schema) if missing.
        create: when False, a missing file is a RecordError instead of a new store.

    Raises:
        RecordError: the file is not a flexctl store, its schema is newer than
            this code, or it cannot be opened; the message names the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self._location = str(path)
        self._conn: sqlite3.Connection | None = None
        if not create and not Path(path).is_file():
            raise RecordError(f"{self._location}: no such store (the file does not exist)")
        # mode=rw: without create, SQLite itself refuses to make a new file (no race).
        target = path if create else Path(path).resolve().as_uri() + "?mode=rw"
        try:
            conn = sqlite3.connect(
                target, isolation_level=None, timeout=BUSY_TIMEOUT_S, uri=not create
            )
        except sqlite3.Error as exc:
            raise RecordError(f"{self._location}: cannot open the store: {exc}") from exc
        try:
            migrate(conn, self._location)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise RecordError(f"{self._location}: cannot open the store: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @property
    def location(self) -> str:
        return self._location

    def close(self) -> None:
        """Close the file; closing again does nothing."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SqliteStore({self._location!r}, {state})"

    # -- plumbing ---------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RecordError(f"{self._location}: the store is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the lock from its start; RecordError on failure."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise RecordError(f"{self._location}: cannot {what}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise RecordError(f"{self._location}: cannot read: {exc}") from exc

    def _decoded(self, table: str, rows: list[Any], decode: Callable[[Any], _T]) -> list[_T]:
        """``rows`` decoded; a row that cannot be is a RecordError, not a stray ValueError."""
        try:
            return [decode(row) for row in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise RecordError(
                f"{self._location}: a row of {table} cannot be read ({exc}); the file was "
                "changed outside flexctl: run flexctl audit verify"
            ) from exc

    def _require_batch(self, db: sqlite3.Connection, batch_id: str) -> None:
        if db.execute("SELECT 1 FROM batches WHERE batch_id = ?", (batch_id,)).fetchone() is None:
            raise RecordError(f"{self._location}: no batch {batch_id!r}")

    # -- batches ----------------------------------------------------------------------
    def create_batch(self, info: BatchInfo, *, audit: AuditRecord | None = None) -> None:
        """Record a new batch (and ``audit``, in one transaction); RecordError if the id exists."""
        values = _batch_values(info)
        with self._write(f"create batch {info.batch_id!r}") as db:
            exists = db.execute("SELECT 1 FROM batches WHERE batch_id = ?", (info.batch_id,))
            if exists.fetchone() is not None:
                raise RecordError(f"{self._location}: batch {info.batch_id!r} already exists")
            db.execute(_insert(_BATCH_COLUMNS, "batches"), values)
            if audit is not None:
                self._insert_audit(db, audit)

    def batch(self, batch_id: str) -> BatchInfo:
        """The batch with this id; RecordError naming the id if there is none."""
        rows = self._read(_select(_BATCH_COLUMNS, "batches") + " WHERE batch_id = ?", (batch_id,))
        if not rows:
            raise RecordError(f"{self._location}: no batch {batch_id!r}")
        return self._decoded("batches", rows, _batch_info)[0]

    def batches(self, *, line: str | None = None) -> list[BatchInfo]:
        """Every batch (of ``line``, if given), oldest first."""
        sql = _select(_BATCH_COLUMNS, "batches")
        if line is None:
            rows = self._read(sql + " ORDER BY seq")
        else:
            rows = self._read(sql + " WHERE line_name = ? ORDER BY seq", (line,))
        return self._decoded("batches", rows, _batch_info)

    # -- journal ----------------------------------------------------------------------
    def journal(self, batch_id: str) -> SqliteJournal:
        """The journal of ``batch_id``; RecordError naming it if the batch was never created."""
        self.batch(batch_id)
        return SqliteJournal(self, batch_id)

    def append_entry(self, entry: JournalEntry, *, audit: AuditRecord | None = None) -> StoredEntry:
        """Append ``entry`` to its batch's journal (and ``audit`` to the audit trail, in the
        same transaction: both or neither), durable on return; the entry as stored."""
        if not isinstance(entry, JournalEntry):
            raise TypeError(f"a journal takes JournalEntry, not {type(entry).__name__}")
        with self._write(f"append to the journal of batch {entry.batch!r}") as db:
            stored = self._insert_entry(db, entry)
            if audit is not None:
                self._insert_audit(db, audit)
        return stored

    def _insert_entry(self, db: sqlite3.Connection, entry: JournalEntry) -> StoredEntry:
        values = journal_values(entry)
        stored = journal_entry(values)
        self._require_batch(db, entry.batch)
        last = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (1, GENESIS_HASH) if last is None else (last[0] + 1, last[1])
        digest = journal_hash(seq, prev_hash, stored)
        db.execute(_insert(_JOURNAL_COLUMNS, "journal"), (seq, *values, prev_hash, digest))
        return StoredEntry(seq=seq, entry=stored, prev_hash=prev_hash, hash=digest)

    def journal_entries(self, batch_id: str) -> list[StoredEntry]:
        """This batch's entries with their sequence numbers and hashes, oldest first."""
        self.batch(batch_id)
        rows = self._read(
            _select(_JOURNAL_COLUMNS, "journal") + " WHERE batch = ? ORDER BY seq", (batch_id,)
        )
        return self._decoded("journal", rows, _stored_entry)

    # -- audit trail ------------------------------------------------------------------
    def audit(self, record: AuditRecord) -> AuditEntry:
        """Append ``record`` to the audit trail (durable on return); the entry as stored."""
        if not isinstance(record, AuditRecord):
            raise TypeError(f"the audit trail takes AuditRecord, not {type(record).__name__}")
        with self._write(f"append {record.action!r} to the audit trail") as db:
            return self._insert_audit(db, record)

    def _insert_audit(self, db: sqlite3.Connection, record: AuditRecord) -> AuditEntry:
        if not isinstance(record, AuditRecord):
            raise TypeError(f"the audit trail takes AuditRecord, not {type(record).__name__}")
        values = audit_values(record)
        stored = audit_record(values)
        last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (1, GENESIS_HASH) if last is None else (last[0] + 1, last[1])
        digest = audit_hash(seq, prev_hash, stored)
        db.execute(_insert(_AUDIT_COLUMNS, "audit"), (seq, *values, prev_hash, digest))
        return AuditEntry(seq=seq, record=stored, prev_hash=prev_hash, hash=digest)

    def audit_entries(self, *, batch: str | None = None) -> list[AuditEntry]:
        """The audit trail (of ``batch``, if given), oldest first."""
        sql = _select(_AUDIT_COLUMNS, "audit")
        if batch is None:
            rows = self._read(sql + " ORDER BY seq")
        else:
            rows = self._read(sql + " WHERE batch = ? ORDER BY seq", (batch,))
        return self._decoded("audit", rows, _audit_entry)

    # -- historian --------------------------------------------------------------------
    def write_samples(self, samples: Sequence[Sample]) -> None:
        """Insert many samples in one transaction (all or none)."""
        if not samples:
            return
        rows = [_sample_row(sample) for sample in samples]
        with self._write(f"write {len(rows)} samples") as db:
            for batch_id in {row[0] for row in rows}:
                self._require_batch(db, batch_id)
            db.executemany(_insert(_SAMPLE_COLUMNS, "samples"), rows)

    def samples(
        self,
        batch: str,
        *,
        device: str | None = None,
        signal: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[Sample]:
        """A batch's samples, filtered by device, signal and process-time range [start, end]."""
        self.batch(batch)
        where: list[str] = ["batch = ?"]
        params: list[object] = [batch]
        for condition, value in (
            ("signal = ?", signal),
            ("device = ?", device),
            ("process_time >= ?", start),
            ("process_time <= ?", end),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        sql = (
            _select(_SAMPLE_COLUMNS, "samples")
            + f" WHERE {' AND '.join(where)} ORDER BY process_time, seq"
        )
        return self._decoded("samples", self._read(sql, params), _sample)

    # -- users ------------------------------------------------------------------------
    def add_user(self, user: UserRecord) -> None:
        """Add a user; RecordError if the id exists (ids are never reused, 21 CFR 11.100)."""
        values = _user_values(user)
        with self._write(f"add user {user.user_id!r}") as db:
            exists = db.execute("SELECT 1 FROM users WHERE user_id = ?", (user.user_id,))
            if exists.fetchone() is not None:
                raise RecordError(
                    f"{self._location}: user {user.user_id!r} already exists "
                    "(a user id is never reused)"
                )
            db.execute(_insert(_USER_COLUMNS, "users"), values)
            if user.disabled:
                _user_event(db, user.user_id, disabled=True)

    def user(self, user_id: str) -> UserRecord:
        """The user with this id; RecordError if none."""
        rows = self._read(_USERS_SQL + " WHERE user_id = ?", (user_id,))
        if not rows:
            raise RecordError(f"{self._location}: no user {user_id!r}")
        return self._decoded("users", rows, _user)[0]

    def users(self) -> list[UserRecord]:
        """Every user, in the order they were added."""
        return self._decoded("users", self._read(_USERS_SQL + " ORDER BY seq"), _user)

    def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        """Disable or re-enable a user: a new user_events row, never an edit."""
        with self._write(f"{'disable' if disabled else 'enable'} user {user_id!r}") as db:
            exists = db.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,))
            if exists.fetchone() is None:
                raise RecordError(f"{self._location}: no user {user_id!r}")
            _user_event(db, user_id, disabled=disabled)

    # -- integrity --------------------------------------------------------------------
    def verify(self) -> Verification:
        """Re-compute both hash chains from their start; the first bad entry of each."""
        db = self._db
        checked: dict[str, int] = {}
        problems: list[ChainProblem] = []
        try:
            # One read transaction: both chains as of one moment, even while others append.
            db.execute("BEGIN")
            try:
                for table, columns, rehash in (
                    ("journal", _JOURNAL_COLUMNS, journal_rehash),
                    ("audit", _AUDIT_COLUMNS, audit_rehash),
                ):
                    rows = db.execute(_select(columns, table) + " ORDER BY seq")
                    checked[table], problem = verify_chain(table, rows, rehash)
                    if problem is not None:
                        problems.append(problem)
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise RecordError(f"{self._location}: cannot verify: {exc}") from exc
        return Verification(checked=checked, problems=tuple(problems))


class SqliteJournal:
    """The :class:`~flexctl.record.journal.Journal` of one batch in a :class:`SqliteStore`."""

    def __init__(self, store: SqliteStore, batch_id: str) -> None:
        self._store = store
        self._batch = batch_id

    @property
    def batch_id(self) -> str:
        return self._batch

    def append(self, entry: JournalEntry) -> None:
        """Store ``entry`` after every earlier one, durable on return."""
        if isinstance(entry, JournalEntry) and entry.batch != self._batch:
            raise RecordError(
                f"{self._store.location}: the journal of batch {self._batch!r} "
                f"refuses an entry of batch {entry.batch!r}"
            )
        self._store.append_entry(entry)

    def entries(self) -> list[JournalEntry]:
        """Every entry of the batch, oldest first."""
        return [stored.entry for stored in self._store.journal_entries(self._batch)]

    def __repr__(self) -> str:
        return f"SqliteJournal({self._store.location!r}, batch {self._batch!r})"


# -- rows ------------------------------------------------------------------------------


def _stored_entry(row: Sequence[Any]) -> StoredEntry:
    return StoredEntry(seq=row[0], entry=journal_entry(row[1:-2]), prev_hash=row[-2], hash=row[-1])


def _audit_entry(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(seq=row[0], record=audit_record(row[1:-2]), prev_hash=row[-2], hash=row[-1])


def _batch_values(info: BatchInfo) -> tuple[Any, ...]:
    what = f"batch {info.batch_id!r}"
    if info.seed is not None and (isinstance(info.seed, bool) or not isinstance(info.seed, int)):
        raise RecordError(f"{what}: seed must be an integer or None, not {info.seed!r}")
    return (
        *(text(getattr(info, name), name, what) for name in _BATCH_COLUMNS[:9]),
        encode_text(info.parameters),
        info.seed,
        int(bool(info.simulated)),
        encode_text(info.devices),
        utc_text(info.created_utc),
        text(info.created_by, "created_by", what),
    )


def _batch_info(row: Sequence[Any]) -> BatchInfo:
    named = dict(zip(_BATCH_COLUMNS, row, strict=True))
    named["parameters"] = json.loads(named["parameters"])
    named["devices"] = json.loads(named["devices"])
    named["simulated"] = bool(named["simulated"])
    named["created_utc"] = parse_utc(named["created_utc"])
    return BatchInfo(**named)


# The historian's hot path: a value's kind by its exact type (Sample checked the rest).
_KINDS: dict[type, str] = {type(None): "none", bool: "bool", int: "int", float: "float", str: "str"}


def _sample_row(sample: Sample) -> tuple[Any, ...]:
    value = sample.value
    kind = _KINDS.get(type(value)) or next(k for t, k in _KINDS.items() if isinstance(value, t))
    return (
        sample.batch,
        sample.device,
        sample.signal,
        float(sample.process_time),
        utc_text(sample.utc),
        kind,
        # A float's kind also keeps NaN, which SQLite stores as NULL.
        (1 if value else 0) if kind == "bool" else value,
    )


def _sample(row: Sequence[Any]) -> Sample:
    batch, device, signal, time, utc, kind, value = row
    if kind == "bool":
        value = bool(value)
    elif kind == "float" and value is None:
        value = math.nan
    return Sample(batch, device, signal, time, parse_utc(utc), value)


# A user's disabled state is their newest user_events row (none: enabled).
_USERS_SQL = (
    f"SELECT {', '.join(_USER_COLUMNS)}, (SELECT disabled FROM user_events AS e "
    "WHERE e.user_id = users.user_id ORDER BY e.seq DESC LIMIT 1) FROM users"
)


def _user_values(user: UserRecord) -> tuple[Any, ...]:
    what = f"user {user.user_id!r}"
    roles = sorted(text(role, "role", what) for role in user.roles)
    return (
        text(user.user_id, "user_id", what),
        text(user.printed_name, "printed_name", what),
        encode_text(roles),
        text(user.password_hash, "password_hash", what),
        utc_text(user.created_utc),
    )


def _user(row: Sequence[Any]) -> UserRecord:
    user_id, printed_name, roles, password_hash, created_utc, disabled = row
    return UserRecord(
        user_id=user_id,
        printed_name=printed_name,
        roles=frozenset(json.loads(roles)),
        password_hash=password_hash,
        created_utc=parse_utc(created_utc),
        disabled=bool(disabled),
    )


def _user_event(db: sqlite3.Connection, user_id: str, *, disabled: bool) -> None:
    db.execute(
        "INSERT INTO user_events (user_id, utc, disabled) VALUES (?, ?, ?)",
        (user_id, utc_text(datetime.now(UTC)), int(disabled)),
    )
