"""``flexctl audit verify``: check the record's hash chains (journal and audit trail).

Re-computes every entry's hash from the start of each chain and prints how
many entries were checked and whether the chain is intact; for a broken chain,
the first bad entry (table, seq) and why. Exit 0 when every chain is intact,
1 when one is broken, 2 when the file is missing or is not a flexctl store
(or one written by a newer flexctl). A missing file is never created.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_DB = "flexctl.db"


def add_parser(commands: Any) -> None:
    """Add ``audit`` (with its ``verify`` tool) to the ``flexctl`` sub-commands."""
    audit = commands.add_parser("audit", help="record integrity tools")
    # The same parser class as the parent, so a usage error exits 2 like every other.
    tools = audit.add_subparsers(dest="tool", required=True, parser_class=type(audit))
    verify = tools.add_parser(
        "verify",
        help="check the hash chains of the record (journal and audit trail)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "--db",
        type=Path,
        default=Path(DEFAULT_DB),
        help=f"the record store (default: {DEFAULT_DB} in the working directory)",
    )
    verify.set_defaults(handler=run_verify)


async def run_verify(args: argparse.Namespace) -> int:
    return verify(args.db)


def verify(path: Path) -> int:
    """Verify the store at ``path``, print the outcome; the exit status."""
    # Imported here so the other commands start without the record layer.
    from flexctl.record.sqlite_store import SqliteStore
    from flexctl.record.store import RecordError

    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        print(
            f"flexctl audit verify: error: {path}: {what} (expected a flexctl store)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        with SqliteStore(path, create=False) as store:
            result = store.verify()
    except RecordError as exc:
        print(f"flexctl audit verify: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    broken = {problem.table: problem for problem in result.problems}
    print(f"{path}:")
    for table, count in result.checked.items():
        entries = f"{count} {'entry' if count == 1 else 'entries'} checked"
        problem = broken.get(table)
        if problem is None:
            print(f"  {table}: {entries}, intact")
        else:
            print(f"  {table}: {entries}, BROKEN at seq {problem.seq}: {problem.reason}")
    if result.ok:
        print("intact")
        return EXIT_OK
    print(f"broken: {', '.join(f'{p.table} at seq {p.seq}' for p in result.problems)}")
    return EXIT_FAILED
