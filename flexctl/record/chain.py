"""The two hash chains (journal and audit trail): rows, hashes and verification.

An entry's hash is the SHA-256 of the canonical encoding of one JSON object:
the entry's fields (``JournalEntry.as_dict()``, or the ``AuditRecord`` fields
with ``utc`` as canonical UTC text) plus ``seq`` and ``prev_hash``. ``seq``
numbers a chain from 1 without gaps; ``prev_hash`` is the previous entry's hash
(:data:`~flexctl.record.canonical.GENESIS_HASH` for the first). Any store can
rebuild the same hashes from these rules alone.

The hash is always computed over the entry as it reads back from its row, so
what is verified later is exactly what was hashed now (an ``int`` process time
becomes a float, a time in another zone becomes UTC, a tuple becomes a list).

The chains are keyless: they find any edit, deletion, insertion or move made
without recomputing every later hash, and a deletion of the newest entries
only when the newest hash is known elsewhere (a signature, a report).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any, TypeAlias

from flexctl.record.canonical import GENESIS_HASH, encode_text, parse_utc, sha256_hex, utc_text
from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.record.store import AuditRecord, ChainProblem, RecordError

Row: TypeAlias = Sequence[Any]

#: The journal's columns after seq and before prev_hash, hash.
JOURNAL_FIELDS = (
    "batch",
    "process_time",
    "utc",
    "kind",
    "actor",
    "unit_procedure",
    "step",
    "device",
    "payload",
)
#: The audit trail's columns after seq and before prev_hash, hash.
AUDIT_FIELDS = tuple(f.name for f in fields(AuditRecord))


def process_time(value: object, what: str) -> float:
    """A finite process time as float; RecordError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: process time {value!r} is not a number")
    if not math.isfinite(value):
        raise RecordError(f"{what}: process time {value!r} is not finite")
    return float(value)


def text(value: object, name: str, what: str) -> str:
    """``value`` if it is a str; RecordError naming the field otherwise."""
    if not isinstance(value, str):
        raise RecordError(f"{what}: {name} must be text, not {type(value).__name__} {value!r}")
    return value


# -- journal ---------------------------------------------------------------------------


def journal_values(entry: JournalEntry) -> tuple[Any, ...]:
    """The values of :data:`JOURNAL_FIELDS` to store for ``entry``; RecordError if unstorable."""
    what = f"journal entry of batch {entry.batch!r}"
    return (
        text(entry.batch, "batch", what),
        process_time(entry.process_time, what),
        utc_text(entry.utc),
        entry.kind.value,
        text(entry.actor, "actor", what),
        text(entry.unit_procedure, "unit_procedure", what),
        text(entry.step, "step", what),
        text(entry.device, "device", what),
        encode_text(dict(entry.payload)),
    )


def journal_entry(values: Row) -> JournalEntry:
    """The entry stored as ``values`` (of :data:`JOURNAL_FIELDS`)."""
    batch, time, utc, kind, actor, unit_procedure, step, device, payload = values
    return JournalEntry(
        process_time=time,
        utc=parse_utc(utc),
        kind=EntryKind(kind),
        actor=actor,
        batch=batch,
        unit_procedure=unit_procedure,
        step=step,
        device=device,
        payload=json.loads(payload),
    )


def journal_hash(seq: int, prev_hash: str, entry: JournalEntry) -> str:
    """The chain hash of ``entry`` stored at ``seq`` after an entry hashed ``prev_hash``."""
    return sha256_hex({**entry.as_dict(), "seq": seq, "prev_hash": prev_hash})


def journal_rehash(row: Row) -> str:
    """The hash a stored journal row (seq, fields..., prev_hash, hash) should carry."""
    _check_json(row[9], "payload")
    return journal_hash(row[0], row[-2], journal_entry(row[1:-2]))


# -- audit trail -----------------------------------------------------------------------


