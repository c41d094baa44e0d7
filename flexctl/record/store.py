"""The record store's contract: what the supervisor, the CLI and the report ask of it.

One store holds every batch of a site's line: the batches themselves (what ran,
on which line, with which parameters), their journals, the audit trail, the
historian's samples and the users who may sign. :class:`Store` is the contract;
the SQLite store (:mod:`flexctl.record.sqlite_store`) is the default, and a
PostgreSQL store can implement the same methods later.

Three rules every implementation keeps:

- Nothing is updated or deleted. A batch's state is the last ``batch_state``
  entry of its journal; a user's disabling is a new fact, audited.
- The journal and the audit trail are hash chains: each stored entry carries
  the SHA-256 of the previous one over a canonical encoding
  (:mod:`flexctl.record.canonical`), so :meth:`Store.verify` finds any entry
  edited, deleted, inserted or moved.
- An append returns only once the entry is durable against a crash of the
  process (SQLite: committed in WAL mode), so a SIGKILL loses nothing appended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from flexctl.errors import FlexctlError
from flexctl.record.journal import Journal, JournalEntry, JSONValue


class RecordError(FlexctlError):
    """The store cannot do what was asked: no such batch or user, a duplicate, a broken file."""


@dataclass(frozen=True)
class BatchInfo:
    """What a batch is: written once when it is created, never changed.

    ``procedure_text`` and ``line_text`` are the files as they were run, so a
    resumed batch runs the same procedure on the same line even if the files
    on disk changed since, and the report shows what was run.
    """

    batch_id: str
    procedure_name: str
    procedure_version: str
    procedure_path: str
    procedure_sha256: str
    procedure_text: str
    line_name: str
    line_path: str
    line_text: str
    parameters: Mapping[str, JSONValue]
    seed: int | None
    simulated: bool
    #: device name -> what the driver describes (driver, profile, transport, source, serial ...)
    devices: Mapping[str, Mapping[str, JSONValue]]
    created_utc: datetime
    created_by: str


@dataclass(frozen=True)
class StoredEntry:
    """A journal entry as stored: its place in the chain and its hashes."""

    seq: int
    entry: JournalEntry
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditRecord:
    """One GMP-relevant action: who, what, when, old value, new value and why.

    ``process_time`` is None for actions outside a batch (user administration);
    ``batch`` is then empty.
    """

    utc: datetime
    actor: str
    action: str
    object: str
    old_value: JSONValue = None
    new_value: JSONValue = None
    reason: str = ""
    batch: str = ""
    process_time: float | None = None


@dataclass(frozen=True)
class AuditEntry:
    """An audit record as stored: its place in the chain and its hashes."""

    seq: int
    record: AuditRecord
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Sample:
    """One historian value of a device signal at a process time.

    Checked when made, so a bad sample is refused where it is taken, not later
    when a batch of samples is written: ``process_time`` a finite number, ``utc``
    aware, ``value`` a float (NaN and infinity included), an int of at most 64
    bits, a bool, a str or None.
    """

    batch: str
    device: str
    signal: str
    process_time: float
    utc: datetime
    value: float | int | str | bool | None

    def __post_init__(self) -> None:
        # The historian makes many of these: the message is built only for a bad one.
        time, value = self.process_time, self.value
        if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
            raise ValueError(self._bad(f"process time {time!r} is not a finite number"))
        if self.utc.tzinfo is None or self.utc.utcoffset() is None:
            raise ValueError(self._bad(f"utc time {self.utc.isoformat()} has no time zone"))
        if value is not None and not isinstance(value, float | int | str):
            raise TypeError(self._bad(f"value {value!r} is not a float, int, bool, str or None"))
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError(self._bad(f"integer value {value} does not fit in 64 bits"))

    def _bad(self, what: str) -> str:
        return f"sample {self.device}.{self.signal} of batch {self.batch!r}: {what}"


@dataclass(frozen=True)
class UserRecord:
    """A person who may sign. ``password_hash`` is a self-describing scrypt string."""

    user_id: str
    printed_name: str
    roles: frozenset[str]
    password_hash: str
    created_utc: datetime
    disabled: bool = False


@dataclass(frozen=True)
class ChainProblem:
    """Where a hash chain first breaks: the table, the entry's sequence number, and why."""

    table: str
    seq: int
    reason: str


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`Store.verify`: entries checked per chain, and the problems."""

    checked: Mapping[str, int]
    problems: Sequence[ChainProblem] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


@runtime_checkable
class Store(Protocol):
    """The record store; see the module docstring for the rules it keeps."""

    @property
    def location(self) -> str:
        """Where the store lives (a file path, a URL), for messages."""
        ...

    def close(self) -> None: ...

    # -- batches ----------------------------------------------------------------------
    def create_batch(self, info: BatchInfo, *, audit: AuditRecord | None = None) -> None:
        """Record a new batch (and ``audit``, in one transaction); RecordError if the id exists."""
        ...

    def batch(self, batch_id: str) -> BatchInfo:
        """The batch with this id; RecordError naming the id if there is none."""
        ...

    def batches(self, *, line: str | None = None) -> list[BatchInfo]:
        """Every batch (of ``line``, if given), oldest first."""
        ...

    # -- journal ----------------------------------------------------------------------
    def journal(self, batch_id: str) -> Journal:
        """A :class:`Journal` writing to and reading from this batch's entries.

        Its ``append`` refuses an entry of another batch and returns once the
        entry is durable; its ``entries`` are this batch's, oldest first.
        """
        ...

    def append_entry(self, entry: JournalEntry, *, audit: AuditRecord | None = None) -> StoredEntry:
        """Append ``entry`` to its batch's journal and ``audit`` to the audit trail in one
        transaction (both are durable on return, or neither is written)."""
        ...

    def journal_entries(self, batch_id: str) -> list[StoredEntry]:
        """This batch's entries with their sequence numbers and hashes, oldest first."""
        ...

    # -- audit trail ------------------------------------------------------------------
    def audit(self, record: AuditRecord) -> AuditEntry:
        """Append ``record`` to the audit trail (durable on return)."""
        ...

    def audit_entries(self, *, batch: str | None = None) -> list[AuditEntry]:
        """The audit trail (of ``batch``, if given), oldest first."""
        ...

    # -- historian --------------------------------------------------------------------
    def write_samples(self, samples: Sequence[Sample]) -> None:
        """Insert many samples in one transaction."""
        ...

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
        ...

    # -- users ------------------------------------------------------------------------
    def add_user(self, user: UserRecord) -> None:
        """Add a user; RecordError if the id exists (ids are never reused, 21 CFR 11.100)."""
        ...

    def user(self, user_id: str) -> UserRecord:
        """The user with this id; RecordError if none."""
        ...

    def users(self) -> list[UserRecord]: ...

    def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        """Disable or re-enable a user (recorded as a new fact, never an edit)."""
        ...

    # -- integrity --------------------------------------------------------------------
    def verify(self) -> Verification:
        """Check every hash chain from its start; name the first bad entry of each."""
        ...
