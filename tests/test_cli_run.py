"""``flexctl run``: bad input exits 2 before anything starts; held, interrupted and failed runs."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flexctl.cli.main import build_parser, main
from flexctl.cli.progress import ObservedJournal, Output
from flexctl.cli.run import Plan, _header, _plan, run_batch
from flexctl.clock import VirtualClock
from flexctl.line import shipped_line
from flexctl.line_runtime import LineTwins, write_endpoints
from flexctl.record.journal import SYSTEM, EntryKind, JournalEntry
from flexctl.supervisor.batch_state import BatchState

CAR_T = Path(__file__).resolve().parent.parent / "procedures" / "car-t.yaml"
PLACE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

HARDWARE_LINE = """\
line: bench
description: three twins and a real freezer on a USB RS-485 adapter
devices:
  bioreactor: {driver: bioreactor, profile: bioreactor.opcua, transport: opcua, twin: true}
  processor:  {driver: cell_processor, profile: cell_processor.modbus, transport: modbus-tcp,
               twin: true}
  thaw:       {driver: thaw, profile: thaw.serial, transport: serial, twin: true}
  freezer:    {driver: freezer, profile: freezer.modbus, transport: modbus-rtu,
               endpoint: "modbus-rtu:///dev/ttyUSB7?unit=1&baudrate=19200"}
"""

SMALL = """\
procedure: small
version: "1.0"
line: sim
parameters:
  lot: {{type: text, pattern: "^[A-Z0-9-]{{4,20}}$"}}
unit_procedures:
  - name: thaw
    steps:
      - id: load_bag
        command: thaw.twin_load_bag
        args: {{volume_ml: 50, start_temperature_c: -150}}
      - {{id: start_thaw, command: thaw.start, args: {{program: standard}}}}
      - {{id: soak, wait: 2 h}}
{extra}
      - {{id: confirm, prompt: Confirm the bag is thawed, role: operator}}
"""

NEVER = """\
      - id: lot_is_never
        wait_until: "lot == 'NEVER'"
        timeout: 1 min
        poll: 10 s
        on_timeout: hold
