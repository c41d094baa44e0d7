"""Interlock definitions: conditions that hold a batch by themselves.

A lost device (no answer, or its link leaving CONNECTED) always interlocks;
these add a device value that must stay in a band (:class:`Interlock`) and
device-side alarms that must not be raised (:class:`AlarmInterlock`). The
executor checks them in a monitor task polling on the clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flexctl.profile import Value


@dataclass(frozen=True)
class Interlock:
    """``signal`` (``device.signal``) must stay within [low, high] (either may be open).

    Out of the band for longer than ``delay`` process seconds, the batch holds.
    A reading that is no number counts as out of the band.
    """

    signal: str
    low: float | None = None
    high: float | None = None
    delay: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        device, dot, signal = self.signal.partition(".")
        if not dot or not device or not signal or "." in signal:
            raise ValueError(f"interlock signal {self.signal!r}: expected device.signal")
        if self.low is None and self.high is None:
            raise ValueError(f"interlock {self.label}: give low, high or both")
        for bound in (self.low, self.high):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"interlock {self.label}: limits must be finite numbers")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"interlock {self.label}: low {self.low} is above high {self.high}")
        if not self.delay >= 0:
            raise ValueError(f"interlock {self.label}: delay must be >= 0 s")

    @property
    def device(self) -> str:
        return self.signal.partition(".")[0]

    @property
    def signal_name(self) -> str:
        return self.signal.partition(".")[2]

    @property
    def label(self) -> str:
        return self.name or self.signal

    def band(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "+inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"

    def outside(self, value: Value) -> bool:
        """True when ``value`` is out of the band (or no finite number)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True
        if not math.isfinite(value):
            return True
        if self.low is not None and value < self.low:
            return True
        return self.high is not None and value > self.high


@dataclass(frozen=True)
class AlarmInterlock:
    """A device alarm that holds the batch: any of ``alarms``, or any alarm at all if empty."""

    device: str
    alarms: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "alarms", frozenset(a.strip() for a in self.alarms))

    def tripping(self, active: Iterable[str]) -> list[str]:
        """The active alarms that interlock, in the order given."""
        return [a for a in active if not self.alarms or a in self.alarms]


_SEPARATORS = re.compile(r"[,;\s]+")


def parse_alarms(text: object) -> tuple[str, ...]:
    """Alarm codes from a device's alarm text (``"OVERFILL,DO_LOW"``); empty when none."""
    return tuple(part for part in _SEPARATORS.split(str(text).strip()) if part)
