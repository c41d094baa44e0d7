"""Pieces every section of the HTML report uses: the section list, times, free text, status."""

from __future__ import annotations

from flexctl.report.html_kit import Html, esc, join, tag
from flexctl.report.rows import Moment
from flexctl.report.text import utc_text

#: (id, title) of every section, in order; the table of contents and the tests use it.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("header", "Batch"),
    ("summary", "Summary"),
    ("steps", "Unit procedures and steps"),
    ("signatures", "Electronic signatures"),
    ("events", "Deviations, interlocks and alarms"),
    ("states", "Batch state history"),
    ("records", "Recorded values"),
    ("trends", "Trends"),
    ("audit", "Audit trail"),
    ("integrity", "Integrity check"),
)
SIMULATED = "SIMULATED"


def when(moment: Moment | None) -> Html:
    """Process time (``d03 14:20``) over its UTC time."""
    if moment is None:
        return esc("-")
    return join(
        [
            tag("span", moment.stamp, cls="when"),
            Html("<br>"),
            tag("span", utc_text(moment.utc), cls="utc"),
        ]
    )


def free(text: str) -> Html:
    """Free text from the record: may break anywhere (a hash, a path) rather than widen a table."""
    return tag("span", text, cls="free")


def status(ok: bool, good: str, bad: str) -> Html:
    return tag("span", good if ok else bad, cls="ok" if ok else "bad")


def section(key: str, *content: object) -> Html:
    title = dict(SECTIONS)[key]
    return tag("section", tag("h2", title), *content, id=key)