def audit_values(record: AuditRecord) -> tuple[Any, ...]:
    """The values of :data:`AUDIT_FIELDS` to store for ``record``; RecordError if unstorable."""
    what = f"audit record {record.action!r} of {record.object!r}"
    time = None if record.process_time is None else process_time(record.process_time, what)
    return (
        utc_text(record.utc),
        text(record.actor, "actor", what),
        text(record.action, "action", what),
        text(record.object, "object", what),
        encode_text(record.old_value),
        encode_text(record.new_value),
        text(record.reason, "reason", what),
        text(record.batch, "batch", what),
        time,
    )


def audit_record(values: Row) -> AuditRecord:
    """The record stored as ``values`` (of :data:`AUDIT_FIELDS`)."""
    utc, actor, action, obj, old_value, new_value, reason, batch, time = values
    return AuditRecord(
        utc=parse_utc(utc),
        actor=actor,
        action=action,
        object=obj,
        old_value=json.loads(old_value),
        new_value=json.loads(new_value),
        reason=reason,
        batch=batch,
        process_time=time,
    )


def audit_hash(seq: int, prev_hash: str, record: AuditRecord) -> str:
    """The chain hash of ``record`` stored at ``seq`` after an entry hashed ``prev_hash``."""
    content: dict[str, JSONValue] = {
        name: getattr(record, name) for name in AUDIT_FIELDS if name != "utc"
    }
    return sha256_hex({**content, "utc": record.utc, "seq": seq, "prev_hash": prev_hash})


def audit_rehash(row: Row) -> str:
    """The hash a stored audit row (seq, fields..., prev_hash, hash) should carry."""
    _check_json(row[5], "old_value")
    _check_json(row[6], "new_value")
    return audit_hash(row[0], row[-2], audit_record(row[1:-2]))


# -- verification ----------------------------------------------------------------------


def verify_chain(
    table: str, rows: Iterable[Row], rehash: Callable[[Row], str]
) -> tuple[int, ChainProblem | None]:
    """Walk ``rows`` (seq, fields..., prev_hash, hash; by seq) and find the first bad one.

    Returns how many rows were read and the first problem, if any. Checked in
    this order for each row: its content gives its hash (else it was edited or
    renumbered), its seq follows the previous one (else entries are missing),
    its prev_hash is the previous row's hash (else one was deleted, inserted
    or moved).
    """
    count = 0
    problem: ChainProblem | None = None
    previous_seq, previous_hash = 0, GENESIS_HASH
    for row in rows:
        count += 1
        if problem is not None:
            continue  # count the rest; the first problem is the one that matters
        problem = _check_row(table, row, rehash, previous_seq, previous_hash)
        previous_seq, previous_hash = row[0], row[-1]
    return count, problem


def _check_row(
    table: str,
    row: Row,
    rehash: Callable[[Row], str],
    previous_seq: int,
    previous_hash: str,
) -> ChainProblem | None:
    seq, prev_hash, stored = row[0], row[-2], row[-1]
    try:
        computed = rehash(row)
    except (RecordError, ValueError, TypeError) as exc:
        return ChainProblem(table, seq, f"unreadable entry: {exc}")
    if computed != stored:
        return ChainProblem(
            table, seq, "hash mismatch: the entry was edited or renumbered after it was written"
        )
    if seq != previous_seq + 1:
        after = f"after seq {previous_seq}" if previous_seq else "at the start"
        return ChainProblem(
            table,
            seq,
            f"seq gap: expected seq {previous_seq + 1} {after}; entries were deleted",
        )
    if prev_hash != previous_hash:
        before = f"seq {previous_seq}" if previous_seq else "the chain's start"
        return ChainProblem(
            table,
            seq,
            f"prev_hash is not the hash of {before}: an entry was deleted, inserted or moved",
        )
    return None


def _check_json(stored: object, column: str) -> None:
    # The same value written another way would hash the same; canonical text only.
    if not isinstance(stored, str) or encode_text(json.loads(stored)) != stored:
        raise RecordError(f"{column} is not canonical JSON")
