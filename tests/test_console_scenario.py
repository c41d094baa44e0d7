"""The issue's console scenario, end to end, against a real ``flexctl serve``.

A technician (``flexctl console`` fed a script on stdin) starts the batch and
signs the bag barcode prompt of the thaw; while the culture unit procedure
holds the bioreactor at 37 degC, a fault is injected from outside the
supervisor: the test, as a local HMI would, writes the bioreactor twin's
temperature setpoint over the twin's own OPC UA endpoint (39 degC, the top of
the device's envelope). The procedure's interlocking ISA-18.2 alarm
(``TAH-BR-99``, high at 38 degC) activates and holds the batch; the technician
sees it, acknowledges it and, once the setpoint is back at 37 degC and the
tray has cooled, restarts the batch, which completes. Everything is then read
back, read-only, from the record store.

``flexctl serve`` starts the line's twins in its own process (it takes no
``--twins external``), each behind its real protocol on loopback; the
bioreactor twin's endpoint is the one serve announces (``line up: ...``).

The console is fed in two parts: the second (``restart``) only once the tray
temperature, read from the twin, is below the alarm's clear point. The
restart check re-reads the temperature (the monitor does not run while
held), so a restart any earlier would be refused by holding again; gating
it on the temperature keeps the test independent of the machine's speed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from asyncua import ua
from asyncua.client.client import Client

from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.users import BOOTSTRAP, add_user
from tests.record_fakes import CHEAP

T = TypeVar("T")

TIMEOUT = 60.0  # wall seconds: a bound on every wait, never a pace
POLL = 0.05  # wall seconds between two looks at a file, the journal or the twin
SPEED = 600  # process seconds per wall second: the 2 h warm step in 12 s
BATCH = "B-1"
ALARM = "TAH-BR-99"
LIMIT = 38.0
DEADBAND = 0.5
NORMAL_SP = 37.0
FAULT_SP = 39.0  # the top of the twin's setpoint envelope (30..39 degC)
CLEARED = LIMIT - DEADBAND - 0.2  # below the clear point, with room for the sensor noise
SETPOINT = "ns=2;s=Bioreactor.Temperature.SP"
TEMPERATURE = "ns=2;s=Bioreactor.Temperature.PV"
TECH = "tech1"
TECH_PASSWORD = "tech-password-1"
BAG = "BAG-0042"

pytestmark = pytest.mark.timeout(180)

PROCEDURE = f"""\
procedure: console-scenario
version: "1"
line: sim
alarms:
  - {{name: {ALARM}, signal: bioreactor.temperature, kind: high, limit: {LIMIT},
     deadband: {DEADBAND}, on_delay: 1 min, priority: high, interlock: true,
     message: culture temperature high}}
unit_procedures:
  - name: thaw
    steps:
      - id: bag_id
        prompt: Scan the barcode of the bag taken from LN2 storage (chain of identity)
        entry: {{type: text, pattern: "^[A-Z0-9-]{{6,32}}$"}}
        role: operator
      - id: load_bag
        command: thaw.twin_load_bag
        args: {{volume_ml: 100, start_temperature_c: -150}}
      - {{id: start_thaw, command: thaw.start, args: {{program: standard}}}}
      - {{id: thawed, wait_until: "thaw.thaw_complete", timeout: 30 min, poll: 15 s}}
      - {{id: unload_bag, command: thaw.twin_unload_bag}}
  - name: culture
    steps:
      - {{id: culture_sp, set: bioreactor.temperature_sp, value: {NORMAL_SP}}}
      - {{id: warm, wait: 2 h}}
      - {{id: warm_temperature, record: bioreactor.temperature, unit: degC}}
"""

#: The technician's first part: start, sign the thaw prompt, see the alarm, acknowledge it.
SCRIPT_UNTIL_ACK = f"""\
status
start
wait prompt bag_id {TIMEOUT:g}
answer bag_id {BAG}
{TECH_PASSWORD}
wait Held {TIMEOUT:g}
status
ack {ALARM} local setpoint change to {FAULT_SP:g} degC, set back to {NORMAL_SP:g} degC
"""
#: The second part, once the tray has cooled: look again, restart, see the batch complete.
SCRIPT_RESTART = f"""\
watch 1
restart tray back below the alarm limit
wait Complete {TIMEOUT:g}
quit
"""


def flexctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "flexctl.cli.main", *args]


def add_users(db: Path) -> None:
    """QA (who enables people) and the technician: operator (signs) and supervisor (restarts)."""
    store = SqliteStore(db)
    try:
        add_user(store, "qa1", "Person qa1", ("qa",), "qa-password-1", actor=BOOTSTRAP,
                 reason="test", cost=CHEAP)  # fmt: skip
        add_user(store, TECH, "Tess Technician", ("operator", "supervisor"), TECH_PASSWORD,
                 actor="qa1", reason="test", cost=CHEAP)  # fmt: skip
    finally:
        store.close()


def journal(db: Path) -> list[JournalEntry]:
    """The batch's journal so far, read from the store the supervisor is writing."""
    with SqliteStore(db, create=False) as store:
        return store.journal(BATCH).entries()


