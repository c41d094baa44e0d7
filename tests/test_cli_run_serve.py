"""``flexctl run --serve``: a headless run that consoles can watch and steer over OPC UA.

Served, a held batch waits for a person at a console instead of being stopped
by the software; the person's hold and restart are audited under her name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_console_script import Supervisor, add_users, audit, console, flexctl, supervising

PROCEDURE = """\
procedure: served
version: "1"
line: sim
unit_procedures:
  - name: main
    steps:
      - {id: soak, wait: 2 h}
"""


@contextmanager
def running(tmp_path: Path) -> Iterator[Supervisor]:
    """``flexctl run --serve`` of PROCEDURE on the sim line (scaled time), on a free port."""
    db = tmp_path / "flexctl.db"
    add_users(db)
    procedure = tmp_path / "served.yaml"
    procedure.write_text(PROCEDURE, encoding="utf-8")
    with supervising(
        flexctl(
            "run", str(procedure), "--db", str(db), "--batch-id", "B-RUN", "--speed", "300",
            "--serve", "opc.tcp://127.0.0.1:0/flexctl", "--pki", str(tmp_path / "server-pki"),
        ),
        db,
    ) as served:  # fmt: skip
        yield served


def test_a_served_run_is_held_and_restarted_from_a_console_and_completes(
    tmp_path: Path,
) -> None:
    with running(tmp_path) as run:
        script = "hold checking the bag\nwait Held 20\nstatus\nrestart\nwait Complete 60\n"
        done = console(run, "sup1", script, tmp_path / "home")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Held" in done.stdout
        assert run.wait() == 0, "".join(run.output)
    output = "".join(run.output)
    assert "Held -> Stopping" not in output  # served: nobody stopped it for the person
    actions = [(actor, action) for actor, action, _ in audit(run.db)]
    assert ("sup1", "batch Hold") in actions and ("sup1", "batch Restart") in actions
