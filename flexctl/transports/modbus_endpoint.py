"""Modbus endpoints: where a device is and, on a serial bus, how the line is set.

::

    modbus-tcp://host:port?unit=1                      (port defaults to 502)
    modbus-rtu:///dev/ttyUSB0?unit=1&baudrate=19200&parity=N&stopbits=1&bytesize=8&settle=2.5&gap=0.002

``unit`` (the Modbus unit id) defaults to 1. ``settle`` (RTU only, seconds) is
how long the bus must stay silent after this unit's reply went missing before
anyone sends again; it never goes below the request timeout, its default (see
:mod:`flexctl.transports.modbus_rtu`). ``gap`` (RTU only, seconds) is the silent
interval before each frame; by default Modbus RTU's t3.5 for the line settings.
A twin on a pty gives ``gap=0``: a pty carries whole writes and has no line
timing, and the twin's framer finds frame ends by length and CRC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from flexctl.errors import ConfigurationError, Where


@dataclass(frozen=True)
class SerialSettings:
    """One RS-485 bus: the port and its line settings."""

    path: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1
    gap: float | None = None  # None: t3.5 from the line settings

    @property
    def frame_gap(self) -> float:
        """The silent interval before a frame (seconds): ``gap`` if given, else t3.5.

        t3.5 is 3.5 character times, and 1.75 ms at least (the Modbus spec's fixed
        value above 19200 baud).
        """
        if self.gap is not None:
            return self.gap
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return max(3.5 * bits / self.baudrate, 0.00175)


class RtuEndpoint(NamedTuple):
    """A unit on an RS-485 bus: the bus, the unit id and its settle window (None: default)."""

    serial: SerialSettings
    unit: int
    settle: float | None = None


#: Longest settle window an endpoint may ask for (seconds).
MAX_SETTLE = 3600.0
#: Longest inter-frame gap an endpoint may ask for (seconds).
MAX_GAP = 1.0


def _query(endpoint: str, allowed: Mapping[str, tuple[str, ...] | None]) -> dict[str, str]:
    split = urlsplit(endpoint)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        if key not in allowed:
            raise ConfigurationError(
                Where(endpoint),
                f"unknown endpoint parameter {key!r} "
                f"(expected one of {', '.join(sorted(allowed))})",
            )
        options = allowed[key]
        if options is not None and value not in options:
            raise ConfigurationError(
                Where(endpoint), f"endpoint parameter {key} must be one of {', '.join(options)}"
            )
        query[key] = value
    return query


def _int_param(
    endpoint: str, query: Mapping[str, str], key: str, default: int, *, low: int, high: int
) -> int:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigurationError(
            Where(endpoint), f"endpoint parameter {key} must be an integer in [{low}, {high}]"
        )
    return value


def _seconds_param(
    endpoint: str, query: Mapping[str, str], key: str, *, high: float, zero: bool
) -> float | None:
    """An optional seconds parameter in (0, high], or [0, high] when ``zero`` is allowed."""
    text = query.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 if zero else value > 0) or not value <= high:  # NaN fails too
        low = "[0" if zero else "(0"
        raise ConfigurationError(
            Where(endpoint),
            f"endpoint parameter {key} must be seconds in {low}, {high:g}], got {text!r}",
        )
    return value


def parse_tcp_endpoint(endpoint: str) -> tuple[str, int, int]:
    """``modbus-tcp://host:port?unit=N`` as (host, port, unit)."""
    split = urlsplit(endpoint)
    query = _query(endpoint, {"unit": None})
    try:
        port = split.port or 502
    except ValueError:
        raise ConfigurationError(Where(endpoint), "endpoint port must be 1..65535") from None
    if not split.hostname:
        raise ConfigurationError(Where(endpoint), "endpoint needs a host: modbus-tcp://host:port")
    return split.hostname, port, _int_param(endpoint, query, "unit", 1, low=0, high=255)


def parse_rtu_endpoint(endpoint: str) -> RtuEndpoint:
    """``modbus-rtu:///dev/tty?unit=N&baudrate=...&settle=S`` as (serial settings, unit, settle)."""
    split = urlsplit(endpoint)
    query = _query(
        endpoint,
        {
            "unit": None,
            "baudrate": None,
            "parity": ("N", "E", "O"),
            "stopbits": ("1", "2"),
            "bytesize": ("7", "8"),
            "settle": None,
            "gap": None,
        },
    )
    if split.netloc or not split.path:
        raise ConfigurationError(
            Where(endpoint), "endpoint needs a port path: modbus-rtu:///dev/ttyUSB0"
        )
    settings = SerialSettings(
        path=split.path,
        baudrate=_int_param(endpoint, query, "baudrate", 19200, low=50, high=4_000_000),
        bytesize=int(query.get("bytesize", "8")),
        parity=query.get("parity", "N"),
        stopbits=int(query.get("stopbits", "1")),
        gap=_seconds_param(endpoint, query, "gap", high=MAX_GAP, zero=True),
    )
    # unit 0 is broadcast on a serial bus: nobody answers it
    unit = _int_param(endpoint, query, "unit", 1, low=1, high=247)
    settle = _seconds_param(endpoint, query, "settle", high=MAX_SETTLE, zero=False)
    return RtuEndpoint(settings, unit, settle)
