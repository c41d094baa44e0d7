"""Find the transport class for a profile and an endpoint, importing it lazily.

Lazy, so a line that uses only serial devices never imports asyncua.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from flexctl.clock import Clock
from flexctl.errors import ConfigurationError
from flexctl.profile import Profile
from flexctl.transports.base import Transport, TransportOptions

# endpoint scheme -> (module, class); the class says which profile family it serves.
_SCHEMES: dict[str, tuple[str, str]] = {
    "opc.tcp": ("flexctl.transports.opcua", "OpcUaTransport"),
    "modbus-tcp": ("flexctl.transports.modbus", "ModbusTcpTransport"),
    "modbus-rtu": ("flexctl.transports.modbus_rtu", "ModbusRtuTransport"),
    "serial": ("flexctl.transports.serial", "SerialTransport"),
}

# profile family -> the class that can check its addresses without connecting.
_FAMILIES: dict[str, str] = {
    "opcua": "opc.tcp",
    "modbus": "modbus-tcp",
    "serial": "serial",
}


def scheme_of(endpoint: str) -> str:
    return urlsplit(endpoint).scheme


def transport_class(endpoint: str) -> type[Transport]:
    scheme = scheme_of(endpoint)
    try:
        module_name, class_name = _SCHEMES[scheme]
    except KeyError:
        # Only the scheme: the rest of an endpoint may carry a password.
        raise ValueError(
            f"endpoint with unknown scheme {scheme!r} "
            f"(expected one of {', '.join(sorted(_SCHEMES))})"
        ) from None
    cls: type[Transport] = getattr(importlib.import_module(module_name), class_name)
    return cls


def family_class(family: str) -> type[Transport]:
    return transport_class(_FAMILIES[family] + "://")


def check_profile(profile: Profile) -> None:
    """Check every address in a profile without connecting (ConfigurationError if wrong)."""
    cls = family_class(profile.transport)
    for spec in profile.signals.values():
        cls.parse_signal(spec)
    for command in profile.commands.values():
        cls.parse_command(command)
    cls.check_profile(profile)


def create_transport(
    profile: Profile,
    endpoint: str,
    *,
    clock: Clock,
    device: str | None = None,
    options: TransportOptions | None = None,
) -> Transport:
    """A transport for ``profile`` at ``endpoint`` (not yet connected)."""
    try:
        cls = transport_class(endpoint)
    except ValueError as exc:
        raise ConfigurationError(profile.where, str(exc)) from None
    return cls(profile, endpoint, clock=clock, device=device, options=options)
