"""LineRuntime: the sim line comes up over four protocols, fails as one, closes clean."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from drivers.base import DeviceStatus
from drivers.bioreactor import Bioreactor
from drivers.cell_processor import CellProcessor
from drivers.freezer import Freezer
from drivers.thaw import ThawDevice
from flexctl.clock import VirtualClock
from flexctl.errors import ConfigurationError, NotConnectedError
from flexctl.line import Line, load_line, shipped_line
from flexctl.line_runtime import (
    LineRuntime,
    LineTwins,
    check_external_twins,
    device_seed,
    endpoint_problem,
    load_served_twins,
    read_endpoints,
    write_endpoints,
)
from flexctl.profile import Value
from flexctl.transports.base import TransportOptions

SIM = {
    "bioreactor": (Bioreactor, "opc.tcp", "opcua"),
    "processor": (CellProcessor, "modbus-tcp", "modbus-tcp"),
    "thaw": (ThawDevice, "serial", "serial"),
    "freezer": (Freezer, "modbus-rtu", "modbus-rtu"),
}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_sim_line_comes_up_and_each_driver_reads_status_over_its_protocol(
    vclock: VirtualClock,
) -> None:
    fds = _open_fds()
    async with LineRuntime(shipped_line("sim"), vclock, seed=1) as runtime:
        assert set(runtime.drivers) == set(SIM)
        assert set(runtime.servers) == set(runtime.models) == set(SIM)
        assert set(runtime.links) == {"thaw", "freezer"}
        for name, (cls, scheme, _) in SIM.items():
            driver = runtime.drivers[name]
            assert isinstance(driver, cls)
            assert urlsplit(driver.source).scheme == scheme
            assert driver.source == runtime.servers[name].endpoint
            assert await driver.status() is DeviceStatus.IDLE
    assert runtime.drivers == {}
    assert runtime.servers == {}
    assert not runtime.is_open
    await runtime.close()  # twice is harmless
    assert _open_fds() == fds


async def test_describe(vclock: VirtualClock) -> None:
    runtime = LineRuntime(shipped_line("sim"), vclock)
    before = runtime.describe()
    assert {d.state for d in before.values()} == {"disconnected"}
    assert {d.source for d in before.values()} == {None}
    async with runtime:
        described = runtime.describe()
        assert list(described) == list(SIM)
        for name, (cls, scheme, kind) in SIM.items():
            d = described[name]
            assert (d.name, d.driver, d.kind, d.origin, d.state) == (
                name,
                cls.kind,
                kind,
                "twin",
                "connected",
            )
            assert d.profile == runtime.line.devices[name].profile.name
            assert d.source is not None
            assert d.source.startswith(scheme + "://")
            assert d.as_dict()["origin"] == "twin"
        json.dumps({n: d.as_dict() for n, d in described.items()})  # fit for a record


def _line_with_hardware(tmp_path: Path, bio_port: int, plc_port: int) -> Line:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "line: mixed\n"
        "devices:\n"
        "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, twin: true}\n"
        "  processor: {driver: cell_processor, profile: cell_processor.modbus,"
        " transport: modbus-tcp, twin: true}\n"
        "  reactor: {driver: bioreactor, profile: bioreactor.opcua, transport: opcua,\n"
        f'            endpoint: "opc.tcp://127.0.0.1:{bio_port}/"}}\n'
        "  freezer: {driver: freezer, profile: freezer.modbus, transport: modbus-tcp,\n"
        f'            endpoint: "modbus-tcp://127.0.0.1:{plc_port}?unit=1"}}\n'
    )
    return load_line(path)


async def test_failed_connects_raise_one_error_naming_each_device_and_close_all(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    line = _line_with_hardware(tmp_path, _closed_port(), _closed_port())
    runtime = LineRuntime(line, vclock, options=TransportOptions(connect_timeout=5.0))
    fds = _open_fds()
    with pytest.raises(NotConnectedError) as caught:
        await runtime.open()
    error = caught.value
    assert set(error.causes) == {"reactor", "freezer"}
    assert all(isinstance(cause, NotConnectedError) for cause in error.causes.values())
    message = str(error)
    assert message.startswith("line mixed: not connected: 2 of 4 devices did not connect")
    assert "reactor" in message
    assert "freezer" in message
    # The twins that did start were stopped again, their ptys and sockets closed.
    assert runtime.drivers == {}
    assert runtime.servers == {}
    assert not runtime.is_open
    assert _open_fds() == fds


async def test_external_mode_connects_to_twins_served_elsewhere(vclock: VirtualClock) -> None:
    """Twins started on their own; the runtime only makes transports and drivers to them."""
    async with LineTwins(shipped_line("sim"), vclock, seed=2) as twins:
        runtime = LineRuntime(
            shipped_line("sim"), vclock, twins="external", endpoints=twins.endpoints
        )
        async with runtime:
            assert runtime.servers == {}
            assert runtime.models == {}
            assert {d.origin for d in runtime.describe().values()} == {"external twin"}
            for name, driver in runtime.drivers.items():
                assert driver.source == twins.endpoints[name]
                assert await driver.status() is DeviceStatus.IDLE


async def _readings(seed: int) -> dict[str, dict[str, Value]]:
    clock = VirtualClock()
    try:
        async with LineRuntime(shipped_line("sim"), clock, seed=seed) as runtime:
            await clock.sleep(600.0)
            readings = {}
            for name, driver in runtime.drivers.items():
                readings[name] = await driver.read(list(driver.transport.profile.signals))
            return readings
    finally:
        await clock.aclose()


async def test_the_same_seed_gives_the_same_twin_readings() -> None:
    first = await _readings(11)
    assert first == await _readings(11)
    assert first != await _readings(12)


def test_device_seeds_are_stable_and_distinct() -> None:
    assert device_seed(3, "thaw") == device_seed(3, "thaw")
    seeds = {device_seed(s, name) for s in (0, 1) for name in SIM}
    assert len(seeds) == 2 * len(SIM)


def test_endpoints_file_round_trip_and_mistakes(tmp_path: Path) -> None:
    line = shipped_line("sim")
    endpoints = {name: f"{scheme}://x/{name}" for name, (_, scheme, _) in SIM.items()}
    path = tmp_path / "twins.json"
    write_endpoints(path, line, endpoints, seed=4, speed=60.0)
    assert read_endpoints(path, line) == endpoints
    document = json.loads(path.read_text())
    assert (document["line"], document["seed"], document["speed"]) == ("sim", 4, 60.0)

    with pytest.raises(ConfigurationError, match="no twin endpoints file") as caught:
        read_endpoints(tmp_path / "none.json", line)
    assert "flexctl sim serve --line sim" in str(caught.value)

    path.write_text('{"line": "sim",\n "endpoints": {,}}')
    with pytest.raises(ConfigurationError) as caught:
        read_endpoints(path, line)
    assert str(caught.value).startswith(f"{path}:2:")

    path.write_text(json.dumps({"line": "other", "endpoints": endpoints}))
    with pytest.raises(ConfigurationError, match="serve line 'other', not 'sim'"):
        read_endpoints(path, line)

    del endpoints["freezer"]
    path.write_text(json.dumps({"line": "sim", "endpoints": endpoints}))
    with pytest.raises(ConfigurationError, match=r"no endpoint for twin\(s\) freezer"):
        read_endpoints(path, line)


async def test_external_mode_without_endpoints_file_is_a_configuration_error(
    vclock: VirtualClock, tmp_path: Path
) -> None:
    runtime = LineRuntime(
        shipped_line("sim"), vclock, twins="external", endpoints=tmp_path / "absent.json"
    )
    with pytest.raises(ConfigurationError, match=r"absent\.json"):
        await runtime.open()
    assert not runtime.is_open


# -- external twins must be on this machine (else a "twin" may be real equipment) --------


@pytest.mark.parametrize(
    "endpoint",
    [
        "opc.tcp://127.0.0.1:4840/flexctl/bioreactor",
        "opc.tcp://127.8.9.10:4840/x",
        "opc.tcp://[::1]:4840/x",
        "modbus-tcp://localhost:502?unit=1",
        "modbus-tcp://LOCALHOST:502?unit=1",
    ],
)
def test_loopback_tcp_endpoints_are_accepted(endpoint: str) -> None:
    assert endpoint_problem(endpoint) is None


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("opc.tcp://10.0.0.5:4840/x", "not a loopback address"),
        ("modbus-tcp://192.168.1.20:502?unit=1", "not a loopback address"),
        ("modbus-tcp://0.0.0.0:502?unit=1", "not a loopback address"),
        ("opc.tcp://[::ffff:10.0.0.5]:4840/x", "not a loopback address"),
        ("opc.tcp://plc.factory.example:4840/x", "not a loopback address"),
        ("opc.tcp://127.0.0.1.evil.example:4840/x", "not a loopback address"),
        ("modbus-rtu:///dev/ttyUSB7?unit=1&baudrate=19200", "not a pseudo-terminal"),
        ("serial:///dev/ttyS0", "not a pseudo-terminal"),
        ("serial:///dev/pts/999999", "does not exist"),
        ("serial://host/dev/pts/1", "not a pseudo-terminal"),
        ("http://127.0.0.1/", "not one a twin serves"),
    ],
)
def test_anything_else_is_refused(endpoint: str, why: str) -> None:
    problem = endpoint_problem(endpoint)
    assert problem is not None
    assert why in problem


def test_an_existing_pty_is_accepted() -> None:
    master, slave = os.openpty()
    try:
        assert endpoint_problem(f"serial://{os.ttyname(slave)}") is None
        assert endpoint_problem(f"modbus-rtu://{os.ttyname(slave)}?unit=1") is None
    finally:
        os.close(master)
        os.close(slave)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_an_endpoints_file_is_read_once_and_its_writer_must_be_alive(
    tmp_path: Path, vclock: VirtualClock
) -> None:
    line = shipped_line("sim")
    path = tmp_path / "twins.json"
    async with LineTwins(line, vclock, seed=2) as twins:
        write_endpoints(path, line, twins.endpoints, seed=2, speed=1.0)  # pid: this process
        served = load_served_twins(path, line)
        assert check_external_twins(served) == []
        # What was read and checked is what the runtime connects to: the file is not read again.
        path.write_text(json.dumps({"line": "sim", "endpoints": {}}))
        async with LineRuntime(line, vclock, twins="external", endpoints=served) as runtime:
            for name, driver in runtime.drivers.items():
                assert driver.source == twins.endpoints[name]

        document = {"line": "sim", "endpoints": twins.endpoints, "pid": _dead_pid()}
        path.write_text(json.dumps(document))
        stale = check_external_twins(load_served_twins(path, line))
        assert len(stale) == 1
        assert "is not running: stale file" in stale[0]
        with pytest.raises(ConfigurationError, match=r"external twins refused.*stale file"):
            async with LineRuntime(line, vclock, twins="external", endpoints=path):
                pass

        del document["pid"]
        path.write_text(json.dumps(document))
        assert "no process id" in check_external_twins(load_served_twins(path, line))[0]


async def test_external_mode_refuses_an_endpoint_off_this_machine(vclock: VirtualClock) -> None:
    async with LineTwins(shipped_line("sim"), vclock, seed=2) as twins:
        endpoints = dict(twins.endpoints, processor="modbus-tcp://10.1.2.3:502?unit=1")
        runtime = LineRuntime(shipped_line("sim"), vclock, twins="external", endpoints=endpoints)
        with pytest.raises(ConfigurationError, match=r"twin processor: host 10\.1\.2\.3"):
            await runtime.open()
        assert not runtime.is_open
        assert runtime.drivers == {}