"""


def _small(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(extra=extra.rstrip("\n")))
    return path


def _bench(tmp_path: Path) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(HARDWARE_LINE)
    return path


def test_an_invalid_procedure_exits_2_with_file_line_column_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "car-t.yaml"
    text = CAR_T.read_text()
    assert "command: thaw.start," in text
    path.write_text(text.replace("command: thaw.start,", "command: thaw.strat,"))
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no header, no line brought up
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == f"flexctl run {path}: 1 problem; nothing was started"
    place = PLACE.match(lines[0])
    assert place is not None, lines
    assert place["file"] == str(path)
    assert "strat" in place["message"]


def test_auto_sign_is_refused_on_a_line_with_a_hardware_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _bench(tmp_path)
    argv = ["run", str(CAR_T), "--line", str(line), "--param", "coi_id=PAT-000123"]
    assert main([*argv, "--auto-sign"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert (
        "--auto-sign: refused: line bench has hardware (freezer); the simulation user "
        "never signs on a real line"
    ) in err
    # Nor is a scaled or virtual clock possible with hardware on the line.
    assert main([*argv, "--auto-sign", "--speed", "100"]) == 2
    assert "--speed: line bench has hardware (freezer): it runs in wall time only" in (
        capsys.readouterr().err
    )


def test_a_parameter_without_default_and_without_auto_sign_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # On a line with hardware nobody makes a value up.
    assert main(["run", str(CAR_T), "--line", str(_bench(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    coi = next(line for line in err.splitlines() if "coi_id" in line)
    place = PLACE.match(coi)
    assert place is not None and place["file"] == str(CAR_T), coi
    assert "parameter coi_id has no default: set it for this batch (--param coi_id=...)" in coi
    # Nor on a line of twins when auto-sign is switched off.
    assert main(["run", str(CAR_T), "--no-auto-sign"]) == 2
    err = capsys.readouterr().err
    assert "parameter coi_id has no default" in err
    assert "asks a person" in err  # and nobody would answer its prompts


def test_external_twins_without_their_endpoints_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "twins.json"
    assert main(["run", str(_small(tmp_path)), "--endpoints", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{missing}: no twin endpoints file" in err


def test_a_held_batch_is_stopped_when_nobody_can_restart_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(_small(tmp_path, NEVER)), "--batch-id", "B-HELD"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "Running -> Holding" in out
    assert "Held -> Stopping" in out
    assert "headless run: held, and nobody is here to restart it" in out
    assert "== batch B-HELD: Stopped ==" in out
    assert "unit procedures 0 of 1 complete (not: thaw)" in out
    assert "flexctl run: batch B-HELD ended Stopped" in err


async def test_ctrl_c_aborts_the_batch_safely_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt_while_soaking(entry: JournalEntry) -> None:
        if entry.kind is EntryKind.STEP_START and entry.step == "soak":
            os.kill(os.getpid(), signal.SIGINT)

    args = build_parser().parse_args(["run", str(_small(tmp_path)), "--batch-id", "B-INT"])
    out = io.StringIO()
    outcome = await run_batch(args, out=out, observers=[interrupt_while_soaking])
    assert outcome.exit_code == 130
    assert outcome.interrupted_by == "SIGINT"
    assert outcome.state is BatchState.Aborted
    safe = [
        (e.device, e.payload["args"])
        for e in outcome.entries
        if e.kind is EntryKind.COMMAND and e.payload.get("method") == "safe_state"
    ]
    assert sorted(safe) == sorted(
        (name, {"action": "abort"}) for name in ("bioreactor", "processor", "thaw", "freezer")
    )
    assert "confirm" not in outcome.results  # nothing ran after the abort
    err = capsys.readouterr().err
    assert "SIGINT: aborting batch B-INT safely" in err
    assert "interrupted (SIGINT); batch B-INT is Aborted" in err
    assert "== batch B-INT: Aborted ==" in out.getvalue()


# -- auto-sign only on twins verifiably on this machine ----------------------------------


def _endpoints_file(tmp_path: Path, endpoints: dict[str, str], pid: int) -> Path:
    path = tmp_path / "twins.json"
    document = {"line": "sim", "seed": 0, "speed": 1.0, "pid": pid, "endpoints": endpoints}
    path.write_text(json.dumps(document))
    return path


LOOPBACK = {
    "bioreactor": "opc.tcp://127.0.0.1:4840/flexctl/bioreactor",
    "processor": "modbus-tcp://127.0.0.1:5020?unit=1",
}


@pytest.mark.parametrize(
    ("endpoints", "why"),
    [
        (
            dict(
                LOOPBACK,
                processor="modbus-tcp://10.1.2.3:502?unit=1",
                thaw="serial:///dev/ttyUSB0",
                freezer="modbus-rtu:///dev/ttyUSB7?unit=1",
            ),
            "twin processor: host 10.1.2.3 is not a loopback address",
        ),
        (
            dict(LOOPBACK, thaw="serial:///dev/ttyS0", freezer="modbus-rtu:///dev/pts/999999"),
            "twin thaw: /dev/ttyS0 is not a pseudo-terminal",
        ),
    ],
)
def test_auto_sign_is_refused_on_external_twins_off_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoints: dict[str, str], why: str
) -> None:
    path = _endpoints_file(tmp_path, endpoints, os.getpid())
    assert main(["run", str(_small(tmp_path)), "--endpoints", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: auto-sign refused: the external twins are not verifiably" in err
    assert why in err
    assert "nothing was started" in err


def test_auto_sign_is_refused_when_the_twins_server_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    ptys = {"thaw": "serial:///dev/pts/999998", "freezer": "modbus-rtu:///dev/pts/999999"}
    path = _endpoints_file(tmp_path, dict(LOOPBACK, **ptys), child.pid)
    assert main(["run", str(_small(tmp_path)), "--endpoints", str(path)]) == 2
    err = capsys.readouterr().err
    assert "auto-sign refused" in err
    assert f"(pid {child.pid}) is not running: stale file" in err


async def test_external_twins_are_read_once_and_their_origin_is_in_the_header(
    tmp_path: Path,
) -> None:
    line = shipped_line("sim")
    clock = VirtualClock()
    path = tmp_path / "twins.json"
    try:
        async with LineTwins(line, clock) as twins:
            write_endpoints(path, line, twins.endpoints, seed=0, speed=1.0)
            args = build_parser().parse_args(
                ["run", str(_small(tmp_path)), "--endpoints", str(path), "--batch-id", "B-X"]
            )
            plan = _plan(args)
            assert isinstance(plan, Plan), plan
            path.write_text("{}")  # a later change of the file does not reach the run
            assert plan.served is not None
            assert dict(plan.served.endpoints) == twins.endpoints
            assert set(plan.origins.values()) == {"external twin"}
            out = io.StringIO()
            _header(plan, Output(out), "tester")
            text = out.getvalue()
            assert "device origins: bioreactor external twin, processor external twin" in text
            assert f"external twins: {path} (flexctl sim serve, pid {os.getpid()})" in text
    finally:
        await clock.aclose()


async def test_the_first_entries_say_where_each_device_is(tmp_path: Path) -> None:
    args = build_parser().parse_args(["run", str(_small(tmp_path)), "--batch-id", "B-ORIGIN"])
    out = io.StringIO()
    outcome = await run_batch(args, out=out)
    assert outcome.exit_code == 0
    first = outcome.entries[:4]
    assert [(e.kind, e.actor, e.device, e.payload["origin"]) for e in first] == [
        (EntryKind.RECORD, SYSTEM, name, "in-process twin")
        for name in ("bioreactor", "processor", "thaw", "freezer")
    ]
    assert all(e.payload["record"] == "device origin" for e in first)
    text = out.getvalue()
    assert "device origins: bioreactor in-process twin, processor in-process twin" in text
    assert "(in-process twin)" in text  # the "line up:" line


# -- the headless Stop is the software's, not a person's ---------------------------------


async def test_the_headless_stop_is_attributed_to_the_system(tmp_path: Path) -> None:
    args = build_parser().parse_args(["run", str(_small(tmp_path, NEVER)), "--batch-id", "B-HELD2"])
    outcome = await run_batch(args, out=io.StringIO())
    assert outcome.state is BatchState.Stopped
    stops = [
        e
        for e in outcome.entries
        if e.kind is EntryKind.BATCH_STATE and e.payload.get("new") == "Stopping"
    ]
    assert len(stops) == 1
    assert stops[0].actor == SYSTEM
    assert "stopped automatically by flexctl run, not by a person" in str(stops[0].payload)
    assert "nobody is here to restart it" in str(stops[0].payload)


# -- a journal listener never fails the journal -------------------------------------------


def test_a_failing_listener_does_not_fail_the_append() -> None:
    journal = ObservedJournal()
    seen: list[JournalEntry] = []

    def broken_pipe(entry: JournalEntry) -> None:
        raise BrokenPipeError("stdout closed")

    journal.subscribe(broken_pipe)
    journal.subscribe(seen.append)
    entry = JournalEntry(0.0, datetime.now(UTC), EntryKind.RECORD, SYSTEM, "B-1")
    journal.append(entry)  # does not raise
    assert journal.entries() == [entry]
    assert seen == [entry]  # a later listener is still told
