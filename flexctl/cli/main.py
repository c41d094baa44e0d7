"""The ``flexctl`` command: parse arguments, run one sub-command, map errors to exit codes.

Exit status: 0 success, 1 the work failed (a device, a batch), 2 bad input
(arguments, files: the message names file, line and what was expected),
130 interrupted. No traceback reaches the user for an error flexctl expects.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from flexctl.cli import audit, console, demo, report, resume, run, serve, sim, users, validate
from flexctl.errors import ConfigurationError, FlexctlError
from flexctl.logs import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error names the command and exits 2 without a trace."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flexctl",
        description="Equipment control and automation runtime for closed-system "
        "cell-therapy manufacturing.",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level (logs go to stderr; default: warning)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    transports = commands.add_parser("transports", help="transport tools")
    tools = transports.add_subparsers(dest="tool", required=True, parser_class=_Parser)
    demo.add_parser(tools)
    simulation = commands.add_parser("sim", help="simulator twins")
    sim_tools = simulation.add_subparsers(dest="tool", required=True, parser_class=_Parser)
    sim.add_parser(sim_tools)
    validate.add_parser(commands)
    run.add_parser(commands)
    resume.add_parser(commands)
    audit.add_parser(commands)
    users.add_parser(commands)
    report.add_parser(commands)
    serve.add_parser(commands)
    console.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        result: int = asyncio.run(args.handler(args))
    except ConfigurationError as exc:
        print(f"flexctl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FlexctlError as exc:
        print(f"flexctl: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("flexctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


if __name__ == "__main__":
    raise SystemExit(main())
