"""A few helpers to build HTML where every value is escaped unless it is already HTML.

:class:`Html` marks text built here from escaped parts; :func:`esc` escapes
anything else (``html.escape`` with quotes), so a value from the record (a
step's reason, a person's entry) can never become markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from flexctl.report.text import value_text


class Html(str):
    """Text that is HTML already (made by these helpers): not escaped again."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as HTML text: escaped, unless it is :class:`Html` already."""
    if isinstance(value, Html):
        return value
    text = value if isinstance(value, str) else value_text(value)
    return Html(html.escape(text, quote=True))


def join(parts: Iterable[object], separator: str = "") -> Html:
    return Html(esc(separator).join(esc(part) for part in parts))


def tag(name: str, *content: object, cls: str = "", **attrs: str) -> Html:
    """``<name class=cls attrs>content</name>``; attribute values are escaped too."""
    attributes = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{esc(value)}"' for key, value in attrs.items()
    )
    if cls:
        attributes = f' class="{esc(cls)}"' + attributes
    return Html(f"<{name}{attributes}>{join(content)}</{name}>")


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    cls: str = "",
    empty: str = "",
    widths: Sequence[int] = (),
) -> Html:
    """A table with a header row (repeated on every printed page); ``empty`` if no rows.

    ``widths``: each column's share of the table in percent, so that on a
    narrow page (A4) the wide columns keep their room.
    """
    body = [tag("tr", *(tag("td", cell) for cell in row)) for row in rows]
    if not body and empty:
        return tag("p", empty, cls="empty")
    columns = tag("colgroup", *(tag("col", style=f"width: {int(w)}%") for w in widths))
    head = tag("thead", tag("tr", *(tag("th", h, scope="col") for h in headers)))
    return tag("table", columns if widths else "", head, tag("tbody", *body), cls=cls)


def fields(values: Iterable[tuple[str, object]]) -> Html:
    """Name = value pairs, one per line."""
    return join((tag("div", tag("code", name), " = ", value) for name, value in values), "")


def definitions(items: Iterable[tuple[str, object]]) -> Html:
    """A two-column key/value table (the header block)."""
    rows = (tag("tr", tag("th", key, scope="row"), tag("td", value)) for key, value in items)
    return tag("table", tag("tbody", *rows), cls="keys")
