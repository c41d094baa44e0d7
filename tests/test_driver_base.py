"""The driver base: profile checks at construction, limits before sending."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from drivers.base import Driver, SafeAction
from flexctl.clock import VirtualClock
from flexctl.errors import ConfigurationError
from flexctl.profile import load_profile
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
