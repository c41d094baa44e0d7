"""The electronic batch record of one batch, built from the record store alone.

:func:`build_report` reads the batch (what ran, on which line, with which
parameters and devices), its journal, its audit trail and its historian
samples, and checks the store's hash chains and every signature's binding.
Nothing comes from the files on disk or from a device: the procedure is the
text the batch stored when it was made, so the report shows what was run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import Procedure
from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.record.store import AuditEntry, BatchInfo, ChainProblem, Store, StoredEntry
from flexctl.report.events import Events, build_events
from flexctl.report.rows import (
    AlarmChange,
    AuditRow,
    CommandError,
    Deviation,
    DeviceRow,
    InterlockEvent,
    Measurement,
    Moment,
    ParameterRow,
    RejectedEntry,
    Signature,
    StateChange,
    Timebase,
    UnitRow,
)
from flexctl.report.signatures import BROKEN, UNVERIFIABLE, build_signatures
from flexctl.report.steps import build_units
from flexctl.report.summary import Summary, build_summary
from flexctl.report.trends import Trends, build_trends, device_windows, signal_units

#: The keys of a device description shown in their own columns (the rest as details).
DEVICE_KEYS = ("name", "driver", "profile", "transport", "kind", "source", "serial", "origin")


@dataclass(frozen=True)
class Header:
    """What the batch is: procedure, line, parameters, devices, who made it, how it ended."""

    batch_id: str
    procedure_name: str
    procedure_version: str
    procedure_path: str
    procedure_sha256: str
    #: The SHA-256 of the procedure text the store holds (UTF-8): it should be the one above.
    procedure_text_sha256: str
    #: Why the steps come from the journal alone ("" when the stored procedure parsed).
    procedure_note: str
    line_name: str
    line_path: str
    seed: int | None
    simulated: bool
    created_by: str
    created_utc: datetime
    parameters: tuple[ParameterRow, ...]
    devices: tuple[DeviceRow, ...]
    started: Moment | None
    final_state: str
    final_at: Moment | None

    @property
    def procedure_text_matches(self) -> bool:
        return self.procedure_text_sha256 == self.procedure_sha256


@dataclass(frozen=True)
class Integrity:
    """The store's hash chains (:meth:`Store.verify`), and what of this batch they cover.

    ``untrusted`` counts this batch's journal and audit entries at or after the
    first bad entry of their chain: the chain cannot vouch for them.
    """

    checked: Mapping[str, int]
    problems: tuple[ChainProblem, ...]
    untrusted: Mapping[str, int]
    procedure_text_matches: bool
    signatures_broken: int
    signatures_unverifiable: int

    @property
    def chains_intact(self) -> bool:
        return not self.problems

    @property
    def ok(self) -> bool:
        """Chains intact, every signature bound to what it signed, the procedure text whole."""
        return (
            self.chains_intact
            and self.procedure_text_matches
            and not self.signatures_broken
            and not self.signatures_unverifiable
        )


@dataclass(frozen=True)
class BatchReport:
    """Everything the batch record shows, in the order it shows it."""

    generated_utc: datetime
    store: str
    header: Header
    summary: Summary
    units: tuple[UnitRow, ...]
    signatures: tuple[Signature, ...]
    rejected_entries: tuple[RejectedEntry, ...]
    states: tuple[StateChange, ...]
    deviations: tuple[Deviation, ...]
    interlocks: tuple[InterlockEvent, ...]
    alarms: tuple[AlarmChange, ...]
    command_errors: tuple[CommandError, ...]
    measurements: tuple[Measurement, ...]
    trends: Trends
    audit: tuple[AuditRow, ...]
    integrity: Integrity

    @property
    def batch_id(self) -> str:
        return self.header.batch_id

    @property
    def simulated(self) -> bool:
        return self.header.simulated


def _started(entries: Sequence[JournalEntry]) -> JournalEntry | None:
    return next(
        (
            e
            for e in entries
            if e.kind is EntryKind.BATCH_STATE and e.payload.get("new") == "Running"
        ),
        None,
    )


def _procedure(info: BatchInfo) -> tuple[Procedure | None, str]:
    loaded = parse_procedure(info.procedure_text, info.procedure_path or "procedure")
    if loaded.procedure is None or loaded.problems:
        first = loaded.problems[0] if loaded.problems else "no procedure in it"
        return None, (
            f"the stored procedure text does not parse ({first}); "
            "steps are listed from the journal only"
        )
    return loaded.procedure, ""


def _parameters(
    info: BatchInfo, entries: Sequence[JournalEntry], procedure: Procedure | None
) -> tuple[ParameterRow, ...]:
    """The batch's parameter values, with unit, type and default from the journal."""
    journaled = {
        str(e.payload.get("name")): e.payload for e in entries if e.kind is EntryKind.PARAMETER
    }
    names = [n for n in journaled if n in info.parameters]
    names += [n for n in info.parameters if n not in journaled]
    rows = []
    for name in names:
        p = journaled.get(name, {})
        declared = procedure.parameters.get(name) if procedure is not None else None
        unit = p.get("unit", declared.unit if declared is not None else None)
        kind = p.get("type", declared.type.value if declared is not None else None)
        default = p.get("default")
        rows.append(
            ParameterRow(
                name,
                info.parameters[name],
                "" if unit is None else str(unit),
                "" if kind is None else str(kind),
                default if isinstance(default, bool) else None,
            )
        )
    return tuple(rows)


