"""``flexctl console`` in a terminal: what a person sees, typed through tmux.

A real ``flexctl serve`` on the simulated line; the console runs in a tmux
pane on a private tmux server; keys go in with send-keys and the screen is
read with capture-pane, polled until the expected text shows (bounded).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_console_script import USERS, Supervisor, serving

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

SCREEN_TIMEOUT = 15.0  # seconds: a bound on the screen showing what is expected


class Pane:
    """One tmux pane on a private tmux server (its socket in the test's folder)."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=SCREEN_TIMEOUT,
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "console")

    def type(self, text: str, *keys: str) -> None:
        if text:
            self.tmux("send-keys", "-t", "console", "-l", text)
        if keys:
            self.tmux("send-keys", "-t", "console", *keys)

    def shows(self, *texts: str, last_line: bool = False) -> str:
        """The screen once it shows every text (on its last non-blank line if asked)."""
        deadline = time.monotonic() + SCREEN_TIMEOUT
        while True:
            screen = self.screen()
            seen = screen.rstrip().splitlines()[-1:] if last_line else [screen]
            if all(any(t in s for s in seen) for t in texts):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {texts!r}:\n{screen}")
            time.sleep(0.05)  # the polling pace of a bounded wait


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    served: Supervisor
    with serving(tmp_path) as served:
        home = tmp_path / "home"
        home.mkdir()
        pane = Pane(tmp_path / "tmux.sock")
        command = [
            sys.executable, "-m", "flexctl.cli.main", "console",
            "--endpoint", served.endpoint, "--user", "op1", "--pki", str(home / "pki"),
        ]  # fmt: skip
        pane.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "console", "-x", "160", "-y", "50",
            "-e", f"HOME={home}", "-e", "TERM=xterm", " ".join(command),
        )  # fmt: skip
        try:
            yield pane
        finally:
            subprocess.run(
                ["tmux", "-S", str(pane.socket), "kill-server"], capture_output=True, check=False
            )


def test_a_person_logs_in_sees_the_status_completes_commands_and_signs(
    pane: Pane, tmp_path: Path
) -> None:
    pane.shows("password of op1:")
    pane.type(USERS["op1"][1], "Enter")
    pane.shows("logged in as op1")
    pane.shows("flexctl>", last_line=True)
    assert USERS["op1"][1] not in pane.screen()  # typed hidden

    pane.type("status", "Enter")
    screen = pane.shows("on line sim: Idle", "devices:", "freezer", "alarms: none")
    assert "bioreactor" in screen and "commands: Start" in screen

    pane.type("prom", "Tab")  # one command starts so: completed in place
    pane.shows("flexctl> prompts", last_line=True)
    pane.type("", "Enter")
    pane.shows("no prompt is waiting")

    pane.type("wait Ru", "Tab")  # the states complete after wait
    pane.shows("flexctl> wait Running", last_line=True)
    pane.type("", "C-u")

    pane.type("start", "Enter")
    pane.shows("Start: Idle -> Running")
    pane.type("wait prompt bag_closed 20", "Enter")
    pane.shows("prompt bag_closed is waiting")
    pane.type("answer b", "Tab")  # the waiting prompts' steps complete after answer
    pane.shows("flexctl> answer bag_closed", last_line=True)
    pane.type("", "Enter")
    pane.shows("password of op1 (signs bag_closed):", last_line=True)
    pane.type(USERS["op1"][1], "Enter")  # the e-signature, typed hidden
    pane.shows("signed by Person op1 (op1)")
    assert USERS["op1"][1] not in pane.screen()
    pane.type("quit", "Enter")
    history = tmp_path / "home" / ".flexctl_history"
    deadline = time.monotonic() + SCREEN_TIMEOUT
    while not history.exists():  # written as the console ends
        assert time.monotonic() < deadline, "no history written:\n" + pane.screen()
        time.sleep(0.05)
    kept = history.read_text()
    assert "status" in kept and "prompts" in kept and "answer bag_closed" in kept
    assert USERS["op1"][1] not in kept  # never a password
