"""The batch record as JSON: the report's content, trends as their data series.

The keys come in a fixed order (``schema`` and ``simulated`` first), and the
keys of recorded payloads (result fields, details) sorted, so the same record
gives the same text. Every time is an object with the raw process time, the
time since the batch's start (seconds and ``d03 14:20``) and UTC in ISO 8601.
A NaN sample is ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flexctl.report.model import BatchReport, Header, Integrity
from flexctl.report.rows import Attempt, Moment, StepRow, UnitRow
from flexctl.report.summary import Summary
from flexctl.report.trends import Trend, Trends, finite

#: The version of this document's layout; a change that breaks a reader bumps it.
SCHEMA = "flexctl.batch-report/1"

Json = dict[str, Any]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _at(moment: Moment | None) -> Json | None:
    if moment is None:
        return None
    return {
        "process_time": moment.process_time,
        "elapsed_s": moment.elapsed,
        "process": moment.stamp,
        "utc": _utc(moment.utc),
    }


def _sorted(value: object) -> Any:
    """JSON data with every object's keys sorted (recorded payloads keep no order)."""
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _header(h: Header) -> Json:
    return {
        "batch_id": h.batch_id,
        "procedure": {
            "name": h.procedure_name,
            "version": h.procedure_version,
            "path": h.procedure_path,
            "sha256": h.procedure_sha256,
            "stored_text_sha256": h.procedure_text_sha256,
            "stored_text_matches": h.procedure_text_matches,
            "note": h.procedure_note,
        },
        "line": {"name": h.line_name, "path": h.line_path},
        "seed": h.seed,
        "simulated": h.simulated,
        "created_by": h.created_by,
        "created_utc": _utc(h.created_utc),
        "started": _at(h.started),
        "final_state": h.final_state,
        "final_at": _at(h.final_at),
        "parameters": [
            {
                "name": p.name,
                "value": _sorted(p.value),
                "unit": p.unit,
                "type": p.type,
                "default": p.default,
            }
            for p in h.parameters
        ],
        "devices": [
            {
                "name": d.name,
                "driver": d.driver,
                "profile": d.profile,
                "transport": d.transport,
                "source": d.source,
                "serial": d.serial,
                "origin": d.origin,
                "other": _sorted(d.other),
                "described": _sorted(d.described),
            }
            for d in h.devices
        ],
    }


def _summary(s: Summary) -> Json:
    return {
        "final_state": s.final_state,
        "process_seconds": s.process_seconds,
        "unit_procedures": list(s.units),
        "completed_unit_procedures": list(s.completed_units),
        "product_step": s.product_step,
        "final_cells": s.final_cells,
        "final_viability_pct": s.final_viability,
        "final_viable_cells": s.final_viable_cells,
        "target_dose": s.target_dose,
        "dose_reached": s.dose_reached,
        "bags_filled": s.bags_filled,
        "freezer_program": s.freezer_program,
        "deviations": s.deviations,
        "holds": s.holds,
        "interlock_trips": s.interlock_trips,
        "alarms_raised": s.alarms_raised,
        "alarm_floods": s.alarm_floods,
        "chattering_alarms": list(s.chattering_alarms),
        "signatures": s.signatures,
        "signatures_by_simulation": s.signatures_by_simulation,
        "signatures_not_intact": s.signatures_not_intact,
    }


def _attempt(a: Attempt) -> Json:
    return {
        "attempt": a.number,
        "start": _at(a.start),
        "end": _at(a.end),
        "result": a.result,
        "fields": _sorted(a.fields),
        "reason": a.reason,
        "error": a.error,
        "actor": a.actor,
        "sent": list(a.sent),
    }


def _step(s: StepRow) -> Json:
    return {
        "step": s.step,
        "kind": s.kind,
        "action": s.action,
        "description": s.description,
        "planned": s.planned,
        "result": s.result,
        "attempts": [_attempt(a) for a in s.attempts],
    }


def _unit(u: UnitRow) -> Json:
    return {"name": u.name, "complete": u.complete, "steps": [_step(s) for s in u.steps]}


def _trend(t: Trend) -> Json:
    return {
        "key": t.key,
        "title": t.title,
        "x_unit": t.x_unit,
        "x_origin_elapsed_s": t.x_origin,
        "scope": t.scope,
        "panels": [
            {
                "title": p.title,
                "unit": p.unit,
                "log": p.log,
                "series": [
                    {
                        "device": s.device,
                        "signal": s.signal,
                        "label": s.label,
                        "columns": ["elapsed_s", "value"],
                        "points": [[t, finite(v)] for t, v in s.points],
                    }
                    for s in p.series
                ],
            }
            for p in t.panels
        ],
    }