def held(entries: list[JournalEntry]) -> bool:
    return any(e.kind is EntryKind.BATCH_STATE and e.payload.get("new") == "Held" for e in entries)


def alarm_events(entries: list[JournalEntry]) -> list[tuple[str, str]]:
    """(event, actor) of every transition of ALARM."""
    return [
        (str(e.payload["event"]), e.actor)
        for e in entries
        if e.kind is EntryKind.ALARM and e.payload.get("alarm") == ALARM
    ]


async def until(
    what: str, check: Callable[[], T | None], running: list[subprocess.Popen[bytes]]
) -> T:
    """``check()`` once it is truthy, within TIMEOUT; fails early if a process has ended."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = check()
        if value:
            return value
        for process in running:
            if process.poll() is not None:
                pytest.fail(f"{process.args!r} ended ({process.returncode}) waiting for {what}")
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT:g} s"
        await asyncio.sleep(POLL)


def line_in(log: Path, prefix: str) -> str | None:
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(prefix):
            return line
    return None


def start(
    stack: ExitStack, args: list[str], log: Path, *, stdin: bool = False, home: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output in ``log``; killed (if need be) and reaped by ``stack``."""
    out = stack.enter_context(log.open("wb"))
    env = {**os.environ, "HOME": str(home)} if home is not None else None
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
        env=env,
    )

    def end() -> None:
        if process.poll() is None:
            process.kill()
        process.wait(TIMEOUT)
        if process.stdin is not None:
            process.stdin.close()

    stack.callback(end)
    return process


def feed(console: subprocess.Popen[bytes], text: str, *, last: bool = False) -> None:
    assert console.stdin is not None
    console.stdin.write(text.encode())
    console.stdin.flush()
    if last:
        console.stdin.close()


@dataclass
class Served:
    """The running ``flexctl serve``: its OPC UA endpoint, the bioreactor twin's, its store."""

    process: subprocess.Popen[bytes]
    log: Path
    endpoint: str
    twin: str
    db: Path


