"""The HTML report's sections on what was run, done and signed: the batch, the summary,
the unit procedures and steps, the e-signatures."""

from __future__ import annotations

import math
from collections.abc import Mapping

from flexctl.procedure.duration import format_duration
from flexctl.record.journal import JSONValue
from flexctl.report.html_kit import Html, definitions, fields, join, table, tag
from flexctl.report.html_parts import SIMULATED, free, section, status, when
from flexctl.report.model import BatchReport
from flexctl.report.rows import Attempt, ParameterRow, StepRow
from flexctl.report.signatures import INTACT
from flexctl.report.text import moment_text, utc_text, value_text, yes_no
from flexctl.report.wording import number, signer_label, span


def header_section(r: BatchReport) -> Html:
    h = r.header
    procedure_check = (
        status(True, "the stored procedure text has this SHA-256", "")
        if h.procedure_text_matches
        else status(False, "", f"the stored procedure text hashes to {h.procedure_text_sha256}")
    )
    items: list[tuple[str, object]] = [
        ("Batch", tag("strong", h.batch_id)),
        ("Procedure", f"{h.procedure_name} {h.procedure_version}"),
        ("Procedure file", tag("code", h.procedure_path)),
        (
            "Procedure SHA-256",
            join([tag("span", h.procedure_sha256, cls="hash"), Html("<br>"), procedure_check]),
        ),
        ("Line", join([h.line_name, " ", tag("code", h.line_path)])),
        ("Simulated", tag("strong", SIMULATED, cls="bad") if h.simulated else "no"),
        ("Seed", "-" if h.seed is None else h.seed),
        ("Created by", h.created_by),
        ("Created", utc_text(h.created_utc)),
        ("Started", moment_text(h.started)),
        ("Final state", join([tag("strong", h.final_state), "  ", moment_text(h.final_at)])),
    ]
    if h.procedure_note:
        items.append(("Steps", tag("span", h.procedure_note, cls="warn")))
    parameters = table(
        ("Parameter", "Value", "Unit", "Type", "Default"),
        ((p.name, _parameter_value(p), p.unit, p.type, yes_no(p.default)) for p in h.parameters),
        empty="No parameters.",
    )
    devices = table(
        ("Device", "Driver", "Profile", "Transport", "Source", "Serial", "Origin", "Other"),
        (
            (
                tag("strong", d.name),
                d.driver,
                d.profile,
                d.transport,
                tag("code", d.source) if d.source else "",
                d.serial or "-",
                d.origin,
                join([fields(d.other.items()), _described(d.described)]),
            )
            for d in h.devices
        ),
        empty="No devices recorded.",
    )
    return section(
        "header",
        definitions(items),
        tag("h3", "Parameters"),
        parameters,
        tag("h3", "Devices"),
        devices,
    )


def _described(described: Mapping[str, JSONValue]) -> Html:
    """How much the driver described (its signals and commands are in the JSON export)."""
    counts = []
    for value in described.values():
        if isinstance(value, dict):
            for part in ("signals", "commands"):
                listed = value.get(part)
                if isinstance(listed, dict):
                    counts.append(f"{len(listed)} {part}")
    return tag("div", f"described: {', '.join(counts)}", cls="note") if counts else Html()


def _parameter_value(p: ParameterRow) -> Html:
    """The value exactly; a duration (seconds) also as ``14 d``."""
    shown = tag("code", value_text(p.value))
    seconds = p.value
    if p.type != "duration" or isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return shown
    if not math.isfinite(seconds) or seconds < 0:
        return shown
    return join([shown, f" s ({format_duration(seconds)})"])


def summary_section(r: BatchReport) -> Html:
    s = r.summary
    missing = [u for u in s.units if u not in s.completed_units]
    items: list[tuple[str, object]] = [
        ("Final state", tag("strong", s.final_state)),
        ("Process time", f"{span(s.process_seconds)} ({s.process_seconds:.0f} s)"),
        (
            "Unit procedures",
            f"{len(s.completed_units)} of {len(s.units)} complete"
            + (f" (not: {', '.join(missing)})" if missing else ""),
        ),
    ]
    if s.final_cells is not None and s.final_viability is not None:
        label = "Final product" if s.final_state == "Complete" else "Last count"
        items.append(
            (
                label,
                f"{number(s.final_cells)} cells, viability {number(s.final_viability, pct=True)} %"
                f" = {number(s.final_viable_cells)} viable cells (step {s.product_step})",
            )
        )
    else:
        items.append(("Final product", "none counted"))
    if s.target_dose is not None:
        reached = s.dose_reached
        verdict = (
            status(True, "reached", "")
            if reached
            else status(False, "", "NOT reached" if reached is False else "unknown")
        )
        items.append(("Target dose", join([f"{number(s.target_dose)} viable cells: ", verdict])))
    if s.bags_filled is not None or s.freezer_program is not None:
        frozen = "not frozen"
        if s.freezer_program is not None:
            frozen = (
                "frozen (freezer program complete)"
                if s.freezer_program == "complete"
                else f"NOT frozen (freezer program {s.freezer_program})"
            )
        items.append(("Bags", f"{s.bags_filled or 0} filled, {frozen}"))
    items += [
        ("Deviations", tag("strong", s.deviations, cls="warn") if s.deviations else "none"),
        ("Holds and aborts", s.holds),
        ("Interlock trips", s.interlock_trips),
        ("Alarms raised", s.alarms_raised),
        ("Alarm floods (> 10 in 10 min)", s.alarm_floods),
        ("Chattering alarms (3 in 1 min)", ", ".join(s.chattering_alarms) or "none"),
        (
            "Signatures",
            join(
                [
                    f"{s.signatures}",
                    f" ({s.signatures_by_simulation} by the simulation user)"
                    if s.signatures_by_simulation
                    else "",
                    "; " if s.signatures_not_intact else "",
                    tag("span", f"{s.signatures_not_intact} not bound to what they sign", cls="bad")
                    if s.signatures_not_intact
                    else "",
                ]
            ),
        ),
        ("Record integrity", status(r.integrity.ok, "intact", "FAILED (see Integrity check)")),
    ]
    return section("summary", definitions(items))


