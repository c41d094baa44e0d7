"""Lines: which devices a batch runs on, with which driver and profile, reached how.

A line file (``config/lines/<name>.yaml``, or any file given by path) names
each device of a manufacturing line once::

    line: sim
    description: The simulated line, four twins each behind its own protocol
    devices:
      bioreactor: {driver: bioreactor, profile: bioreactor.opcua, transport: opcua, twin: true}
      freezer:    {driver: freezer, profile: freezer.modbus, transport: modbus-rtu,
                   endpoint: "modbus-rtu:///dev/ttyUSB0?baudrate=19200&unit=1"}

Per device:

- ``driver``: a driver of :mod:`drivers.registry` (``bioreactor``, ``thaw`` ...).
- ``profile``: a shipped profile name (``bioreactor.opcua``) or a path to a
  profile file, relative to the line file. Its ``device:`` must be the driver's
  name and it must bind every signal and command the driver requires.
- ``transport``: one of :data:`flexctl.twins.KINDS`; it must fit the profile's
  family (an ``opcua`` profile over ``opcua``, a ``modbus`` profile over
  ``modbus-tcp`` or ``modbus-rtu``, a ``serial`` profile over ``serial``).
- ``twin: true`` (the supervisor starts the device's simulator twin) or an
  ``endpoint:`` (real hardware, its scheme matching the transport), never both.
  An endpoint may carry a password, so no message ever repeats one.
- ``description``: optional text.
- ``alarms``: optional ISA-18.2 limit alarms on this device's numeric signals
  (the keys of :mod:`flexctl.supervisor.alarm_defs`; ``signal`` is the
  signal's name, or ``device.signal`` naming this device). They are the
  plant's own, watched in every batch on the line, beside a procedure's.

Every error is a :class:`~flexctl.errors.ConfigurationError` naming the file,
line and column of the offending key or value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import Driver
from drivers.registry import driver_class
from flexctl.errors import ConfigurationError, Where
from flexctl.profile import Profile, check_keys, load_profile
from flexctl.resources import shipped_file
from flexctl.transports.registry import check_profile, scheme_of
from flexctl.twins import FAMILY, KINDS
from flexctl.yamlpos import PosDict, load_file, require_mapping

if TYPE_CHECKING:
    from flexctl.supervisor.alarm_defs import AlarmDefinition

LINE_KEYS = ("line", "description", "devices")
DEVICE_KEYS = ("driver", "profile", "transport", "twin", "endpoint", "description", "alarms")

#: The endpoint scheme each transport kind expects.
SCHEMES: Mapping[str, str] = {
    "opcua": "opc.tcp",
    "modbus-tcp": "modbus-tcp",
    "modbus-rtu": "modbus-rtu",
    "serial": "serial",
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class LineDevice:
    """One device of a line: its driver, its profile and how it is reached."""

    name: str
    driver: str
    profile: Profile
    kind: str
    endpoint: str | None
    twin: bool
    where: Where
    description: str = ""
    alarms: tuple[AlarmDefinition, ...] = ()

    def driver_class(self) -> type[Driver]:
        return driver_class(self.driver)


@dataclass(frozen=True)
class Line:
    """A loaded and checked line."""

    name: str
    description: str
    devices: Mapping[str, LineDevice]
    where: Where

    @property
    def alarms(self) -> tuple[AlarmDefinition, ...]:
        """Every device's own limit alarms."""
        return tuple(alarm for device in self.devices.values() for alarm in device.alarms)


def load_line(path: Path) -> Line:
    """Load and check a line file; ConfigurationError (file:line:column) if anything is wrong."""
    data = load_file(path)
    top = require_mapping(data, Where(str(path), 1, 1), "line")
    check_keys(top, LINE_KEYS, top.where, "line")
    name = top.get("line")
    if name is None:
        raise ConfigurationError(top.where, "line: missing key 'line' (the line's name)")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(top.at("line"), f"line: expected a name, got {name!r}")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise ConfigurationError(top.at("description"), "line: description must be text")
    if "devices" not in top:
        raise ConfigurationError(top.where, f"line {name}: missing key 'devices'")
    devices_raw = require_mapping(top["devices"], top.at("devices"), f"line {name}: devices")
    if not devices_raw:
        raise ConfigurationError(top.at("devices"), f"line {name}: no devices")
    devices = {
        dev_name: _device(dev_name, raw, devices_raw, path) for dev_name, raw in devices_raw.items()
    }
    return Line(name=name, description=description, devices=devices, where=top.where)


def shipped_line(name: str) -> Line:
    """A line that ships with flexctl, by name (``sim``)."""
    return load_line(shipped_file("lines", name))


def looks_like_path(ref: str) -> bool:
    """A reference to a file (rather than a shipped name): has a folder or a YAML suffix."""
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml"))


def find_line(ref: str, *, base: Path | None = None, where: Where | None = None) -> Line:
    """A line by shipped name or by path (relative to ``base`` when given).

    ``where`` is the place that named the line: a line that does not exist is
    reported there, while an error inside an existing line file names that file.
    """
    if looks_like_path(ref):
        path = Path(ref)
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise ConfigurationError(where or Where(str(path)), f"no line file {str(path)!r}")
    else:
        try:
            path = shipped_file("lines", ref)
        except ConfigurationError as exc:
            if where is None:
                raise
            raise ConfigurationError(where, exc.message) from None
    return load_line(path)


