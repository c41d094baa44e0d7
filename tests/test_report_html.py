"""The batch record as HTML: sections, escaping, the SIMULATED marks, embedded PNG plots."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flexctl.record.sqlite_store import SqliteStore
from flexctl.report.html import SECTIONS, render_html
from flexctl.report.model import BatchReport, build_report
from tests.record_factory import raw
from tests.report_factory import BATCH, report_store

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


@dataclass
class Page(HTMLParser):
    """What the tests look at in a page, and whether its tags nest."""

    title: str = ""
    ids: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    scripts: int = 0
    open: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if "id" in named:
            self.ids.append(named["id"])
        self.classes += named.get("class", "").split()
        if tag == "img":
            self.images.append(named)
        if tag == "script":
            self.scripts += 1
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.mismatched.append(tag)

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] == "title":
            self.title += data
        self.text.append(data)


def parse(page: str) -> Page:
    parsed = Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def tiny_png(_: object) -> bytes:
    """A stand-in for a plot where the plot itself is not what is tested."""
    return PNG_MAGIC + b"fake"


def build(path: Path, *, simulated: bool = True, hold_reason: str = "batch Holding") -> BatchReport:
    with report_store(path, simulated=simulated, hold_reason=hold_reason) as store:
        return build_report(store, BATCH, now=NOW)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[BatchReport, str]:
    """The simulated batch with real plots (drawn once: matplotlib takes a second)."""
    report = build(tmp_path_factory.mktemp("html") / "r.db", hold_reason=f"held {SCRIPT}")
    return report, render_html(report)


def test_the_page_has_every_section_and_its_tags_nest(rendered: tuple[BatchReport, str]) -> None:
    _, page = rendered
    parsed = parse(page)
    assert [i for i in parsed.ids if i in dict(SECTIONS)] == [key for key, _ in SECTIONS]
    assert parsed.mismatched == [] and parsed.open == []
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page and "http://" not in page and "https://" not in page


def test_a_step_reason_with_markup_is_escaped(rendered: tuple[BatchReport, str]) -> None:
    _, page = rendered
    parsed = parse(page)
    assert parsed.scripts == 0  # the reason did not become a script
    assert "held &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert f"held {SCRIPT}" in "".join(parsed.text)  # shown to the reader as it was recorded
    assert "dose per &lt;prescription&gt;" in page  # the audit trail's reason


def test_a_simulated_batch_is_marked_on_every_page(rendered: tuple[BatchReport, str]) -> None:
    _, page = rendered
    parsed = parse(page)
    assert parsed.title.startswith("SIMULATED")
    assert {"banner", "sim", "sim-mark", "sim-watermark"} <= set(parsed.classes)
    # The marks are fixed: on screen, and repeated by Chromium on every printed page.
    assert ".sim-mark { position: fixed;" in page
    assert ".sim-watermark { position: fixed;" in page
    assert '<body class="simulated">' in page


def test_a_real_batch_carries_no_simulated_mark(tmp_path: Path) -> None:
    page = render_html(build(tmp_path / "r.db", simulated=False), draw=tiny_png)
    parsed = parse(page)
    assert "SIMULATED" not in page
    assert not {"sim", "sim-mark", "sim-watermark"} & set(parsed.classes)
    assert parsed.title.startswith("Batch record B-7")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_every_plot_is_an_img_with_a_png_data_uri(rendered: tuple[BatchReport, str]) -> None:
    report, page = rendered
    images = parse(page).images
    assert [i["data-trend"] for i in images] == [t.key for t in report.trends.plots]
    assert len(images) == 4
    for image in images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        width, height = _png_size(base64.b64decode(image["src"][len(prefix) :], validate=True))
        assert width > 300 and height > 200
        assert image["alt"]


def test_signatures_show_name_time_meaning_and_binding(
    rendered: tuple[BatchReport, str],
) -> None:
    report, page = rendered
    text = " ".join(parse(page).text)
    for signature in report.signatures:
        for shown in (signature.printed_name, signature.signed_at, signature.meaning):
            assert shown in text
    assert "INTEGRITY CHECK FAILED" not in page


def _lines(page: str) -> Iterator[str]:
    yield from (line.strip() for line in parse(page).text if line.strip())


def test_a_broken_record_says_so_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    report_store(path).close()
    with raw(path, drop_triggers=True) as conn:
        conn.execute(
            "UPDATE journal SET payload = replace(payload, 'Quinn Adams', 'Mallory') "
            "WHERE kind = 'signature'"
        )
    with SqliteStore(path, create=False) as store:
        page = render_html(build_report(store, BATCH, now=NOW), draw=tiny_png)
    lines = list(_lines(page))
    banner = lines.index(
        "INTEGRITY CHECK FAILED: the record has changed since it was written or is "
        "incomplete (see Integrity check)"
    )
    assert banner < lines.index("Batch record B-7")
    assert "broken" in lines
    assert any(line.startswith("BROKEN at seq") for line in lines)


def test_a_missing_plot_is_a_note_never_a_picture(tmp_path: Path) -> None:
    with report_store(tmp_path / "r.db") as store:
        store.create_batch(replace(store.batch(BATCH), batch_id="EMPTY"))
        page = render_html(build_report(store, "EMPTY", now=NOW), draw=tiny_png)
    parsed = parse(page)
    assert parsed.images == []
    notes = [line for line in _lines(page) if "the plot is left out" in line]
    assert len(notes) == 3 and notes[0].startswith("Bioreactor culture: no samples")
