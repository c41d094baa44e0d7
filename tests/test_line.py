"""Line files: the shipped sim line, and every mistake reported at its file:line:column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flexctl.errors import ConfigurationError, Where
from flexctl.line import find_line, load_line, shipped_line
from flexctl.resources import shipped_file

SIM_DEVICES = {
    "bioreactor": ("bioreactor", "bioreactor.opcua", "opcua"),
    "processor": ("cell_processor", "cell_processor.modbus", "modbus-tcp"),
    "thaw": ("thaw", "thaw.serial", "serial"),
    "freezer": ("freezer", "freezer.modbus", "modbus-rtu"),
}


def test_the_shipped_sim_line_has_four_twins_each_on_its_own_transport() -> None:
    line = shipped_line("sim")
    assert line.name == "sim"
    assert "four twins" in line.description
    found = {n: (d.driver, d.profile.name, d.kind) for n, d in line.devices.items()}
    assert found == SIM_DEVICES
    for device in line.devices.values():
        assert device.twin is True
        assert device.endpoint is None
        assert device.profile.device == device.driver
        assert device.driver_class().kind == device.driver
        assert device.where.file.endswith("sim.yaml")
    assert len({d.kind for d in line.devices.values()}) == 4


def _write(tmp_path: Path, text: str, name: str = "line.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _marked(text: str) -> tuple[str, int, int]:
    """Text without its ``@@`` marker, and the 1-based line and column the marker was at."""
    index = text.index("@@")
    before = text[:index]
    return text.replace("@@", "", 1), before.count("\n") + 1, index - before.rfind("\n")


HEAD = "line: test\ndevices:\n"
THAW = "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, twin: true}\n"

BROKEN = [
    ("@@lines: x\n" + HEAD + THAW, "unknown key 'lines'"),
    ("@@devices:\n" + THAW, "missing key 'line'"),
    ("line: @@[a]\ndevices:\n" + THAW, "expected a name"),
    ("line: t\ndevices: @@[thaw]\n", "devices: expected a mapping"),
    ("line: t\ndevices: @@{}\n", "no devices"),
    (
        HEAD + "  thaw: {@@drivr: thaw, profile: thaw.serial, transport: serial, twin: true}\n",
        "unknown key 'drivr'",
    ),
    (
        HEAD + "  thaw: @@{profile: thaw.serial, transport: serial, twin: true}\n",
        "missing key 'driver'",
    ),
    (
        HEAD + "  thaw: {driver: @@pump, profile: thaw.serial, transport: serial, twin: true}\n",
        "unknown driver 'pump' (expected one of bioreactor, cell_processor, thaw, freezer)",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: @@thaw.usb, transport: serial, twin: true}\n",
        "no shipped profile named 'thaw.usb'",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: @@mine/thaw.yaml, transport: serial, twin: true}\n",
        "no profile file 'mine/thaw.yaml'",
    ),
    (
        HEAD
        + "  thaw: {driver: thaw, profile: @@freezer.modbus, transport: modbus-tcp, twin: true}\n",
        "profile freezer.modbus is for a 'freezer' device, not for driver 'thaw'",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: thaw.serial, transport: @@rs232, twin: true}\n",
        "unknown transport 'rs232' (expected one of opcua, modbus-tcp, modbus-rtu, serial)",
    ),
    (
        HEAD
        + "  thaw: {driver: thaw, profile: thaw.serial, transport: @@modbus-tcp, twin: true}\n",
        "transport modbus-tcp does not fit profile thaw.serial, a serial profile (expected serial)",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: thaw.modbus, transport: @@opcua, twin: true}\n",
        "(expected modbus-tcp, modbus-rtu)",
    ),
    (
        HEAD
        + "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, twin: @@yes please}\n",
        "twin must be true or false",
    ),
    (
        HEAD + "  thaw: @@{driver: thaw, profile: thaw.serial, transport: serial}\n",
        "expected 'twin: true' (simulated) or an endpoint (hardware)",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, twin: true,"
        " @@endpoint: 'serial:///dev/ttyUSB0'}\n",
        "either 'twin: true' or an endpoint, not both",
    ),
    (
        HEAD + "  thaw: {driver: thaw, profile: thaw.serial, transport: serial, endpoint: @@42}\n",
        "endpoint must be text",
    ),
    (
        "line: t\ndevices:\n  @@2thaw: {driver: thaw, profile: thaw.serial, transport: serial, "
        "twin: true}\n",
        "device name '2thaw'",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), BROKEN)
def test_a_broken_line_is_reported_where_it_is(tmp_path: Path, text: str, fragment: str) -> None:
    clean, line, column = _marked(text)
    path = _write(tmp_path, clean)
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert fragment in caught.value.message
    assert caught.value.where == Where(str(path), line, column), caught.value


def test_an_endpoint_of_the_wrong_scheme_is_refused_without_repeating_it(tmp_path: Path) -> None:
    text = (
        HEAD + "  bio: {driver: bioreactor, profile: bioreactor.opcua, transport: opcua,\n"
        "        endpoint: @@'modbus-tcp://operator:s3cret@10.1.2.3:502'}\n"
    )
    clean, line, column = _marked(text)
    path = _write(tmp_path, clean)
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    message = str(caught.value)
    assert "scheme 'modbus-tcp' does not fit transport opcua (expected opc.tcp://...)" in message
    assert "s3cret" not in message
    assert "operator" not in message
    assert caught.value.where == Where(str(path), line, column)


def test_hardware_devices_have_an_endpoint_and_no_twin(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEAD + "  bio: {driver: bioreactor, profile: bioreactor.opcua, transport: opcua, "
        "endpoint: 'opc.tcp://10.1.2.3:4840/'}\n"
        "  fz: {driver: freezer, profile: freezer.modbus, transport: modbus-rtu, "
        "endpoint: 'modbus-rtu:///dev/ttyUSB0?baudrate=19200', description: the freezer}\n",
    )
    line = load_line(path)
    assert line.devices["bio"].twin is False
    assert line.devices["bio"].endpoint == "opc.tcp://10.1.2.3:4840/"
    assert line.devices["fz"].kind == "modbus-rtu"
    assert line.devices["fz"].description == "the freezer"


def test_a_profile_path_is_relative_to_the_line_file(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    shutil.copy(shipped_file("profiles", "thaw.serial"), tmp_path / "profiles" / "my.thaw.yaml")
    path = _write(
        tmp_path,
        HEAD + "  thaw: {driver: thaw, profile: profiles/my.thaw.yaml, transport: serial, "
        "twin: true}\n",
    )
    assert load_line(path).devices["thaw"].profile.name == "my.thaw"


def _profile_without(tmp_path: Path, line_prefix: str) -> Path:
    source = shipped_file("profiles", "thaw.serial").read_text().splitlines(keepends=True)
    kept = [row for row in source if not row.startswith(line_prefix)]
    assert len(kept) < len(source)
    (tmp_path / "thaw.yaml").write_text("".join(kept))
    return _write(
        tmp_path,
        HEAD + "  thaw: {driver: thaw, profile: @@thaw.yaml, transport: serial, twin: true}\n",
    )


def test_a_profile_that_cannot_drive_the_driver_is_refused_like_the_driver_would(
    tmp_path: Path,
) -> None:
    path = _profile_without(tmp_path, "  thaw_complete:")
    clean, line, column = _marked(path.read_text())
    path.write_text(clean)
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert "profile thaw cannot drive a thaw: it lacks thaw_complete" in caught.value.message
    assert caught.value.where == Where(str(path), line, column)


def test_a_profile_with_driver_foreign_enum_names_is_refused(tmp_path: Path) -> None:
    text = shipped_file("profiles", "thaw.serial").read_text()
    assert "enum: [idle, busy, warn, error]" in text
    (tmp_path / "thaw.yaml").write_text(text.replace("[idle, busy, warn, error]", "[a, b, c, d]"))
    path = _write(
        tmp_path,
        HEAD + "  thaw: {driver: thaw, profile: thaw.yaml, transport: serial, twin: true}\n",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert "signal status: enum names a, b, c, d are not among" in caught.value.message
    assert caught.value.where.file == str(tmp_path / "thaw.yaml")


def test_a_profile_error_names_the_profile_file(tmp_path: Path) -> None:
    (tmp_path / "thaw.yaml").write_text("device: thaw\ntransport: carrier-pigeon\n")
    path = _write(
        tmp_path,
        HEAD + "  thaw: {driver: thaw, profile: thaw.yaml, transport: serial, twin: true}\n",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert caught.value.where == Where(str(tmp_path / "thaw.yaml"), 2, 12)


def test_yaml_syntax_and_missing_files_are_configuration_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "  thaw: {driver: thaw\n")
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert caught.value.where.file == str(path)
    assert caught.value.where.line > 0
    assert "YAML syntax" in caught.value.message
    with pytest.raises(ConfigurationError, match="cannot read file"):
        load_line(tmp_path / "missing.yaml")


def test_find_line_by_name_or_by_path(tmp_path: Path) -> None:
    assert find_line("sim").name == "sim"
    path = _write(tmp_path, HEAD + THAW, name="mine.yaml")
    assert find_line("mine.yaml", base=tmp_path).name == "test"
    assert find_line(str(path)).name == "test"
    where = Where("procedure.yaml", 4, 7)
    with pytest.raises(ConfigurationError) as caught:
        find_line("nope", where=where)
    assert caught.value.where == where
    assert "no shipped line named 'nope' (shipped: sim" in caught.value.message
    with pytest.raises(ConfigurationError) as missing:
        find_line("lines/nope.yaml", base=tmp_path, where=where)
    assert missing.value.where == where
    assert "no line file" in missing.value.message


def test_a_status_signal_without_an_enum_is_refused(tmp_path: Path) -> None:
    text = shipped_file("profiles", "thaw.serial").read_text()
    assert "    enum: [idle, busy, warn, error]\n" in text
    (tmp_path / "thaw.yaml").write_text(text.replace("    enum: [idle, busy, warn, error]\n", ""))
    path = _write(
        tmp_path,
        HEAD + "  thaw: {driver: thaw, profile: thaw.yaml, transport: serial, twin: true}\n",
    )
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert "signal status: needs an enum naming its values on the wire" in caught.value.message


THAW_ALARMED = (
    "  thaw:\n"
    "    driver: thaw\n"
    "    profile: thaw.serial\n"
    "    transport: serial\n"
    "    twin: true\n"
    "    alarms:\n"
    "      - {name: TAH-TH-1, signal: @@SIGNAL, kind: high, limit: 40, priority: high}\n"
)


def test_a_devices_own_limit_alarms_are_loaded_and_named_by_the_device(tmp_path: Path) -> None:
    clean, _, _ = _marked(HEAD + THAW_ALARMED.replace("SIGNAL", "plate_temperature"))
    line = load_line(_write(tmp_path, clean))
    (alarm,) = line.alarms
    assert (alarm.name, alarm.signal, alarm.limit) == ("TAH-TH-1", "thaw.plate_temperature", 40)
    assert line.devices["thaw"].alarms == (alarm,)


@pytest.mark.parametrize(
    ("signal", "fragment"),
    [
        ("bag_loaded", "needs a numeric signal"),  # a bool
        ("nope", "needs a numeric signal"),
        ("bioreactor.temperature", "another device's signal"),
    ],
)
def test_a_device_alarm_on_a_signal_it_cannot_watch_is_refused_where_it_is(
    tmp_path: Path, signal: str, fragment: str
) -> None:
    clean, line, column = _marked(HEAD + THAW_ALARMED.replace("SIGNAL", signal))
    path = _write(tmp_path, clean)
    with pytest.raises(ConfigurationError) as caught:
        load_line(path)
    assert fragment in caught.value.message
    assert caught.value.where == Where(str(path), line, column), caught.value


def test_the_shipped_sim_line_watches_the_bag_volume() -> None:
    assert [a.name for a in shipped_line("sim").alarms] == ["LAH-BR-01"]
