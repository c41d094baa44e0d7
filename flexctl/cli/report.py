"""``flexctl report BATCH``: the electronic batch record of one batch, from the record store.

Writes one self-contained HTML file (default ``report-<batch>.html`` in the
working directory): the batch, its parameters and devices, every step and
attempt, the e-signatures (printed name, time, meaning and whether each is
still bound to what it signed), deviations, interlocks, alarms, state history,
recorded values, trend plots, the audit trail and the check of the store's hash
chains. ``--json`` writes the same content as JSON to stdout (or to ``--out``).

Exit status: 0 written and the record is intact; 1 written, but the integrity
check failed (a hash chain broken, a signature no longer bound to what it
signed, the procedure text changed) or the file could not be written; 2 the
store is missing or not a flexctl store, or has no such batch. A missing store
is never created.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flexctl.record.store import Store

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_DB = "flexctl.db"
#: How many of the store's batches an unknown-batch message names.
SHOW_BATCHES = 5


def add_parser(commands: Any) -> None:
    """Add ``report`` to the ``flexctl`` sub-commands."""
    parser = commands.add_parser(
        "report",
        help="write the electronic batch record of a batch (HTML, or JSON with --json)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("batch", help="the batch id")
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(DEFAULT_DB),
        help=f"the record store (default: {DEFAULT_DB} in the working directory)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the file to write (default: report-<batch>.html; with --json: stdout)",
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of HTML")
    parser.set_defaults(handler=run)


def write_report(
    store: Store, batch_id: str, out_path: str | os.PathLike[str], *, now: datetime | None = None
) -> Path:
    """The batch record of ``batch_id`` as HTML at ``out_path`` (``flexctl run`` calls this)."""
    from flexctl.report.output import write_report as write

    return write(store, batch_id, out_path, now=now)


async def run(args: argparse.Namespace) -> int:
    return report(args.batch, db=args.db, out=args.out, as_json=args.json)


def _error(message: str) -> int:
    print(f"flexctl report: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _unknown_batch(store: Store, db: Path, batch_id: str) -> int:
    known = [info.batch_id for info in store.batches()]
    if not known:
        there = "the store has no batches"
    else:
        shown = known[-SHOW_BATCHES:]
        more = f" and {len(known) - len(shown)} earlier" if len(known) > len(shown) else ""
        there = f"batches there: {', '.join(shown)}{more}"
    return _error(f"{db}: no batch {batch_id!r} ({there})")


def report(batch_id: str, *, db: Path, out: Path | None, as_json: bool) -> int:
    """Write the report of ``batch_id`` from the store at ``db``; the exit status."""
    # Imported here so the other commands start without matplotlib and the report.
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError
    from flexctl.report.model import build_report
    from flexctl.report.output import default_name, write_text

    if not db.is_file():
        what = "is not a file" if db.exists() else "does not exist"
        return _error(f"{db}: {what} (expected a flexctl store)")
    try:
        with SqliteStore(db, create=False) as store:
            try:
                store.batch(batch_id)
            except RecordError:
                if batch_id not in {info.batch_id for info in store.batches()}:
                    return _unknown_batch(store, db, batch_id)
                raise
            built = build_report(store, batch_id)
    except RecordError as exc:
        return _error(str(exc))
    if as_json:
        from flexctl.report.json_export import render_json

        text, target = render_json(built), out
    else:
        from flexctl.report.html import render_html

        text, target = render_html(built), out or Path(default_name(batch_id))
    if target is None:
        sys.stdout.write(text)
    else:
        try:
            write_text(target, text)
        except OSError as exc:
            print(f"flexctl report: failed: cannot write {target}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"batch {batch_id} ({built.header.final_state}): wrote {target}")
    if not built.integrity.ok:
        print(
            f"flexctl report: batch {batch_id}: the integrity check FAILED "
            "(see the report's Integrity check)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK
