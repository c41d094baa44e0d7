"""``flexctl users``: add, list, disable and enable people on a real SQLite store.

The command is not wired into ``flexctl`` here (the lead does that in
cli/main.py); a small parser around :func:`flexctl.cli.users.add_parser`
parses the same arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from flexctl.cli import users as cli_users
from flexctl.record.passwords import verify_password
from flexctl.record.sqlite_store import SqliteStore


class _Parser(argparse.ArgumentParser):
    """As flexctl's own parser: a usage error exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class FakeStdin(io.StringIO):
    def __init__(self, text: str, *, tty: bool) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


class Run:
    """Runs ``flexctl users ...`` on the test's store with a given stdin."""

    def __init__(
        self, db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.db, self.monkeypatch, self.capsys = db, monkeypatch, capsys

    def __call__(self, argv: Sequence[str], stdin: str = "", *, tty: bool = False) -> Result:
        parser = _Parser(prog="flexctl")
        commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
        cli_users.add_parser(commands)
        args = parser.parse_args(["users", *argv, "--db", str(self.db)])
        self.monkeypatch.setattr(sys, "stdin", FakeStdin(stdin, tty=tty))
        self.capsys.readouterr()
        code = asyncio.run(args.handler(args))
        out, err = self.capsys.readouterr()
        return Result(code, out, err)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db: Path) -> Run:
    return Run(db, monkeypatch, capsys)


def bootstrap(run: Run) -> None:
    result = run(
        ["add", "qa.lead", "--name", "Quinn Lead", "--role", "qa", "--password-stdin"],
        "qa-lead-pw\n",
    )
    assert result.code == 0, result.err


def error_line(result: Result) -> str:
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err  # one line, no traceback
    return lines[0]


def test_the_first_user_is_added_by_bootstrap(run: Run, db: Path) -> None:
    assert not db.exists()
    result = run(
        [
            *["add", "qa.lead", "--name", "Quinn Lead", "--role", "qa", "--role", "supervisor"],
            *["--password-stdin", "--reason", "site start-up"],
        ],
        "qa-lead-pw\n",
    )
    assert result.code == 0 and result.err == ""
    assert result.out == (f"added user qa.lead (Quinn Lead; qa, supervisor) to {db} by bootstrap\n")
    with SqliteStore(db, create=False) as store:
        user = store.user("qa.lead")
        [entry] = store.audit_entries()
    assert user.roles == {"qa", "supervisor"} and verify_password("qa-lead-pw", user.password_hash)
    assert (entry.record.actor, entry.record.action, entry.record.reason) == (
        "bootstrap",
        "user added",
        "site start-up",
    )


def test_the_first_user_must_hold_qa_and_comes_without_by(run: Run, db: Path) -> None:
    argv = ["add", "olga", "--name", "Olga", "--role", "operator", "--password-stdin"]
    result = run(argv, "olga-pw-12\n")
    assert result.code == 2
    assert "no users yet" in error_line(result) and "must hold the qa role" in result.err
    result = run([*argv[:-2], "qa", "--by", "someone", "--password-stdin"], "x\n")
    assert result.code == 2 and "without --by" in error_line(result)
    with SqliteStore(db, create=False) as store:
        assert store.users() == [] and store.audit_entries() == []


def test_by_on_a_missing_store_creates_nothing(run: Run, db: Path) -> None:
    argv = ["add", "qa.lead", "--name", "Q", "--role", "qa", "--by", "x", "--password-stdin"]
    result = run(argv, "pw\n")
    assert result.code == 2 and "no users yet" in error_line(result)
    assert not db.exists()


def test_later_users_are_added_by_a_supervisor_or_qa_user_with_their_password(
    run: Run, db: Path
) -> None:
    bootstrap(run)
    base = ["add", "olga", "--name", "Olga Operator", "--role", "operator", "--password-stdin"]
    result = run(base, "olga-pw-12\n")
    assert result.code == 2 and "--by USER is required" in error_line(result)

    result = run([*base, "--by", "qa.lead"], "wrong-pw\nolga-pw-12\n")
    assert result.code == 2 and "wrong user id or password" in error_line(result)

    result = run([*base, "--by", "qa.lead"], "qa-lead-pw\nolga-pw-12\n")
    assert result.code == 0, result.err
    assert result.out == f"added user olga (Olga Operator; operator) to {db} by qa.lead\n"

    # An operator cannot add users, even with the right password.
    other = ["add", "otto", "--name", "Otto", "--role", "operator", "--password-stdin"]
    result = run([*other, "--by", "olga"], "olga-pw-12\notto-pw-123\n")
    assert result.code == 2 and "'olga' is not a supervisor or qa user" in error_line(result)

    with SqliteStore(db, create=False) as store:
        assert verify_password("olga-pw-12", store.user("olga").password_hash)
        trail = [(e.record.actor, e.record.action, e.record.object) for e in store.audit_entries()]
        assert store.verify().ok
    assert trail == [
        ("bootstrap", "user added", "user:qa.lead"),
        ("qa.lead", "authentication refused", "user administration"),
        ("qa.lead", "user added", "user:olga"),
        ("olga", "authentication refused", "user administration"),
    ]
    assert "wrong-pw" not in repr(trail) and "otto" not in {u for _, _, u in trail}


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["add", "Olga", "--name", "O", "--role", "qa"], "olga-pw-12\n", "lowercase letters"),
        (["add", "system", "--name", "S", "--role", "qa"], "olga-pw-12\n", "reserved"),
        (["add", "olga", "--name", " ", "--role", "qa"], "olga-pw-12\n", "printed name"),
        (["add", "olga", "--name", "O", "--role", "qa"], "short\n", "at least 8 characters"),
        (["add", "olga", "--name", "O", "--role", "qa"], "olga\n", "at least 8 characters"),
        (["add", "olga1234", "--name", "O", "--role", "qa"], "olga1234\n", "not be the user id"),
        (["add", "olga", "--name", "O", "--role", "qa"], "", "end of input"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    run: Run, argv: list[str], stdin: str, message: str
) -> None:
    result = run([*argv, "--password-stdin"], stdin)
    assert result.code == 2
    assert error_line(result).startswith("flexctl users add: error: ") and message in result.err


