"""``flexctl console < script`` against a real ``flexctl serve`` on the simulated line.

The supervisor is a ``flexctl serve`` subprocess (in-process twins, a scaled
clock at a high speed, Basic256Sha256 SignAndEncrypt only); each console is a
subprocess too, fed a script on stdin with ``--password-stdin``. What people
did is read back from the store's audit trail once the supervisor has ended.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.users import BOOTSTRAP, add_user
from tests.record_fakes import CHEAP

TIMEOUT = 30.0  # seconds: a bound on a subprocess, never a pace

PROCEDURE = """\
procedure: console
version: "1"
line: sim
unit_procedures:
  - name: main
    steps:
      - {id: bag_closed, prompt: Confirm the bag is closed, role: operator}
      - {id: soak, wait: 10 min}
"""

#: user id -> (roles, password)
USERS: dict[str, tuple[tuple[str, ...], str]] = {
    "qa1": (("qa",), "qa-password-1"),
    "op1": (("operator",), "op-password-1"),
    "sup1": (("supervisor",), "sup-password-1"),
}


def add_users(db: Path) -> None:
    store = SqliteStore(db)
    try:
        for user_id, (roles, password) in USERS.items():
            actor = BOOTSTRAP if user_id == "qa1" else "qa1"
            add_user(
                store, user_id, f"Person {user_id}", roles, password, actor=actor,
                reason="test", cost=CHEAP,
            )  # fmt: skip
    finally:
        store.close()


def flexctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "flexctl.cli.main", *args]


@dataclass
class Supervisor:
    process: subprocess.Popen[str]
    endpoint: str
    db: Path
    output: list[str]

    def wait(self) -> int:
        return self.process.wait(TIMEOUT)


def _pump(stream: IO[str], lines: queue.Queue[str | None], kept: list[str]) -> None:
    for line in stream:
        kept.append(line)
        lines.put(line)
    lines.put(None)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    with serving(tmp_path) as served:
        yield served


@contextmanager
def serving(tmp_path: Path) -> Iterator[Supervisor]:
    """``flexctl serve`` of PROCEDURE on the sim line, listening on a free port."""
    db = tmp_path / "flexctl.db"
    add_users(db)
    procedure = tmp_path / "console.yaml"
    procedure.write_text(PROCEDURE, encoding="utf-8")
    with supervising(
        flexctl(
            "serve", str(procedure), "--db", str(db), "--batch-id", "B-1", "--speed", "600",
            "--endpoint", "opc.tcp://127.0.0.1:0/flexctl", "--linger", "2",
            "--pki", str(tmp_path / "server-pki"),
        ),
        db,
    ) as served:  # fmt: skip
        yield served


@contextmanager
def supervising(argv: list[str], db: Path) -> Iterator[Supervisor]:
    """A supervisor subprocess (``flexctl serve`` or ``run --serve``), once it says
    ``serving: URL``; killed at the end if it has not ended by then."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=db.parent
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    kept: list[str] = []
    threading.Thread(target=_pump, args=(process.stdout, lines, kept), daemon=True).start()
    endpoint = ""
    try:
        while not endpoint:
            line = lines.get(timeout=TIMEOUT)
            assert line is not None, "the supervisor ended early:\n" + "".join(kept)
            if line.startswith("serving: "):
                endpoint = line.split()[1]
        yield Supervisor(process, endpoint, db, kept)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def console(
    supervisor: Supervisor, user: str, script: str, home: Path, *, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``flexctl console`` with the login password, then ``script``, on stdin."""
    login = USERS[user][1] if password is None else password
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        flexctl(
            "console", "--endpoint", supervisor.endpoint, "--user", user, "--password-stdin",
            "--pki", str(home / "pki"),
        ),
        input=f"{login}\n{script}",
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )  # fmt: skip


def audit(db: Path) -> list[tuple[str, str, str]]:
    """(actor, action, object) of every audit entry."""
    store = SqliteStore(db)
    try:
        return [(e.record.actor, e.record.action, e.record.object) for e in store.audit_entries()]
    finally:
        store.close()


def test_scripts_hold_restart_answer_and_complete_a_served_batch(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    sup = console(
        supervisor,
        "sup1",
        "status\n"
        "start\n"
        "wait prompt bag_closed 20\n"
        "prompts\n"
        "hold checking the bag\n"
        "wait Held 20\n"
        "restart\n"
        "wait prompt bag_closed 20\n"
        "quit\n",
        tmp_path,
    )
    assert sup.returncode == 0, sup.stdout + sup.stderr
    assert "batch B-1 (console 1) on line sim: Idle" in sup.stdout
    assert "devices:" in sup.stdout and "bioreactor" in sup.stdout
    assert "Start: Idle -> Running" in sup.stdout
    assert "bag_closed: Confirm the bag is closed | operator, performed" in sup.stdout
    assert "Hold: Running -> Holding" in sup.stdout
    assert "Restart: Held -> Restarting" in sup.stdout

    wrong = console(supervisor, "op1", "answer bag_closed\nnot-my-password\n", tmp_path)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "refused (BadUserAccessDenied)" in wrong.stdout
    assert "not-my-password" not in wrong.stdout  # a secret is never echoed
    assert "Traceback" not in wrong.stderr

    op = console(
        supervisor,
        "op1",
        f"answer bag_closed\n{USERS['op1'][1]}\nwait Complete 20\n",
        tmp_path,
    )
    assert op.returncode == 0, op.stdout + op.stderr
    assert "signed by Person op1 (op1)" in op.stdout
    assert "batch is Complete" in op.stdout
    assert supervisor.wait() == 0, "".join(supervisor.output)
    assert "batch B-1 ended Complete" in "".join(supervisor.output)

    trail = audit(supervisor.db)
    assert ("sup1", "opcua call", "opcua:Start") in trail
    assert ("sup1", "opcua call", "opcua:Hold") in trail
    assert ("sup1", "opcua call", "opcua:Restart") in trail
    signing = [(actor, action) for actor, action, obj in trail if "bag_closed" in obj]
    assert ("op1", "signature refused") in signing and ("op1", "signed") in signing
    assert not (tmp_path / ".flexctl_history").exists()  # a script keeps no history


def test_a_wrong_login_and_an_unknown_endpoint_are_said_without_a_trace(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    bad = console(supervisor, "op1", "status\n", tmp_path, password="wrong")
    assert bad.returncode == 2
    assert "login refused for 'op1'" in bad.stderr and "Traceback" not in bad.stderr
    refused = console(
        supervisor, "sup1", "abort no reason to\nnope\nbogus\nwait Held 0\n", tmp_path
    )
    assert refused.returncode == 1
    assert "not aborted (not confirmed)" in refused.stdout
    assert "error: unknown command 'bogus'" in refused.stdout
    assert "failed: still Idle after 0 s, not Held" in refused.stdout
    assert "console: 3 command(s) failed" in refused.stdout
    gone = Supervisor(supervisor.process, "opc.tcp://127.0.0.1:9/flexctl", supervisor.db, [])
    unreachable = console(gone, "op1", "status\n", tmp_path)
    assert unreachable.returncode == 2
    assert "cannot reach the supervisor at opc.tcp://127.0.0.1:9/flexctl" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
