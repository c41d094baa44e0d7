"""A small instrument for transport tests, benchmarks and the demo command.

Not a process twin: a heated block whose temperature follows its setpoint with a
first-order lag, a pump that starts and stops, a mode enum, a label string, a
signed level and twenty analogue channels for batched reads. Everything is
computed from the clock when read, so it behaves the same under any clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from flexctl.clock import Clock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError

CHANNELS = 20
TAU_S = 60.0
SETPOINT_LIMITS = (0.0, 50.0)
RATE_LIMITS = (0.0, 1000.0)
MODES = ("idle", "running", "error")


class DemoModel:
    """Heated block with a pump; see the module docstring."""

    def __init__(self, clock: Clock, seed: int = 0) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self._t = clock.now()
        self._temperature = 20.0
        self._setpoint = 20.0
        self._running = False
        self._rate = 0.0
        self._label = "demo"
        self._level = -5
        self._cycles = 0
        self._tags = frozenset(
            {
                "temperature",
                "temperature_sp",
                "running",
                "mode",
                "rate",
                "label",
                "level",
                "cycles",
                *(f"ch{i:02d}" for i in range(CHANNELS)),
            }
        )

    def tags(self) -> frozenset[str]:
        return self._tags

    def methods(self) -> frozenset[str]:
        return frozenset({"start", "stop"})

    def _advance(self) -> None:
        now = self._clock.now()
        dt = now - self._t
        if dt > 0:
            # exact solution of dT/dt = (SP - T) / tau over dt
            self._temperature = self._setpoint + (self._temperature - self._setpoint) * math.exp(
                -dt / TAU_S
            )
            self._t = now

    def read(self, tag: str) -> Value:
        self._advance()
        match tag:
            case "temperature":
                return round(self._temperature + self._rng.gauss(0.0, 0.01), 4)
            case "temperature_sp":
                return self._setpoint
            case "running":
                return self._running
            case "mode":
                return "running" if self._running else "idle"
            case "rate":
                return self._rate
            case "label":
                return self._label
            case "level":
                return self._level
            case "cycles":
                return self._cycles
        if tag in self._tags and tag.startswith("ch"):
            index = int(tag[2:])
            return round(10.0 * index + math.sin(self._clock.now() / 600.0 + index), 3)
        raise UnknownTagError(f"demo model has no tag {tag!r}")

    def write(self, tag: str, value: Value) -> None:
        self._advance()
        match tag:
            case "temperature_sp":
                number = _number(tag, value)
                low, high = SETPOINT_LIMITS
                if not low <= number <= high:
                    raise OutOfRangeError(f"temperature_sp {number:g} outside [{low:g}, {high:g}]")
                self._setpoint = number
            case "label":
                if not isinstance(value, str) or len(value) > 16:
                    raise OutOfRangeError("label must be text of at most 16 characters")
                self._label = value
            case "level":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise OutOfRangeError("level must be an integer")
                self._level = value
            case _:
                if tag in self._tags:
                    raise OutOfRangeError(f"{tag} is read-only")
                raise UnknownTagError(f"demo model has no tag {tag!r}")

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        self._advance()
        if method == "start":
            if len(args) != 1:
                raise OutOfRangeError("start takes one argument: rate")
            if self._running:
                raise DeviceBusyError("pump already running")
            rate = _number("rate", args[0])
            low, high = RATE_LIMITS
            if not low <= rate <= high:
                raise OutOfRangeError(f"rate {rate:g} outside [{low:g}, {high:g}]")
            self._running = True
            self._rate = rate
            self._cycles += 1
            return [self._cycles]
        if method == "stop":
            if args:
                raise OutOfRangeError("stop takes no arguments")
            self._running = False
            self._rate = 0.0
            return [self._cycles]
        raise UnknownTagError(f"demo model has no method {method!r}")


def _number(tag: str, value: Value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRangeError(f"{tag} must be a number, got {value!r}")
    return float(value)
