"""``flexctl validate``: check a procedure against a line before anything runs.

Prints every problem as ``file:line:column: message`` on stderr and exits 2,
or prints a one-line summary and exits 0. Nothing is started: no twin, no
connection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK = 0
EXIT_BAD_INPUT = 2
DEFAULT_LINE = "sim"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "validate",
        help="check a procedure against a line (file:line:column for every problem)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="the procedure file (YAML)")
    parser.add_argument(
        "--line",
        help="a shipped line name or a path to a line file "
        f"(default: the procedure's 'line:', else {DEFAULT_LINE})",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a batch parameter value to check (repeatable)",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    # Imported here so the other commands start without the procedure engine.
    from flexctl.procedure.validate import check_procedure

    check = check_procedure(args.file, line=args.line, params=args.param)
    for problem in check.problems:
        print(problem, file=sys.stderr)
    if check.problems:
        count = len(check.problems)
        print(
            f"flexctl validate: {count} problem{'s' if count > 1 else ''} in {args.file}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    procedure, line = check.procedure, check.line
    assert procedure is not None and line is not None  # no problems: both were loaded
    steps = sum(len(unit.steps) for unit in procedure.unit_procedures)
    rules = sum(len(unit.rules) for unit in procedure.unit_procedures)
    per_batch = [p.name for p in procedure.parameters.values() if p.required]
    to_set = [name for name in per_batch if name not in check.values]
    note = f"; set per batch: {', '.join(to_set)}" if to_set else ""
    print(
        f"{procedure.name} {procedure.version}: OK on line {line.name} "
        f"({_count(len(procedure.unit_procedures), 'unit procedure')}, "
        f"{_count(steps, 'step')}, {_count(rules, 'rule')}){note}"
    )
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
