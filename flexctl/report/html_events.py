"""The HTML report's sections on what happened and whether the record holds: deviations,
interlocks and alarms, state history, recorded values, trends, audit trail, integrity."""

from __future__ import annotations

import base64
from collections.abc import Callable

from flexctl.report.html_kit import Html, definitions, esc, fields, join, table, tag
from flexctl.report.html_parts import free, section, status, when
from flexctl.report.model import BatchReport
from flexctl.report.text import utc_text, value_text
from flexctl.report.trends import Trend

Draw = Callable[[Trend], bytes]


def _where(*parts: str) -> str:
    return " / ".join(p for p in parts if p) or "-"


def events_section(r: BatchReport) -> Html:
    deviations = table(
        ("Time", "Where", "Deviation", "Message", "By", "Details"),
        (
            (
                when(d.at),
                _where(d.unit_procedure, d.step, d.device),
                tag("strong", d.deviation),
                free(d.message),
                d.actor,
                fields(d.details.items()),
            )
            for d in r.deviations
        ),
        empty="No deviations.",
    )
    interlocks = table(
        ("Time", "Device", "Interlock", "Event", "Reason", "Action", "Details"),
        (
            (
                when(i.at),
                _where(i.unit_procedure, i.device),
                free(i.interlock),
                tag("strong", i.event, cls="bad") if i.tripped else i.event,
                free(i.reason),
                i.action,
                fields(i.details.items()),
            )
            for i in r.interlocks
        ),
        empty="No interlock events.",
    )
    alarms = table(
        ("Time", "Device", "Raised", "Cleared", "Active after"),
        (
            (
                when(a.at),
                a.device,
                tag("span", ", ".join(a.raised), cls="bad") if a.raised else "-",
                ", ".join(a.cleared) or "-",
                ", ".join(a.active) or "none",
            )
            for a in r.alarms
        ),
        empty="No alarm changes.",
    )
    errors = table(
        ("Time", "Where", "Command", "Error"),
        (
            (when(c.at), _where(c.unit_procedure, c.step, c.device), c.command, free(c.error))
            for c in r.command_errors
        ),
        empty="No failed commands.",
    )
    return section(
        "events",
        tag("h3", f"Deviations ({len(r.deviations)})"),
        deviations,
        tag("h3", f"Interlocks ({len(r.interlocks)} events)"),
        interlocks,
        tag("h3", f"Alarms ({len(r.alarms)} changes)"),
        alarms,
        tag("h3", f"Failed commands ({len(r.command_errors)})"),
        errors,
    )


def states_section(r: BatchReport) -> Html:
    rows = []
    for s in r.states:
        change = (
            tag("span", f"refused in {s.old}: {s.refused}", cls="bad")
            if s.refused
            else join([s.old, " → ", tag("strong", s.new)])
        )
        rows.append((when(s.at), change, s.command, s.actor, free(s.reason)))
    return section(
        "states",
        table(("Time", "State", "Command", "By", "Reason"), rows, empty="No state changes."),
    )


def records_section(r: BatchReport) -> Html:
    return section(
        "records",
        table(
            ("Time", "Where", "Expression", "Value", "Unit"),
            (
                (
                    when(m.at),
                    _where(m.unit_procedure, m.step),
                    tag("code", m.expression),
                    tag("strong", value_text(m.value)),
                    m.unit,
                )
                for m in r.measurements
            ),
            empty="No values recorded.",
        ),
    )


def _figure(trend: Trend, draw: Draw) -> Html:
    png = base64.b64encode(draw(trend)).decode("ascii")
    signals = sorted({f"{s.device}.{s.signal}" for p in trend.panels for s in p.series})
    count = sum(len(s.points) for p in trend.panels for s in p.series)
    caption = f"{trend.title}: {', '.join(signals)} ({count} samples; x: {trend.x_label})"
    if trend.scope:
        caption += f"; {trend.scope}"
    image = Html(
        f'<img src="data:image/png;base64,{png}" alt="{esc(trend.title)}" '
        f'data-trend="{esc(trend.key)}">'
    )
    return tag("figure", image, tag("figcaption", caption))


def trends_section(r: BatchReport, draw: Draw) -> Html:
    parts: list[object] = [_figure(trend, draw) for trend in r.trends.plots]
    if not r.trends.plots:
        parts.append(tag("p", "No historian samples for this batch.", cls="empty"))
    if r.trends.notes:
        parts.append(tag("ul", *(tag("li", note) for note in r.trends.notes), cls="note"))
    return section("trends", *parts)


def audit_section(r: BatchReport) -> Html:
    return section(
        "audit",
        table(
            (
                "Seq",
                "When (UTC)",
                "Process time",
                "Who",
                "What",
                "Object",
                "Old value",
                "New value",
                "Why",
            ),
            (
                (
                    a.seq,
                    tag("span", utc_text(a.utc), cls="when"),
                    a.at.stamp if a.at else "-",
                    a.actor,
                    tag("strong", a.action),
                    free(a.object),
                    tag("code", value_text(a.old_value)),
                    tag("code", value_text(a.new_value)),
                    free(a.reason),
                )
                for a in r.audit
            ),
            empty="No audit records for this batch.",
            widths=(4, 10, 7, 8, 10, 12, 15, 15, 19),
        ),
    )


def integrity_section(r: BatchReport) -> Html:
    i = r.integrity
    broken = {p.table: p for p in i.problems}
    chains = []
    for name, count in i.checked.items():
        problem = broken.get(name)
        state = (
            status(True, "intact", "")
            if problem is None
            else status(False, "", f"BROKEN at seq {problem.seq}: {problem.reason}")
        )
        affected = i.untrusted.get(name, 0)
        chains.append(
            (
                name,
                count,
                state,
                f"{affected} of this batch's entries" if problem is not None else "-",
            )
        )
    signatures = len(r.signatures)
    bound = signatures - i.signatures_broken - i.signatures_unverifiable
    items: list[tuple[str, object]] = [
        ("Store", tag("code", r.store)),
        ("Overall", status(i.ok, "intact", "FAILED")),
        (
            "Signature bindings",
            join(
                [
                    status(
                        bound == signatures,
                        f"{bound} of {signatures} intact",
                        f"{bound} of {signatures} intact",
                    ),
                    f"; {i.signatures_broken} broken" if i.signatures_broken else "",
                    f"; {i.signatures_unverifiable} unverifiable"
                    if i.signatures_unverifiable
                    else "",
                ]
            ),
        ),
        (
            "Procedure text",
            status(
                i.procedure_text_matches,
                "matches the procedure SHA-256",
                "does NOT match the procedure SHA-256",
            ),
        ),
    ]
    return section(
        "integrity",
        tag(
            "p",
            "The store's hash chains are re-computed from their start (every batch's entries); "
            "a chain that breaks cannot vouch for the entries from the first bad one on.",
            cls="note",
        ),
        table(("Chain", "Entries checked", "Status", "Cannot vouch for"), chains),
        definitions(items),
    )