def _trends(t: Trends) -> Json:
    return {"plots": [_trend(p) for p in t.plots], "notes": list(t.notes)}


def _integrity(i: Integrity) -> Json:
    return {
        "ok": i.ok,
        "chains_intact": i.chains_intact,
        "checked": dict(i.checked),
        "problems": [{"table": p.table, "seq": p.seq, "reason": p.reason} for p in i.problems],
        "untrusted_entries_of_batch": dict(i.untrusted),
        "procedure_text_matches": i.procedure_text_matches,
        "signatures_broken": i.signatures_broken,
        "signatures_unverifiable": i.signatures_unverifiable,
    }


def report_data(r: BatchReport) -> Json:
    """The report as JSON data, keys in their fixed order."""
    return {
        "schema": SCHEMA,
        "simulated": r.simulated,
        "batch_id": r.batch_id,
        "generated_utc": _utc(r.generated_utc),
        "store": r.store,
        "header": _header(r.header),
        "summary": _summary(r.summary),
        "unit_procedures": [_unit(u) for u in r.units],
        "signatures": [
            {
                "at": _at(s.at),
                "unit_procedure": s.unit_procedure,
                "step": s.step,
                "user": s.user,
                "printed_name": s.printed_name,
                "signed_at": s.signed_at,
                "meaning": s.meaning,
                "role": s.role,
                "value": _sorted(s.value),
                "simulated": s.simulated,
                "prompt": s.text,
                "sha256": s.sha256,
                "recomputed_sha256": s.recomputed,
                "binding": s.binding,
                "binding_note": s.binding_note,
            }
            for s in r.signatures
        ],
        "rejected_entries": [
            {
                "at": _at(e.at),
                "unit_procedure": e.unit_procedure,
                "step": e.step,
                "actor": e.actor,
                "value": _sorted(e.value),
                "why": e.why,
            }
            for e in r.rejected_entries
        ],
        "state_history": [
            {
                "at": _at(s.at),
                "actor": s.actor,
                "command": s.command,
                "old": s.old,
                "new": s.new,
                "reason": s.reason,
                "refused": s.refused,
            }
            for s in r.states
        ],
        "deviations": [
            {
                "at": _at(d.at),
                "unit_procedure": d.unit_procedure,
                "step": d.step,
                "device": d.device,
                "actor": d.actor,
                "deviation": d.deviation,
                "message": d.message,
                "details": _sorted(d.details),
            }
            for d in r.deviations
        ],
        "interlocks": [
            {
                "at": _at(i.at),
                "unit_procedure": i.unit_procedure,
                "device": i.device,
                "interlock": i.interlock,
                "event": i.event,
                "tripped": i.tripped,
                "reason": i.reason,
                "action": i.action,
                "details": _sorted(i.details),
            }
            for i in r.interlocks
        ],
        "alarms": [
            {
                "at": _at(a.at),
                "device": a.device,
                "raised": list(a.raised),
                "cleared": list(a.cleared),
                "active": list(a.active),
            }
            for a in r.alarms
        ],
        "command_errors": [
            {
                "at": _at(c.at),
                "unit_procedure": c.unit_procedure,
                "step": c.step,
                "device": c.device,
                "command": c.command,
                "error": c.error,
            }
            for c in r.command_errors
        ],
        "records": [
            {
                "at": _at(m.at),
                "unit_procedure": m.unit_procedure,
                "step": m.step,
                "device": m.device,
                "expression": m.expression,
                "value": _sorted(m.value),
                "unit": m.unit,
            }
            for m in r.measurements
        ],
        "trends": _trends(r.trends),
        "audit_trail": [
            {
                "seq": a.seq,
                "utc": _utc(a.utc),
                "at": _at(a.at),
                "actor": a.actor,
                "action": a.action,
                "object": a.object,
                "old_value": _sorted(a.old_value),
                "new_value": _sorted(a.new_value),
                "reason": a.reason,
            }
            for a in r.audit
        ],
        "integrity": _integrity(r.integrity),
    }


def render_json(report: BatchReport) -> str:
    """The report as JSON text (UTF-8 friendly, indented, newline at the end)."""
    return json.dumps(report_data(report), ensure_ascii=False, indent=2, allow_nan=False) + "\n"
