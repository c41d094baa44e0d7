"""The flexctl command: exit codes, messages without tracebacks, the demo end to end."""

from __future__ import annotations

import pytest

from flexctl.cli.main import main


def test_no_command_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "required" in capsys.readouterr().err


def test_unknown_kind_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transports", "demo", "--kinds", "pigeon"]) == 2
    err = capsys.readouterr().err
    assert "unknown kind(s) pigeon" in err
    assert "Traceback" not in err


def test_demo_drives_every_transport(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transports", "demo", "--reads", "5"]) == 0
    out = capsys.readouterr().out
    for kind in ("opcua", "modbus-tcp", "modbus-rtu", "serial"):
        line = next(line for line in out.splitlines() if line.startswith(kind + " "))
        words = line.split()
        # start temperature 20 C, +10 virtual minutes at setpoint 37 C: within 0.1 C of 37
        assert abs(float(words[1]) - 20.0) < 0.2, line
        assert abs(float(words[3]) - 37.0) < 0.2, line
        assert words[5] == "20", line  # the 20-channel batch
        assert words[6] == "1", line  # the first start() returns cycle 1