def _device(name: str, raw: Any, devices: PosDict, path: Path) -> LineDevice:
    spec = require_mapping(raw, devices.at(name), f"device {name}")
    if not _NAME.match(name):
        raise ConfigurationError(
            devices.key_at(name),
            f"device name {name!r}: expected letters, digits and _ (not starting with a digit), "
            "so procedures can name it",
        )
    check_keys(spec, DEVICE_KEYS, spec.where, f"device {name}")
    for key in ("driver", "profile", "transport"):
        if key not in spec:
            raise ConfigurationError(spec.where, f"device {name}: missing key {key!r}")
        if not isinstance(spec[key], str) or not spec[key]:
            raise ConfigurationError(
                spec.at(key), f"device {name}: {key} must be a name, got {spec[key]!r}"
            )
    driver: str = spec["driver"]
    try:
        cls = driver_class(driver)
    except ValueError as exc:
        raise ConfigurationError(spec.at("driver"), f"device {name}: {exc}") from None
    profile = _profile(name, spec, path)
    if profile.device != driver:
        raise ConfigurationError(
            spec.at("profile"),
            f"device {name}: profile {profile.name} is for a {profile.device!r} device, "
            f"not for driver {driver!r}",
        )
    cls.check_profile(profile, spec.at("profile"))
    kind = _kind(name, spec, profile)
    twin, endpoint = _reach(name, spec, kind)
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise ConfigurationError(spec.at("description"), f"device {name}: description must be text")
    return LineDevice(
        name=name,
        driver=driver,
        profile=profile,
        kind=kind,
        endpoint=endpoint,
        twin=twin,
        where=spec.where,
        description=description,
        alarms=_alarms(name, spec, profile),
    )


def _alarms(name: str, spec: PosDict, profile: Profile) -> tuple[AlarmDefinition, ...]:
    """A device's own limit alarms, each on a numeric signal of its profile."""
    from flexctl.supervisor.alarm_defs import parse_alarms

    raw = spec.get("alarms")
    if raw is None:
        return ()
    if isinstance(raw, list):  # a bare signal name is this device's
        for item in raw:
            signal = item.get("signal") if isinstance(item, dict) else None
            if isinstance(signal, str) and "." not in signal:
                item["signal"] = f"{name}.{signal}"
    alarms = parse_alarms(raw, spec.at("alarms"))
    for alarm in alarms:
        if alarm.device != name:
            raise ConfigurationError(
                alarm.where, f"device {name}: alarm {alarm.name} watches another device's signal"
            )
        signal = profile.signals.get(alarm.signal_name)
        if signal is None or not signal.numeric:
            raise ConfigurationError(
                alarm.where,
                f"device {name}: alarm {alarm.name} needs a numeric signal of profile "
                f"{profile.name}, not {alarm.signal_name!r}",
            )
    return alarms


def _profile(name: str, spec: PosDict, line_path: Path) -> Profile:
    ref: str = spec["profile"]
    if looks_like_path(ref):
        path = Path(ref)
        if not path.is_absolute():
            path = line_path.parent / path
        if not path.is_file():
            raise ConfigurationError(spec.at("profile"), f"device {name}: no profile file {ref!r}")
    else:
        try:
            path = shipped_file("profiles", ref)
        except ConfigurationError as exc:
            raise ConfigurationError(spec.at("profile"), f"device {name}: {exc.message}") from None
    # Errors inside the profile name the profile file: that is where they are.
    profile = load_profile(path)
    check_profile(profile)
    return profile


def _kind(name: str, spec: PosDict, profile: Profile) -> str:
    kind: str = spec["transport"]
    if kind not in KINDS:
        raise ConfigurationError(
            spec.at("transport"),
            f"device {name}: unknown transport {kind!r} (expected one of {', '.join(KINDS)})",
        )
    if FAMILY[kind] != profile.transport:
        fitting = ", ".join(k for k in KINDS if FAMILY[k] == profile.transport)
        raise ConfigurationError(
            spec.at("transport"),
            f"device {name}: transport {kind} does not fit profile {profile.name}, "
            f"a {profile.transport} profile (expected {fitting})",
        )
    return kind


def _reach(name: str, spec: PosDict, kind: str) -> tuple[bool, str | None]:
    twin = spec.get("twin", False)
    if not isinstance(twin, bool):
        raise ConfigurationError(spec.at("twin"), f"device {name}: twin must be true or false")
    endpoint = spec.get("endpoint")
    if twin and endpoint is not None:
        raise ConfigurationError(
            spec.key_at("endpoint"),
            f"device {name}: give either 'twin: true' or an endpoint, not both",
        )
    if endpoint is None:
        if not twin:
            raise ConfigurationError(
                spec.where,
                f"device {name}: expected 'twin: true' (simulated) or an endpoint (hardware)",
            )
        return True, None
    # Never repeat the endpoint itself: it may carry a user name and password.
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigurationError(spec.at("endpoint"), f"device {name}: endpoint must be text")
    scheme = scheme_of(endpoint)
    if scheme != SCHEMES[kind]:
        raise ConfigurationError(
            spec.at("endpoint"),
            f"device {name}: endpoint scheme {scheme or '(none)'!r} does not fit transport "
            f"{kind} (expected {SCHEMES[kind]}://...)",
        )
    return False, endpoint
