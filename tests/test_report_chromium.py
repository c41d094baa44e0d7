"""The HTML report renders in a real browser: headless Chromium loads it, decodes every plot,
and prints it to PDF.

A copy of the page gets a small script that, once the page has loaded, writes
what the browser made of it (each image's decoded size, the sections, the
SIMULATED mark's computed position) into the DOM, which ``--dump-dom`` then
prints. Chromium is Debian's (``/usr/bin/chromium``); ``.ci/run`` installs it.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flexctl.report.html import SECTIONS, render_html
from flexctl.report.model import BatchReport, build_report
from tests.report_factory import BATCH, report_store

CHROMIUM = Path("/usr/bin/chromium")
#: Seconds one Chromium run may take before the test fails (a run takes about one).
TIMEOUT = 60
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

CHECK = """
<script>
window.addEventListener("load", () => {
  const mark = document.querySelector(".sim-mark");
  const seen = {
    images: Array.from(document.images).map((img) => ({
      trend: img.dataset.trend, complete: img.complete,
      width: img.naturalWidth, height: img.naturalHeight,
    })),
    sections: Array.from(document.querySelectorAll("section[id]")).map((s) => s.id),
    mark: mark ? getComputedStyle(mark).position : null,
    title: document.title,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>
"""


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the report's rendering test needs Debian's chromium; "
            ".ci/run installs it (apt-get install -y --no-install-recommends chromium)"
        )
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[BatchReport, Path]:
    """The simulated batch's report, with the check script, as a file."""
    folder = tmp_path_factory.mktemp("chromium")
    with report_store(folder / "r.db") as store:
        report = build_report(store, BATCH, now=NOW)
    text = render_html(report)
    assert text.count("</body>") == 1
    path = folder / "report.html"
    path.write_text(text.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    return report, path


def _seen(dom: str) -> dict[str, Any]:
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, "the check script did not run: " + dom[-500:]
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return data


def test_chromium_loads_every_section_and_decodes_every_plot(
    page: tuple[BatchReport, Path], tmp_path: Path
) -> None:
    report, path = page
    done = _chromium(tmp_path / "profile", "--window-size=1280,2000", "--dump-dom", path.as_uri())
    seen = _seen(done.stdout)
    assert seen["sections"] == [key for key, _ in SECTIONS]
    assert [i["trend"] for i in seen["images"]] == [t.key for t in report.trends.plots]
    assert seen["images"], "no plot in the page"
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert seen["mark"] == "fixed"
    assert seen["overflow"] <= 0, "the page is wider than the window: a table overflows"
    assert seen["title"].startswith("SIMULATED")


def test_chromium_prints_it_and_takes_a_screenshot(
    page: tuple[BatchReport, Path], tmp_path: Path
) -> None:
    _, path = page
    pdf, png = tmp_path / "report.pdf", tmp_path / "report.png"
    _chromium(tmp_path / "print", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", path.as_uri())
    _chromium(tmp_path / "shot", "--window-size=1280,2000", f"--screenshot={png}", path.as_uri())
    printed = pdf.read_bytes()
    assert printed.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", printed))
    assert pages >= 3, f"{pages} printed pages"
    shot = png.read_bytes()
    assert shot.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(shot[16:20], "big") == 1280
