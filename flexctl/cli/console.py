"""``flexctl console``: the technician's console, attached to a running supervisor over OPC UA.

Connects with Basic256Sha256 SignAndEncrypt (the console's own certificate is
made in ``--pki`` at first use) and logs in as ``--user``: the password is
typed hidden on a terminal, or is the first line of stdin with
``--password-stdin``. Then one command a line (``help`` lists them): status,
prompts and signed answers, alarms, hold, restart, stop, abort. The server
checks each person's rights and audits every action under their user id.

On a terminal: completion of commands, prompt steps and alarms (Tab), and a
history in ``~/.flexctl_history`` (commands only, never a password). From a
pipe (``flexctl console --password-stdin < script``), each password the
script needs (an e-signature) is the next line, and ``abort`` reads its
confirmation (``ABORT``) from the next line.

Exit status: 0 done; 1 a command of a script failed or the session was lost;
2 bad input (no way to read the password, cannot connect, login refused).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any, Final

from flexctl.cli.serve import DEFAULT_ENDPOINT

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "console",
        help="the technician's console: attach to a running supervisor (flexctl serve)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help=f"the supervisor (default {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--user", default=None, help="your user id (default: your login name)")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (scripts)",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        default=Path("~/.flexctl/pki"),
        help="the console's certificate folder (default ~/.flexctl/pki; made if missing)",
    )
    parser.set_defaults(handler=console)


async def console(args: argparse.Namespace) -> int:
    """``flexctl console`` itself.

    The handler blocks this loop on purpose: the main thread reads what a person
    types (readline, getpass, Ctrl-C); the OPC UA session runs on its own thread.
    """
    from flexctl.cli.run import _user
    from flexctl.console.client import Connection, ConsoleError
    from flexctl.console.shell import HISTORY, PipeLines, Shell, TerminalLines

    user = args.user or _user()
    terminal = sys.stdin.isatty()
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            print("flexctl console: --password-stdin: stdin is empty", file=sys.stderr)
            return EXIT_BAD_INPUT
        password = line.rstrip("\n")
    elif not terminal:
        print(
            "flexctl console: stdin is not a terminal: give the password as its first line "
            "with --password-stdin",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    else:
        try:
            password = getpass.getpass(f"password of {user}: ")
        except EOFError:
            return EXIT_BAD_INPUT
    try:
        connection = Connection.open(args.endpoint, user, password, args.pki.expanduser())
    except ConsoleError as exc:
        print(f"flexctl console: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    del password  # signing asks again, each time
    try:
        shell = Shell(connection, user, sys.stdout)
        print(f"logged in as {user} at {args.endpoint} (help lists the commands)", flush=True)
        if terminal and not args.password_stdin:
            lines = TerminalLines(shell.complete, HISTORY.expanduser())
            try:
                code = shell.loop(lines)
            finally:
                lines.save()
        else:
            code = shell.loop(PipeLines(sys.stdin, sys.stdout))
        if not connection.alive():
            return EXIT_FAILED
        return code
    finally:
        connection.close()