def test_a_password_is_never_an_argument_and_roles_are_checked(run: Run) -> None:
    with pytest.raises(SystemExit) as caught:
        run(["add", "olga", "--name", "O", "--role", "qa", "--password", "pw"])
    assert caught.value.code == 2
    result = run(["add", "qa.lead", "--name", "O", "--role", "qa", "--role", "admin"])
    assert result.code == 2
    assert "unknown role 'admin': expected one of operator, supervisor, qa" in error_line(result)


def test_on_a_terminal_the_password_is_typed_twice(
    run: Run, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "Password: ") -> str:
        prompts.append(prompt)
        return typed.pop(0)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    argv = ["add", "qa.lead", "--name", "Quinn Lead", "--role", "qa"]
    typed[:] = ["qa-lead-pw", "qa-lead-pW"]
    result = run(argv, tty=True)
    assert result.code == 2 and "the two passwords differ" in error_line(result)
    typed[:] = ["qa-lead-pw", "qa-lead-pw"]
    result = run(argv, tty=True)
    assert result.code == 0, result.err
    assert prompts[-2:] == ["New password for qa.lead: ", "Repeat the password: "]
    with SqliteStore(db, create=False) as store:
        assert verify_password("qa-lead-pw", store.user("qa.lead").password_hash)


def test_without_a_terminal_passwords_need_password_stdin(run: Run, db: Path) -> None:
    result = run(["add", "qa.lead", "--name", "Q", "--role", "qa"], "qa-lead-pw\n")
    assert result.code == 2 and "--password-stdin" in error_line(result)
    assert not db.exists()


def test_list_shows_every_user_and_never_creates_a_store(run: Run, db: Path) -> None:
    result = run(["list"])
    assert result.code == 2 and "does not exist" in error_line(result)
    assert not db.exists()
    bootstrap(run)
    result = run(
        [
            *["add", "olga", "--name", "Olga Operator", "--role", "operator", "--by", "qa.lead"],
            "--password-stdin",
        ],
        "qa-lead-pw\nolga-pw-12\n",
    )
    assert result.code == 0, result.err
    result = run(["list"])
    assert result.code == 0
    header, first, second = result.out.splitlines()
    assert header.split() == ["USER", "NAME", "ROLES", "STATE", "CREATED", "(UTC)"]
    assert first.split()[:4] == ["olga", "Olga", "Operator", "operator"]
    assert "enabled" in first and second.startswith("qa.lead ") and "Quinn Lead" in second
    # Columns line up: every row's name starts where the header's does.
    assert {
        row.index(name) for row, name in [(header, "NAME"), (first, "Olga"), (second, "Quinn")]
    } == {header.index("NAME")}


def test_disable_and_enable_need_by_and_a_reason_and_are_audited(run: Run, db: Path) -> None:
    bootstrap(run)
    add = ["add", "olga", "--name", "Olga", "--role", "operator", "--by", "qa.lead"]
    assert (run([*add, "--password-stdin"], "qa-lead-pw\nolga-pw-12\n")).code == 0
    with pytest.raises(SystemExit):
        run(["disable", "olga", "--by", "qa.lead", "--password-stdin"], "qa-lead-pw\n")
    with pytest.raises(SystemExit):
        run(["disable", "olga", "--reason", "left", "--password-stdin"], "qa-lead-pw\n")
    disable = ["disable", "olga", "--reason", "left the site", "--by", "qa.lead"]
    result = run([*disable, "--password-stdin"], "nope\n")
    assert result.code == 2 and "wrong user id or password" in error_line(result)
    result = run([*disable, "--password-stdin"], "qa-lead-pw\n")
    assert result.code == 0 and result.out == f"disabled user olga in {db} by qa.lead\n"
    assert "disabled" in (run(["list"])).out.splitlines()[1]
    result = run([*disable, "--password-stdin"], "qa-lead-pw\n")
    assert result.code == 2 and "disabled already" in error_line(result)
    result = run(
        ["enable", "olga", "--reason", "back", "--by", "qa.lead", "--password-stdin"],
        "qa-lead-pw\n",
    )
    assert result.code == 0 and result.out.startswith("enabled user olga")
    result = run(["disable", "ghost", "--reason", "x", "--by", "qa.lead", "--password-stdin"], "")
    assert result.code == 2 and "no user 'ghost'" in error_line(result)
    result = run(
        ["disable", "qa.lead", "--reason", "x", "--by", "qa.lead", "--password-stdin"],
        "qa-lead-pw\n",
    )
    assert result.code == 2 and "last enabled supervisor or qa user" in error_line(result)
    with SqliteStore(db, create=False) as store:
        changes = [
            (e.record.action, e.record.old_value, e.record.new_value, e.record.reason)
            for e in store.audit_entries()
            if e.record.action in ("user disabled", "user enabled")
        ]
        assert store.verify().ok
    assert changes == [
        ("user disabled", {"disabled": False}, {"disabled": True}, "left the site"),
        ("user enabled", {"disabled": True}, {"disabled": False}, "back"),
    ]


def test_a_file_that_is_not_a_store_exits_2(run: Run, db: Path) -> None:
    db.write_text("not a database, just text" * 100)
    result = run(["list"])
    assert result.code == 2 and "not a flexctl store" in error_line(result)
