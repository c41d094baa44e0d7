"""``flexctl users``: the people who may sign (add, list, disable, enable), each change audited.

A password is never given on the command line: it is typed twice (hidden)
when stdin is a terminal, or read one line per password from stdin with
``--password-stdin`` (for scripts). Adding, disabling and enabling users is
done ``--by`` an enabled supervisor or QA user, who enters their password
first. The one exception is the first user of an empty store: it is added by
``bootstrap``, without ``--by``, and must hold the qa role.

``users add`` creates the store file if it is missing; ``list``, ``disable``
and ``enable`` never do. Exit 0 on success, 2 on bad input (an invalid id,
a weak or mistyped password, a refused administrator, a missing store).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flexctl.errors import FlexctlError

if TYPE_CHECKING:
    from flexctl.record.sqlite_store import SqliteStore

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK = 0
EXIT_BAD_INPUT = 2
DEFAULT_DB = "flexctl.db"
DEFAULT_ADD_REASON = "new user"

_DB_HELP = (
    f"the record store (default: {DEFAULT_DB} in the working directory); "
    "only 'users add' creates a missing file"
)
_STDIN_HELP = (
    "read passwords from stdin, one line each: first the --by user's, then "
    "(for add) the new user's; without it they are typed on the terminal"
)


_FIRST_USER = (
    "{db} has no users yet: the first user is added without --by (recorded as "
    "added by bootstrap) and must hold the qa role"
)


class InputError(FlexctlError):
    """A password could not be read, or its two entries differ."""


def add_parser(commands: Any) -> None:
    """Add ``users`` (with ``add``, ``list``, ``disable``, ``enable``) to the sub-commands."""
    users = commands.add_parser(
        "users",
        help="people who may sign: add, list, disable, enable",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The same parser class as the parent, so a usage error exits 2 like every other.
    tools = users.add_subparsers(dest="tool", required=True, parser_class=type(users))

    add = tools.add_parser(
        "add",
        help="add a user (creates the store if missing)",
        description="Add a user. The first user of an empty store is added by bootstrap "
        "(no --by) and must hold the qa role; later ones --by a supervisor or qa user.",
    )
    add.add_argument("user", help="the new user id: lowercase letters, digits, '.', '-', '_'")
    add.add_argument("--name", required=True, help="the printed name a signature shows")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        metavar="ROLE",
        help="a role the user holds: operator, supervisor or qa (repeatable)",
    )
    add.add_argument("--reason", default=DEFAULT_ADD_REASON, help="why (for the audit trail)")
    _common(add, by_required=False)
    add.set_defaults(handler=run_add)

    listing = tools.add_parser("list", help="list every user, enabled or not")
    listing.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=_DB_HELP)
    listing.set_defaults(handler=run_list)

    for verb, handler in (("disable", run_disable), ("enable", run_enable)):
        tool = tools.add_parser(verb, help=f"{verb} a user (audited, with a reason)")
        tool.add_argument("user", help="the user id")
        tool.add_argument("--reason", required=True, help="why (for the audit trail)")
        _common(tool, by_required=True)
        tool.set_defaults(handler=handler)


def _common(parser: argparse.ArgumentParser, *, by_required: bool) -> None:
    parser.add_argument(
        "--by",
        metavar="USER",
        required=by_required,
        help="the supervisor or qa user making the change (asked for their password)",
    )
    parser.add_argument("--password-stdin", action="store_true", help=_STDIN_HELP)
    parser.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help=_DB_HELP)


# -- handlers ---------------------------------------------------------------------------


async def run_add(args: argparse.Namespace) -> int:
    return _guarded("add", lambda: _add(args))


async def run_list(args: argparse.Namespace) -> int:
    return _guarded("list", lambda: _list(args))


async def run_disable(args: argparse.Namespace) -> int:
    return _guarded("disable", lambda: _set_disabled(args, disabled=True))


async def run_enable(args: argparse.Namespace) -> int:
    return _guarded("enable", lambda: _set_disabled(args, disabled=False))


def _guarded(tool: str, work: Callable[[], None]) -> int:
    """Run ``work``; a flexctl error is one line on stderr and exit 2, never a traceback."""
    try:
        work()
    except FlexctlError as exc:
        print(f"flexctl users {tool}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _add(args: argparse.Namespace) -> None:
    from flexctl.record import users

    user_id = users.check_user_id(args.user)
    name = users.check_printed_name(args.name)
    roles = users.parse_roles(args.role)
    reader = _Passwords(args.password_stdin)
    if args.by is not None and not args.db.exists():
        raise InputError(_FIRST_USER.format(db=args.db))
    with _open(args.db, create=True) as store:
        if store.users():
            if args.by is None:
                raise InputError(
                    "--by USER is required: an enabled supervisor or qa user, "
                    "who enters their password"
                )
            if users.find_user(store, user_id) is not None:
                raise InputError(f"user {user_id!r} exists already; user ids are never reused")
            users.authenticate_admin(store, args.by, reader.one(f"Password for {args.by}: "))
            actor = args.by
        else:
            if args.by is not None or users.Roles.QA not in roles:
                raise InputError(_FIRST_USER.format(db=args.db))
            actor = users.BOOTSTRAP
        password = reader.new(user_id)
        record = users.add_user(
            store, user_id, name, roles, password, actor=actor, reason=args.reason
        )
    held = ", ".join(sorted(record.roles))
    print(f"added user {user_id} ({record.printed_name}; {held}) to {args.db} by {actor}")


def _list(args: argparse.Namespace) -> None:
    from flexctl.record.users import list_users

    with _open(args.db, create=False) as store:
        people = list_users(store)
    if not people:
        print(f"{args.db}: no users")
        return
    rows = [("USER", "NAME", "ROLES", "STATE", "CREATED (UTC)")]
    for user in people:
        created = user.created_utc.strftime("%Y-%m-%d %H:%M:%S")
        state = "disabled" if user.disabled else "enabled"
        rows.append((user.user_id, user.printed_name, ",".join(sorted(user.roles)), state, created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _set_disabled(args: argparse.Namespace, *, disabled: bool) -> None:
    from flexctl.record import users

    reader = _Passwords(args.password_stdin)
    with _open(args.db, create=False) as store:
        store.user(args.user)  # an unknown user is said before a password is asked
        users.authenticate_admin(store, args.by, reader.one(f"Password for {args.by}: "))
        change = users.disable_user if disabled else users.enable_user
        change(store, args.user, actor=args.by, reason=args.reason)
    print(f"{'disabled' if disabled else 'enabled'} user {args.user} in {args.db} by {args.by}")


@contextmanager
def _open(path: Path, *, create: bool) -> Iterator[SqliteStore]:
    """The store at ``path``, closed afterwards; a missing file is created only if ``create``."""
    # Imported here so the module (and the other commands) load without the store.
    from flexctl.record.sqlite_store import SqliteStore

    if not create and not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise InputError(f"{path}: {what} (expected a flexctl store; 'users add' creates one)")
    store = SqliteStore(path, create=create)
    try:
        yield store
    finally:
        store.close()


class _Passwords:
    """Reads passwords: hidden from the terminal, or one line each from stdin."""

    def __init__(self, from_stdin: bool, stdin: TextIO | None = None) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.from_stdin = from_stdin
        if not from_stdin and not self.stdin.isatty():
            raise InputError(
                "stdin is not a terminal: give passwords with --password-stdin, one line each"
            )

    def one(self, prompt: str) -> str:
        """One password (an existing one: typed once)."""
        if self.from_stdin:
            line = self.stdin.readline()
            if not line:
                raise InputError("expected one more password line on stdin, got end of input")
            return line.rstrip("\r\n")
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise InputError("no password entered") from None

    def new(self, user_id: str) -> str:
        """A new password: from stdin once, or typed twice on the terminal (must match)."""
        from flexctl.record.passwords import check_policy

        password = self.one(f"New password for {user_id}: ")
        check_policy(password, user_id)  # before the second entry: say it at once
        if not self.from_stdin and getpass.getpass("Repeat the password: ") != password:
            raise InputError("the two passwords differ; nothing was changed")
        return password
