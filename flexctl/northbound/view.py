"""What the northbound server shows of the line: a cache, never a device request.

:class:`LineView` keeps, per device, what the runtime describes (driver,
profile, transport, link) and the last values the supervisor read (its
monitor's samples, journal entries, or :meth:`LineView.update` from the
caller). A client's read is answered from here, so no client can add a request
to a device's link. Protocol-free: the address space turns it into nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

from drivers.base import Driver
from flexctl.line_runtime import DeviceDescription
from flexctl.profile import SignalSpec, Value

#: A value the server shows: a device value, a text list (prompts, alarms) or nothing yet.
Shown: TypeAlias = bool | int | float | str | tuple[str, ...] | None


class Kind(StrEnum):
    """The data type of a shown variable (an OPC UA built-in type name)."""

    Boolean = "Boolean"
    Int64 = "Int64"
    Double = "Double"
    String = "String"
    Texts = "String[]"


def kind_of_value(value: Value) -> Kind:
    """The kind a value shows as."""
    if isinstance(value, bool):
        return Kind.Boolean
    if isinstance(value, int):
        return Kind.Int64
    if isinstance(value, float):
        return Kind.Double
    return Kind.String


def kind_of_signal(spec: SignalSpec) -> Kind:
    """The kind a profile signal's decoded value shows as (an enum shows its member name)."""
    if spec.enum is not None or spec.type == "string":
        return Kind.String
    if spec.type == "bool":
        return Kind.Boolean
    if spec.type.startswith(("int", "uint")):
        return Kind.Int64
    return Kind.Double


def fit(kind: Kind, value: Value) -> Shown:
    """``value`` as ``kind`` shows it, or None when it cannot (shown as Bad, not as a lie)."""
    if kind is Kind.Double and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is Kind.Int64 and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is Kind.Boolean and isinstance(value, bool):
        return value
    if kind is Kind.String:
        return value if isinstance(value, str) else str(value)
    return None


@dataclass
class DeviceView:
    """One device as the server shows it."""

    name: str
    driver: str = ""
    profile: str = ""
    transport: str = ""
    origin: str = ""
    source: str = ""
    link: str = "disconnected"
    #: signal -> kind, fixed once known (from the profile, or the first value seen)
    signals: dict[str, Kind] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    #: the device's active alarm codes, as the executor's monitor last read them
    alarms: tuple[str, ...] = ()
    #: the device status (idle, busy, warn, error) as last read; None: not read yet
    status_reading: str | None = None

    @property
    def status(self) -> str:
        """frappy/SECoP-style status: ERROR while the link is down, else the last reading."""
        if self.link != "connected":
            return "ERROR"
        return (self.status_reading or "unknown").upper()

    def describe(self, description: DeviceDescription) -> None:
        self.driver = description.driver
        self.profile = description.profile
        self.transport = description.kind
        self.origin = description.origin
        self.source = description.source or ""
        self.link = description.state


class LineView:
    """Every device of a line, by name; see the module docstring."""

    def __init__(self, name: str, devices: Mapping[str, DeviceDescription]) -> None:
        self.name = name
        self.devices = {key: DeviceView(key) for key in devices}
        self.describe(devices)

    def describe(self, devices: Mapping[str, DeviceDescription]) -> None:
        """Take a fresh description (link states, sources) of the known devices."""
        for key, description in devices.items():
            if key in self.devices:
                self.devices[key].describe(description)

    def declare(self, device: str, signals: Mapping[str, SignalSpec]) -> None:
        """Fix the kinds of ``device``'s signals from its profile."""
        view = self.devices.get(device)
        if view is not None:
            for name, spec in signals.items():
                view.signals.setdefault(name, kind_of_signal(spec))

    def update(self, device: str, values: Mapping[str, Value]) -> bool:
        """Keep the last ``values`` read of ``device``; False for an unknown device."""
        view = self.devices.get(device)
        if view is None:
            return False
        for signal, value in values.items():
            view.signals.setdefault(signal, kind_of_value(value))
            view.values[signal] = value
        return True

    def shown(self) -> dict[str, tuple[Kind, Shown]]:
        """Every device variable by its path under ``Devices`` (``tank.Values.level``)."""
        shown: dict[str, tuple[Kind, Shown]] = {}
        for key, view in self.devices.items():
            for label, text in (
                ("Driver", view.driver),
                ("Profile", view.profile),
                ("Transport", view.transport),
                ("Origin", view.origin),
                ("Source", view.source),
                ("Link", view.link),
                ("Status", view.status),
            ):
                shown[f"{key}.{label}"] = (Kind.String, text)
            shown[f"{key}.Alarms"] = (Kind.Texts, view.alarms)
            for signal, kind in view.signals.items():
                value = view.values.get(signal)
                shown[f"{key}.Values.{signal}"] = (
                    kind,
                    None if value is None else fit(kind, value),
                )
        return shown


def describe_drivers(
    drivers: Mapping[str, Driver], origin: Literal["twin", "external twin", "hardware"] = "hardware"
) -> dict[str, DeviceDescription]:
    """Devices described from their drivers alone, for a batch run without a LineRuntime."""
    return {
        name: DeviceDescription(
            name=name,
            driver=driver.kind,
            profile=driver.transport.profile.name,
            kind=driver.transport.profile.transport,
            origin=origin,
            source=driver.source,
            state=str(driver.transport.state),
        )
        for name, driver in drivers.items()
    }