@pytest.fixture
def processes() -> Iterator[ExitStack]:
    """Every subprocess started goes on this stack: killed and reaped at the end."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def procedure(tmp_path: Path) -> Path:
    """PROCEDURE in a file, checked by ``flexctl validate`` against the sim line."""
    path = tmp_path / "scenario.yaml"
    path.write_text(PROCEDURE, encoding="utf-8")
    checked = subprocess.run(
        flexctl("validate", str(path)), check=False, capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


@pytest.fixture
def served(tmp_path: Path, procedure: Path, processes: ExitStack) -> Served:
    """``flexctl serve`` of the procedure, up and listening (its twins in-process)."""
    db = tmp_path / "flexctl.db"
    add_users(db)
    log = tmp_path / "serve.log"
    process = start(
        processes,
        flexctl(
            "serve", str(procedure), "--db", str(db), "--batch-id", BATCH, "--speed", str(SPEED),
            "--endpoint", "opc.tcp://127.0.0.1:0/flexctl", "--linger", "2",
            "--pki", str(tmp_path / "server-pki"),
        ),
        log,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while (serving := line_in(log, "serving: ")) is None:
        assert process.poll() is None, f"flexctl serve ended early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"flexctl serve not up:\n{log.read_text()}"
        time.sleep(POLL)
    # line up: bioreactor opc.tcp://127.0.0.1:PORT/flexctl/bioreactor (in-process twin), ...
    line_up = line_in(log, "line up: ")
    assert line_up is not None, log.read_text()
    (twin,) = [w for w in line_up.split() if w.startswith("opc.tcp://") and "bioreactor" in w]
    return Served(process, log, serving.split()[1], twin, db)


async def fault_held_acknowledged_and_put_right(
    served: Served, console: subprocess.Popen[bytes]
) -> None:
    """As a local HMI: the setpoint to FAULT_SP once the culture warms, back once held.

    Returns once the technician has acknowledged the alarm and the tray,
    read from the twin itself, is below the alarm's clear point (the console
    shows the values the supervisor last read, and it reads none while held).
    """
    both = [served.process, console]
    async with Client(served.twin, timeout=10) as hmi:
        setpoint = hmi.get_node(SETPOINT)

        async def write_setpoint(value: float) -> None:
            variant = ua.Variant(value, ua.VariantType.Double)
            await setpoint.write_value(ua.DataValue(Value=variant, StatusCode=None))

        def warming() -> bool:
            entries = journal(served.db)
            return any(e.kind is EntryKind.STEP_START and e.step == "warm" for e in entries)

        await until("the warm step", warming, both)
        await write_setpoint(FAULT_SP)  # the fault: a setpoint changed at the device
        await until("the batch held", lambda: held(journal(served.db)), both)
        await write_setpoint(NORMAL_SP)  # put right at the device
        await until(
            f"the acknowledgement of {ALARM}",
            lambda: ("Acknowledge", TECH) in alarm_events(journal(served.db)),
            both,
        )
        temperature = hmi.get_node(TEMPERATURE)
        cooling: list[float] = []
        deadline = time.monotonic() + TIMEOUT
        while not cooling or cooling[-1] >= CLEARED:
            assert time.monotonic() < deadline, f"the tray did not cool: {cooling[-5:]}"
            assert console.poll() is None, "the console ended while the tray cooled"
            cooling.append(float(await temperature.read_value()))
            await asyncio.sleep(POLL)


async def test_technician_acknowledges_an_injected_alarm_and_restarts_to_complete(
    served: Served, tmp_path: Path, processes: ExitStack
) -> None:
    log = tmp_path / "console.log"
    console = start(
        processes,
        flexctl(
            "console", "--endpoint", served.endpoint, "--user", TECH, "--password-stdin",
            "--pki", str(tmp_path / "console-pki"),
        ),
        log,
        stdin=True,
        home=tmp_path,
    )  # fmt: skip
    feed(console, f"{TECH_PASSWORD}\n{SCRIPT_UNTIL_ACK}")
    await fault_held_acknowledged_and_put_right(served, console)
    feed(console, SCRIPT_RESTART, last=True)
    await until("the console to end", lambda: console.poll() is not None, [])
    await until("serve to end", lambda: served.process.poll() is not None, [])
    transcript = log.read_text()
    assert console.returncode == 0, transcript
    assert served.process.returncode == 0, served.log.read_text()

    # What the technician saw.
    assert "prompt bag_id is waiting" in transcript
    assert f"signed by Tess Technician ({TECH})" in transcript
    assert "batch is Held" in transcript
    assert f"  {ALARM}" in transcript  # the status listed the active alarm
    assert "Restart: Held -> Restarting" in transcript
    assert "batch is Complete" in transcript
    assert TECH_PASSWORD not in transcript
    assert f"batch {BATCH} ended Complete" in served.log.read_text()
    check_record(served.db)


def check_record(db: Path) -> None:
    """The journal, read-only: the alarm's life, who held and restarted, the signature."""
    with SqliteStore(db, create=False) as store:
        assert store.verify().ok, store.verify()
        entries = store.journal(BATCH).entries()
    events = alarm_events(entries)
    assert events[0] == ("Activate", "system"), events
    (activated,) = [
        e for e in entries if e.kind is EntryKind.ALARM and e.payload.get("event") == "Activate"
    ]
    assert float(activated.payload["value"]) > LIMIT, activated  # type: ignore[arg-type]
    assert ("Acknowledge", TECH) in events and ("Clear", "system") in events, events
    names = [event for event, _ in events]
    assert names.index("Activate") < names.index("Acknowledge") < names.index("Clear")
    states = [
        (e.actor, e.payload.get("command"), e.payload.get("new"), str(e.payload.get("reason")))
        for e in entries
        if e.kind is EntryKind.BATCH_STATE and "new" in e.payload
    ]
    holds = [s for s in states if s[1] == "Hold"]
    assert len(holds) == 1 and holds[0][0] == "system" and ALARM in holds[0][3], states
    assert [s[:3] for s in states if s[1] == "Restart"] == [(TECH, "Restart", "Restarting")]
    assert states[-1][2] == "Complete", states
    (signature,) = [e for e in entries if e.kind is EntryKind.SIGNATURE]
    assert (signature.actor, signature.step, signature.payload["value"]) == (TECH, "bag_id", BAG)
