"""A batch's record in the store: its journal, with the GMP-relevant entries also audited.

:class:`BatchRecord` is the :class:`~flexctl.record.journal.Journal` a supervisor
writes a stored batch to. Every entry goes to the batch's journal; those that
record a decision or an action of a person or of the system (state changes,
parameters, signatures, rejected entries, deviations, interlock trips, alarms)
also go to the audit trail as who, what, when, old value, new value and why
(Annex 11 §9). Both go in one transaction, so a failure (or a crash) leaves
both or neither, and a failure reaches the executor, which holds the batch.
"""

from __future__ import annotations

from flexctl.record.canonical import sha256_hex
from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.record.store import AuditRecord, BatchInfo, Store


class BatchRecord:
    """The journal of ``batch_id`` in ``store``, auditing what :func:`audit_record` maps."""

    def __init__(self, store: Store, batch_id: str) -> None:
        self.store = store
        self.batch_id = batch_id
        self._journal = store.journal(batch_id)  # refuses a batch the store does not hold

    def append(self, entry: JournalEntry) -> None:
        if entry.batch != self.batch_id:
            raise ValueError(f"entry of batch {entry.batch!r} in the record of {self.batch_id!r}")
        # One transaction: a crash leaves both or neither (never a silent gap in the audit).
        self.store.append_entry(entry, audit=audit_record(entry))

    def entries(self) -> list[JournalEntry]:
        return self._journal.entries()


def create_batch(store: Store, info: BatchInfo, *, process_time: float) -> BatchRecord:
    """Record a new batch, audit its creation (with the hash of what it is), return its record."""
    store.create_batch(
        info,
        audit=AuditRecord(
            utc=info.created_utc,
            actor=info.created_by,
            action="batch created",
            object=f"batch {info.batch_id}",
            new_value={
                "procedure": f"{info.procedure_name} {info.procedure_version}",
                "procedure_sha256": info.procedure_sha256,
                "line": info.line_name,
                "simulated": info.simulated,
                "batch_info_sha256": batch_info_hash(info),
            },
            reason="batch started",
            batch=info.batch_id,
            process_time=process_time,
        ),
    )
    return BatchRecord(store, info.batch_id)


def batch_info_hash(info: BatchInfo) -> str:
    """SHA-256 of a batch's description, so the audit trail vouches for what was run."""
    return sha256_hex(
        {
            "batch_id": info.batch_id,
            "procedure_sha256": info.procedure_sha256,
            "procedure_text_sha256": sha256_hex(info.procedure_text),
            "line_text_sha256": sha256_hex(info.line_text),
            "parameters": dict(info.parameters),
            "seed": info.seed,
            "simulated": info.simulated,
            "devices": {k: dict(v) for k, v in info.devices.items()},
            "created_utc": info.created_utc,
            "created_by": info.created_by,
        }
    )


def audit_record(entry: JournalEntry) -> AuditRecord | None:
    """The audit record of a journal entry, or None for plain process data."""
    p = entry.payload
    where = "/".join(part for part in (entry.unit_procedure, entry.step) if part)

    def audited(
        action: str, obj: str, *, old: JSONValue = None, new: JSONValue = None, reason: str = ""
    ) -> AuditRecord:
        return AuditRecord(
            utc=entry.utc,
            actor=entry.actor,
            action=action,
            object=obj,
            old_value=old,
            new_value=new,
            reason=reason,
            batch=entry.batch,
            process_time=entry.process_time,
        )

    def text(key: str) -> str:
        value = p.get(key)
        return "" if value is None else str(value)

    def value(key: str) -> JSONValue:
        return p.get(key)

    if entry.kind is EntryKind.BATCH_STATE and "refused" in p:
        return audited(
            f"batch {text('command')} refused",
            f"batch {entry.batch}",
            old=value("state"),
            new=value("state"),
            reason=text("refused"),
        )
    if entry.kind is EntryKind.BATCH_STATE and p.get("command") == "restore":
        # A fresh state machine is restored: the batch was in the new state already.
        return audited(
            "batch resumed",
            f"batch {entry.batch}",
            old=value("new"),
            new=value("new"),
            reason=text("reason"),
        )
    if entry.kind is EntryKind.BATCH_STATE:
        return audited(
            f"batch {text('command') or 'state change'}",
            f"batch {entry.batch}",
            old=value("old"),
            new=value("new"),
            reason=text("reason"),
        )
    if entry.kind is EntryKind.PARAMETER:
        return audited(
            "parameter set",
            f"parameter {text('name')}",
            new=value("value"),
            reason="the procedure's default" if p.get("default") else "set for this batch",
        )
    if entry.kind is EntryKind.SIGNATURE:
        return audited(
            "e-signature",
            f"step {where}",
            new=value("value"),
            reason=f"{text('meaning')} as {text('role')} by {text('printed_name')}; "
            f"record sha256 {text('sha256')}",
        )
    if entry.kind is EntryKind.PROMPT and "rejected" in p:
        return audited(
            "entry rejected",
            f"step {where}",
            new=value("rejected"),
            reason=text("why"),
        )
    if entry.kind is EntryKind.DEVIATION:
        return audited(
            "deviation",
            f"device {entry.device}" if entry.device else f"step {where or entry.batch}",
            new=value("decision") if "decision" in p else value("deviation"),
            # A person's own reason first (a decision on an unknown outcome), then ours.
            reason="; ".join(
                part for part in (text("reason"), text("message") or text("error")) if part
            )
            or text("deviation"),
        )
    if entry.kind is EntryKind.INTERLOCK and "interlock" in p and "action" in p:
        return audited(
            "interlock tripped",
            text("interlock"),
            new=value("action"),
            reason=text("reason"),
        )
    if entry.kind is EntryKind.ALARM and "alarm" in p:  # an ISA-18.2 limit alarm
        return audited(
            f"alarm {text('event')}",
            f"alarm {text('alarm')}",
            old=value("old"),
            new=value("new"),
            reason=text("reason") or f"{text('signal')} = {text('value')} (limit {text('limit')})",
        )
    if entry.kind is EntryKind.ALARM:
        raised = _names(p.get("raised"))
        cleared = _names(p.get("cleared"))
        before = [a for a in _names(p.get("active")) if a not in raised] + cleared
        return audited(
            "device alarms changed",
            f"device {entry.device}",
            old=list(before),
            new=value("active"),
            reason=f"raised {', '.join(raised)}" if raised else f"cleared {', '.join(cleared)}",
        )
    return None  # process data (commands, results, records, steps): the journal keeps them


def _names(value: JSONValue) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