def _attempt_cells(step: StepRow, attempt: Attempt | None) -> list[object]:
    if attempt is None:
        return ["-", "-", "-", tag("span", "not run", cls="note"), ""]
    number_text = "-" if attempt.number is None else str(attempt.number)
    if attempt.number is None:
        number_text = "decided"
    result_cls = {"done": "ok", "running": "warn"}.get(attempt.result, "bad")
    outcome: list[object] = [tag("div", tag("code", sent), cls="sent") for sent in attempt.sent]
    if attempt.fields:
        outcome.append(fields(attempt.fields.items()))
    for label, text in (("reason", attempt.reason), ("error", attempt.error)):
        if text:
            outcome.append(tag("div", tag("em", f"{label}: "), free(text)))
    if attempt.number is None and attempt.actor:
        outcome.append(tag("div", tag("em", "declared done by: "), attempt.actor))
    return [
        number_text,
        when(attempt.start),
        when(attempt.end),
        tag("span", attempt.result, cls=result_cls),
        join(outcome),
    ]


def steps_section(r: BatchReport) -> Html:
    parts: list[object] = []
    if not r.units:
        parts.append(tag("p", "No step ran.", cls="empty"))
    for unit in r.units:
        state = status(unit.complete, "complete", "not complete")
        parts.append(tag("h3", unit.name, " ", state))
        rows: list[list[object]] = []
        for step in unit.steps:
            what = join(
                [
                    tag("code", step.action),
                    tag("div", step.description, cls="note") if step.description else "",
                    "" if step.planned else tag("div", "not in the procedure", cls="warn"),
                ]
            )
            for attempt in step.attempts or (None,):
                rows.append([tag("strong", free(step.step)), what, *_attempt_cells(step, attempt)])
        parts.append(
            table(
                ("Step", "What", "Attempt", "Start", "End", "Result", "Result fields"),
                rows,
                widths=(14, 24, 6, 11, 11, 7, 27),
            )
        )
    return section("steps", *parts)


def signatures_section(r: BatchReport) -> Html:
    rows = []
    for s in r.signatures:
        binding = tag("span", s.binding, cls="ok" if s.binding == INTACT else "bad")
        check = join(
            [
                binding,
                tag("div", s.binding_note, cls="note") if s.binding_note else "",
                tag("div", "SHA-256 ", tag("span", s.sha256, cls="hash")),
            ]
        )
        signer = join(
            [
                tag("strong", s.printed_name),
                tag("div", f"user {signer_label(s.user, s.simulated)}", cls="sub"),
            ]
        )
        rows.append(
            [
                when(s.at),
                join([free(s.unit_procedure), " / ", tag("strong", free(s.step))]),
                s.text,
                signer,
                s.signed_at,
                tag("strong", s.meaning),
                s.role,
                tag("code", value_text(s.value)),
                check,
            ]
        )
    parts: list[object] = [
        tag(
            "p",
            "Each signature shows the signer's printed name, the date and time of signing "
            "(UTC) and its meaning (21 CFR 11.50), and whether it is still bound to what "
            "was signed: the SHA-256 recomputed from the record must equal the one stored "
            "at signing (11.70).",
            cls="note",
        ),
        table(
            (
                "Time",
                "Where",
                "Prompt",
                "Signed by",
                "Signed at (UTC)",
                "Meaning",
                "Role",
                "Value",
                "Binding",
            ),
            rows,
            empty="No signatures.",
            widths=(10, 12, 15, 12, 11, 8, 7, 9, 16),
        ),
    ]
    if r.rejected_entries:
        parts += [
            tag("h3", "Entries refused (asked again)"),
            table(
                ("Time", "Where", "By", "Entered", "Why refused"),
                (
                    (
                        when(e.at),
                        f"{e.unit_procedure} / {e.step}",
                        e.actor,
                        value_text(e.value),
                        free(e.why),
                    )
                    for e in r.rejected_entries
                ),
            ),
        ]
    return section("signatures", *parts)
