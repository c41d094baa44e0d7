"""The batch record as one self-contained HTML file: inline CSS, plots as PNG data URIs.

Every value from the record goes through :func:`~flexctl.report.html_kit.esc`.
A simulated batch says so in the title, in a banner at the top and in fixed
marks on screen and on every printed page; a failed integrity check says so in
a banner at the top (Annex 11 §8: a printout shows whether data changed).
"""

from __future__ import annotations

from collections.abc import Iterable

from flexctl.report.html_batch import (
    header_section,
    signatures_section,
    steps_section,
    summary_section,
)
from flexctl.report.html_events import (
    Draw,
    audit_section,
    events_section,
    integrity_section,
    records_section,
    states_section,
    trends_section,
)
from flexctl.report.html_kit import Html, join, tag
from flexctl.report.html_parts import SECTIONS, SIMULATED
from flexctl.report.html_style import CSS
from flexctl.report.model import BatchReport
from flexctl.report.text import flexctl_version, utc_text

__all__ = ["SECTIONS", "SIMULATED", "Draw", "render_html"]


def _banners(r: BatchReport) -> Iterable[Html]:
    if r.simulated:
        yield tag(
            "div",
            f"{SIMULATED} BATCH: run on simulated equipment; not a GMP record of a product",
            cls="banner sim",
            role="alert",
        )
        yield tag("div", SIMULATED, cls="sim-mark", aria_hidden="true")
        yield tag("div", SIMULATED, cls="sim-watermark", aria_hidden="true")
    if not r.integrity.ok:
        yield tag(
            "div",
            "INTEGRITY CHECK FAILED: the record has changed since it was written "
            "or is incomplete (see Integrity check)",
            cls="banner broken",
            role="alert",
        )


def render_html(report: BatchReport, *, draw: Draw | None = None) -> str:
    """The whole page; ``draw`` renders a trend as PNG (default: :func:`plots.render`)."""
    if draw is None:
        from flexctl.report.plots import render

        draw = render
    r = report
    title = f"Batch record {r.batch_id}: {r.header.procedure_name} {r.header.procedure_version}"
    if r.simulated:
        title = f"{SIMULATED} - {title}"
    toc = tag("nav", *(tag("a", name, href=f"#{key}") for key, name in SECTIONS), cls="toc")
    body = [
        *_banners(r),
        tag("h1", f"Batch record {r.batch_id}"),
        tag(
            "p",
            f"{r.header.procedure_name} {r.header.procedure_version} on line "
            f"{r.header.line_name}: {r.header.final_state}",
            cls="note",
        ),
        toc,
        header_section(r),
        summary_section(r),
        steps_section(r),
        signatures_section(r),
        events_section(r),
        states_section(r),
        records_section(r),
        trends_section(r, draw),
        audit_section(r),
        integrity_section(r),
        tag(
            "footer",
            f"Generated {utc_text(r.generated_utc)} by flexctl {flexctl_version()} from "
            f"{r.store}. Process times are d<day> hh:mm from the batch's start.",
            f" {SIMULATED} BATCH." if r.simulated else "",
        ),
    ]
    body_tag = '<body class="simulated">' if r.simulated else "<body>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{tag('title', title)}<style>{CSS}</style></head>\n"
        f"{body_tag}{join(body, chr(10))}</body></html>\n"
    )
