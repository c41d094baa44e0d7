"""Writing a report file: HTML (what ``flexctl run`` leaves at the end of a batch) or JSON."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from flexctl.record.store import Store


def default_name(batch_id: str) -> str:
    """``report-<batch>.html``, with anything a file name should not hold made ``_``."""
    return f"report-{re.sub(r'[^A-Za-z0-9._-]', '_', batch_id)}.html"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a reader never sees half a report)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_report(
    store: Store, batch_id: str, out_path: str | os.PathLike[str], *, now: datetime | None = None
) -> Path:
    """Build the batch record of ``batch_id`` from ``store`` and write it as HTML to ``out_path``.

    Raises:
        RecordError: the store has no such batch (or cannot be read).
        OSError: the file cannot be written.
    """
    from flexctl.report.html import render_html
    from flexctl.report.model import build_report

    return write_text(Path(out_path), render_html(build_report(store, batch_id, now=now)))
