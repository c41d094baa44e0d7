"""``flexctl sim serve``: twins in another process, driven from this one through their endpoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.base import DeviceStatus
from flexctl.cli.main import main
from flexctl.clock import VirtualClock
from flexctl.line import shipped_line
from flexctl.line_runtime import LineRuntime, check_external_twins, load_served_twins

ROOT = Path(__file__).resolve().parent.parent
#: A safety bound on the wall time a child may take to start or stop; never asserted on.
BOUND_S = 60.0


@dataclass
class Served:
    process: asyncio.subprocess.Process
    banner: list[str]
    endpoints_file: Path
    stderr_file: Path


@asynccontextmanager
async def sim_serve(tmp_path: Path, *args: str) -> AsyncIterator[Served]:
    """``flexctl sim serve`` in a child process, returned once it prints its ``ready`` line."""
    endpoints = tmp_path / "twins.json"
    stderr_file = tmp_path / "serve.stderr"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    with stderr_file.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flexctl.cli.main",
            "sim",
            "serve",
            "--line",
            "sim",
            "--endpoints",
            str(endpoints),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=tmp_path,
            env=env,
        )
    assert process.stdout is not None
    try:
        banner: list[str] = []
        async with asyncio.timeout(BOUND_S):
            while not (banner and banner[-1].startswith("ready")):
                raw = await process.stdout.readline()
                if not raw:
                    pytest.fail(f"sim serve ended before ready: {stderr_file.read_text()}")
                banner.append(raw.decode().rstrip("\n"))
        yield Served(process, banner, endpoints, stderr_file)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _stop(served: Served, number: signal.Signals) -> tuple[int, str]:
    served.process.send_signal(number)
    async with asyncio.timeout(BOUND_S):
        out, _ = await served.process.communicate()
    assert served.process.returncode is not None
    return served.process.returncode, out.decode()


async def test_serve_then_drive_the_twins_from_this_process(
    tmp_path: Path, vclock: VirtualClock
) -> None:
    async with sim_serve(tmp_path, "--seed", "5", "--speed", "60") as served:
        banner = served.banner
        assert banner[0] == "flexctl sim serve: line sim, seed 5, twin time = wall time x 60"
        assert banner[-1] == "ready: serving 4 twins until Ctrl-C or SIGTERM"
        assert f"endpoints: {served.endpoints_file}" in banner
        printed = dict(line.split() for line in banner if line.startswith("  "))
        document = json.loads(served.endpoints_file.read_text())
        assert document["endpoints"] == printed
        assert (document["line"], document["seed"], document["speed"]) == ("sim", 5, 60.0)
        assert document["pid"] == served.process.pid

        line = shipped_line("sim")
        runtime = LineRuntime(line, vclock, twins="external", endpoints=served.endpoints_file)
        async with runtime:
            assert runtime.servers == {}
            for name, driver in runtime.drivers.items():
                assert driver.source == printed[name]
                assert await driver.status() is DeviceStatus.IDLE
            assert {d.origin for d in runtime.describe().values()} == {"external twin"}

        code, out = await _stop(served, signal.SIGTERM)
        assert code == 0, served.stderr_file.read_text()
        assert out.strip().endswith("flexctl sim serve: stopped")
        assert "Traceback" not in served.stderr_file.read_text()
        assert not served.endpoints_file.exists()


async def test_ctrl_c_shuts_down_cleanly(tmp_path: Path) -> None:
    async with sim_serve(tmp_path) as served:
        code, out = await _stop(served, signal.SIGINT)
        assert code == 0, served.stderr_file.read_text()
        assert "stopped" in out
        assert "Traceback" not in served.stderr_file.read_text()


def test_a_bad_line_file_is_bad_input_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "line: bad\n"
        "devices:\n"
        "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, twin: true}\n"
        "  oven: {driver: oven, profile: thaw.serial, transport: serial, twin: true}\n"
    )
    assert main(["sim", "serve", "--line", str(bad), "--endpoints", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4:" in err
    assert "unknown driver 'oven'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_a_line_without_twins_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hardware = tmp_path / "hw.yaml"
    hardware.write_text(
        "line: hw\n"
        "devices:\n"
        "  thaw: {driver: thaw, profile: thaw.serial, transport: serial,"
        ' endpoint: "serial:///dev/ttyUSB0"}\n'
    )
    assert main(["sim", "serve", "--line", str(hardware)]) == 2
    assert "has no 'twin: true' device" in capsys.readouterr().err


def test_speed_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sim", "serve", "--line", "sim", "--speed", "0"])
    assert caught.value.code == 2
    assert "expected a factor > 0" in capsys.readouterr().err


async def test_a_killed_servers_file_is_refused_as_stale(tmp_path: Path) -> None:
    """SIGKILL leaves the endpoints file behind; its pid no longer runs, so it is not trusted."""
    line = shipped_line("sim")
    async with sim_serve(tmp_path) as served:
        assert check_external_twins(load_served_twins(served.endpoints_file, line)) == []
        served.process.kill()
        await served.process.wait()
    assert served.endpoints_file.exists()
    problems = check_external_twins(load_served_twins(served.endpoints_file, line))
    assert any("is not running: stale file" in p for p in problems)
