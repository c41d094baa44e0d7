"""The driver base: profile checks at construction, limits before sending."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from drivers.base import DeviceStatus, Driver, ProgramState, SafeAction
from drivers.registry import DRIVER_NAMES, driver_class
from flexctl.clock import VirtualClock
from flexctl.errors import ConfigurationError, ProtocolError
from flexctl.profile import Value, load_profile
from flexctl.resources import shipped_profile
from flexctl.transports.registry import create_transport

PROFILE = """\
device: probe
transport: serial
signals:
  status: {{type: uint16, enum: [{members}], query: "S?", reply: "S {{value:d}}"}}
  alarm: {{type: string, query: "A?", reply: "A {{value:s}}"}}
"""


class Probe(Driver):
    kind: ClassVar[str] = "probe"
    required_signals: ClassVar[tuple[str, ...]] = ("status", "alarm", "program_state")

    async def safe_state(self, action: SafeAction) -> None:
        del action


class StatusOnlyProbe(Probe):
    required_signals: ClassVar[tuple[str, ...]] = ("status", "alarm")


def _driver(tmp_path: Path, members: str, clock: VirtualClock, cls: type[Probe] = Probe) -> Probe:
    path = tmp_path / "probe.serial.yaml"
    path.write_text(PROFILE.format(members=members))
    transport = create_transport(load_profile(path), "serial:///dev/null", clock=clock)
    return cls("probe", transport, clock)


def test_missing_signals_are_named(tmp_path: Path, vclock: VirtualClock) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot drive a probe: it lacks program_state"):
        _driver(tmp_path, "idle, busy, warn, error", vclock)


def test_status_enum_must_use_the_driver_names(tmp_path: Path, vclock: VirtualClock) -> None:
    _driver(tmp_path, "idle, busy, warn, error", vclock, StatusOnlyProbe)
    with pytest.raises(ConfigurationError) as caught:
        _driver(tmp_path, "IDLE, BUSY, WARN, ERROR", vclock, StatusOnlyProbe)
    assert caught.value.line == 4
    assert "BUSY" in str(caught.value)


NO_ENUM = """\
device: probe
transport: serial
signals:
  status: {type: uint16, query: "S?", reply: "S {value:d}"}
  alarm: {type: string, query: "A?", reply: "A {value:s}"}
  program_state:
    type: uint16
    query: "P?"
    reply: "P {value:d}"
"""


class ProgramProbe(Probe):
    required_signals: ClassVar[tuple[str, ...]] = ("alarm",)


def _load(tmp_path: Path, text: str, clock: VirtualClock, cls: type[Probe]) -> Probe:
    path = tmp_path / "probe.serial.yaml"
    path.write_text(text)
    transport = create_transport(load_profile(path), "serial:///dev/null", clock=clock)
    return cls("probe", transport, clock)


def test_status_and_program_state_need_an_enum(tmp_path: Path, vclock: VirtualClock) -> None:
    """Review: a profile without the enum made status() and program() raise a raw ValueError."""
    with pytest.raises(ConfigurationError) as caught:
        _load(tmp_path, NO_ENUM, vclock, ProgramProbe)
    assert caught.value.line == 4  # the status signal
    assert str(caught.value).startswith(f"{tmp_path / 'probe.serial.yaml'}:4")
    assert "signal status: needs an enum" in str(caught.value)
    with_status = NO_ENUM.replace(
        '{type: uint16, query: "S?"', '{type: uint16, enum: [idle, busy, warn, error], query: "S?"'
    )
    with pytest.raises(ConfigurationError) as caught:
        _load(tmp_path, with_status, vclock, ProgramProbe)
    assert caught.value.line == 7  # the program_state signal's body
    assert "signal program_state: needs an enum" in str(caught.value)
    fixed = with_status.replace(
        "    type: uint16\n", "    type: uint16\n    enum: [stopped, running, complete, aborted]\n"
    )
    _load(tmp_path, fixed, vclock, ProgramProbe)  # accepted


async def test_an_unexpected_value_at_run_time_is_a_protocol_error(
    tmp_path: Path, vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _driver(tmp_path, "idle, busy, warn, error", vclock, StatusOnlyProbe)
    wire: dict[str, Value] = {
        "status": "sleeping",
        "alarm": "",
        "program_state": "paused",
        "step_name": "",
        "step_number": 0,
        "runtime_s": 0.0,
    }

    async def read(names: Sequence[str]) -> dict[str, Value]:
        return {n: wire[n] for n in names}

    async def get(name: str) -> Value:
        return wire[name]

    monkeypatch.setattr(driver, "read", read)
    monkeypatch.setattr(driver, "get", get)
    with pytest.raises(ProtocolError, match="status: the device reports 'sleeping'"):
        await driver.status()
    with pytest.raises(ProtocolError, match="status"):
        await driver.reading("alarm")
    with pytest.raises(ProtocolError, match="program_state: the device reports 'paused'"):
        await driver.program()
    wire["status"], wire["program_state"] = "busy", "running"
    assert await driver.status() is DeviceStatus.BUSY
    assert (await driver.program()).state is ProgramState.RUNNING


@pytest.mark.parametrize("name", DRIVER_NAMES)
def test_argument_limits_name_real_arguments_and_limited_signals(name: str) -> None:
    cls = driver_class(name)
    for method, arguments in cls.argument_limits.items():
        parameters = inspect.signature(getattr(cls, method)).parameters
        for argument, signal in arguments.items():
            assert argument in parameters, f"{name}.{method} has no argument {argument}"
            for family in ("opcua", "modbus", "serial"):
                spec = shipped_profile(f"{name}.{family}").signal(signal)
                assert spec.limits is not None, f"{name}.{family}: {signal} has no limits"