def _devices(info: BatchInfo, events: Events) -> tuple[DeviceRow, ...]:
    rows = []
    for name in [*info.devices, *(n for n in events.origins if n not in info.devices)]:
        described: Mapping[str, JSONValue] = info.devices.get(name, {})
        origin = events.origins.get(name, {})

        def get(key: str, d: Mapping[str, JSONValue] = described) -> str:
            value = d.get(key)
            return "" if value is None else str(value)

        rows.append(
            DeviceRow(
                name=name,
                driver=get("driver") or get("driver", origin),
                profile=get("profile"),
                transport=get("transport") or get("kind"),
                source=get("source") or get("source", origin),
                serial=get("serial"),
                origin=get("origin") or get("origin", origin),
                other={
                    k: v
                    for k, v in sorted(described.items())
                    if k not in DEVICE_KEYS and not isinstance(v, dict | list)
                },
                described={
                    k: v for k, v in sorted(described.items()) if isinstance(v, dict | list)
                },
            )
        )
    return tuple(rows)


def _untrusted(
    problems: Sequence[ChainProblem],
    journal: Sequence[StoredEntry],
    audit: Sequence[AuditEntry],
) -> dict[str, int]:
    first = {p.table: p.seq for p in problems}
    seqs = {"journal": [e.seq for e in journal], "audit": [e.seq for e in audit]}
    return {
        table: sum(1 for seq in seqs.get(table, []) if seq >= bad) for table, bad in first.items()
    }


def build_report(store: Store, batch_id: str, *, now: datetime | None = None) -> BatchReport:
    """The batch record of ``batch_id``; RecordError (naming it) if the store has no such batch."""
    info = store.batch(batch_id)
    stored = store.journal_entries(batch_id)
    entries = [s.entry for s in stored]
    audit = store.audit_entries(batch=batch_id)
    verification = store.verify()
    first = _started(entries)
    time = Timebase(first.process_time if first else entries[0].process_time if entries else 0.0)
    procedure, procedure_note = _procedure(info)
    units = build_units(entries, procedure, time)
    signatures, rejected = build_signatures(entries, time)
    events = build_events(entries, time)
    last_state = next(
        (e for e in reversed(entries) if e.kind is EntryKind.BATCH_STATE and "new" in e.payload),
        None,
    )
    final_state = str(last_state.payload["new"]) if last_state else "Idle"
    devices = _devices(info, events)
    drivers = {d.name: d.driver for d in devices}
    header = Header(
        batch_id=info.batch_id,
        procedure_name=info.procedure_name,
        procedure_version=info.procedure_version,
        procedure_path=info.procedure_path,
        procedure_sha256=info.procedure_sha256,
        procedure_text_sha256=hashlib.sha256(info.procedure_text.encode("utf-8")).hexdigest(),
        procedure_note=procedure_note,
        line_name=info.line_name,
        line_path=info.line_path,
        seed=info.seed,
        simulated=info.simulated,
        created_by=info.created_by,
        created_utc=info.created_utc,
        parameters=_parameters(info, entries, procedure),
        devices=devices,
        started=time.at(first.process_time, first.utc) if first else None,
        final_state=final_state,
        final_at=time.at(last_state.process_time, last_state.utc) if last_state else None,
    )
    summary = build_summary(
        final_state=final_state,
        process_seconds=(entries[-1].process_time - time.started) if entries else 0.0,
        units=units,
        events=events,
        signatures=signatures,
        parameters=info.parameters,
        freezers={name for name, driver in drivers.items() if driver.lower() == "freezer"},
    )
    integrity = Integrity(
        checked=dict(verification.checked),
        problems=tuple(verification.problems),
        untrusted=_untrusted(verification.problems, stored, audit),
        procedure_text_matches=header.procedure_text_matches,
        signatures_broken=sum(1 for s in signatures if s.binding == BROKEN),
        signatures_unverifiable=sum(1 for s in signatures if s.binding == UNVERIFIABLE),
    )
    return BatchReport(
        generated_utc=(now or datetime.now(UTC)).astimezone(UTC),
        store=store.location,
        header=header,
        summary=summary,
        units=units,
        signatures=signatures,
        rejected_entries=rejected,
        states=events.states,
        deviations=events.deviations,
        interlocks=events.interlocks,
        alarms=events.alarms,
        command_errors=events.command_errors,
        measurements=events.measurements,
        trends=build_trends(
            store.samples(batch_id),
            started=time.started,
            drivers=drivers,
            units=signal_units(info.devices),
            windows=device_windows(entries, time.started),
        ),
        audit=tuple(
            AuditRow(
                seq=a.seq,
                utc=a.record.utc,
                at=(
                    time.at(a.record.process_time, a.record.utc)
                    if a.record.process_time is not None
                    else None
                ),
                actor=a.record.actor,
                action=a.record.action,
                object=a.record.object,
                old_value=a.record.old_value,
                new_value=a.record.new_value,
                reason=a.record.reason,
            )
            for a in audit
        ),
        integrity=integrity,
    )
