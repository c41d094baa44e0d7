"""The LADS-shaped program state every process twin shares, and its common tags.

Shaped after the ActiveProgram of OPC UA LADS (domain.md 3.3): a program state,
the current step's name and number and the runtime since the program started.
The four state names are a simplification of LADS' FunctionalStateMachine
(Stopping/Aborting/Clearing are instantaneous in a twin) plus ``complete``
from its RunningStateMachine.

Common tags (every twin that uses :class:`ProgramRun`):

=============  ====  ====  ========  ======================================
name           type  unit  writable  meaning
=============  ====  ====  ========  ======================================
status         enum  -     no        :data:`STATUSES`, SECoP-like summary
alarm          text  -     no        active alarm codes, comma separated;
                                     "" when none; cleared by a new start
program_state  enum  -     no        :data:`PROGRAM_STATES`
step_name      text  -     no        current step ("" before any start)
step_number    int   -     no        1-based current step (0 before start)
runtime_s      float s     no        time since start, frozen at the end
=============  ====  ====  ========  ======================================

``status`` is ``busy`` while running, ``warn`` while an alarm is active and
the program runs or completed, ``error`` when a program was aborted with an
alarm, otherwise ``idle``. Also here: argument checks shared by the twins'
``call`` methods (they raise :class:`~flexctl.errors.OutOfRangeError`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from flexctl.errors import OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError


class ProgramState(StrEnum):
    """The program's state; the value is what the ``program_state`` tag reads."""

    STOPPED = "stopped"
    RUNNING = "running"
    COMPLETE = "complete"
    ABORTED = "aborted"


PROGRAM_STATES: tuple[str, ...] = tuple(state.value for state in ProgramState)
STATUSES: tuple[str, ...] = ("idle", "busy", "warn", "error")
COMMON_TAGS: frozenset[str] = frozenset(
    {"status", "alarm", "program_state", "step_name", "step_number", "runtime_s"}
)


class ProgramRun:
    """Program state, current step, runtime and latched alarms of one device."""

    def __init__(self) -> None:
        self.state = ProgramState.STOPPED
        self.step_name = ""
        self.step_number = 0
        self.started_at = 0.0
        self.ended_at = 0.0
        self._alarms: list[str] = []

    @property
    def running(self) -> bool:
        return self.state is ProgramState.RUNNING

    @property
    def alarm(self) -> str:
        return ",".join(self._alarms)

    def has_alarm(self, code: str) -> bool:
        return code in self._alarms

    def start(self, now: float, step_name: str, step_number: int = 1) -> None:
        """Enter ``running`` at ``now``; a new run clears the previous alarms."""
        self.state = ProgramState.RUNNING
        self.started_at = now
        self.ended_at = now
        self._alarms.clear()
        self.enter_step(step_name, step_number)

    def enter_step(self, step_name: str, step_number: int) -> None:
        self.step_name = step_name
        self.step_number = step_number

    def finish(self, now: float, state: ProgramState) -> None:
        """Leave ``running`` for ``state`` (stopped, complete or aborted) at ``now``."""
        if self.state is ProgramState.RUNNING:
            self.ended_at = max(now, self.started_at)
        self.state = state

    def raise_alarm(self, code: str) -> None:
        """Latch an alarm code until the next start (or :meth:`clear_alarms`)."""
        if code not in self._alarms:
            self._alarms.append(code)

    def clear_alarms(self) -> None:
        self._alarms.clear()

    def runtime_s(self, now: float) -> float:
        if self.state is ProgramState.RUNNING:
            return max(0.0, now - self.started_at)
        return self.ended_at - self.started_at

    def status(self) -> str:
        if self._alarms:
            return "error" if self.state is ProgramState.ABORTED else "warn"
        return "busy" if self.state is ProgramState.RUNNING else "idle"

    def read(self, tag: str, now: float) -> Value:
        """One of :data:`COMMON_TAGS`; :class:`UnknownTagError` for anything else."""
        match tag:
            case "status":
                return self.status()
            case "alarm":
                return self.alarm
            case "program_state":
                return self.state.value
            case "step_name":
                return self.step_name
            case "step_number":
                return self.step_number
            case "runtime_s":
                return round(self.runtime_s(now), 3)
        raise UnknownTagError(f"no common tag {tag!r}")


def number(name: str, value: Value, low: float, high: float) -> float:
    """A finite number within ``[low, high]``, or :class:`OutOfRangeError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRangeError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or not low <= result <= high:
        raise OutOfRangeError(f"{name} {value!r} outside [{low:g}, {high:g}]")
    return result


def integer(name: str, value: Value, low: int, high: int) -> int:
    """A whole number within ``[low, high]`` (an integral float is accepted)."""
    as_float = number(name, value, low, high)
    if not as_float.is_integer():
        raise OutOfRangeError(f"{name} must be a whole number, got {value!r}")
    return int(as_float)


def text(name: str, value: Value, choices: Sequence[str]) -> str:
    """One of ``choices``, or :class:`OutOfRangeError`."""
    if not isinstance(value, str) or value not in choices:
        raise OutOfRangeError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def arity(method: str, args: Sequence[Value], low: int, high: int | None = None) -> None:
    """Check the argument count of a method call."""
    top = low if high is None else high
    if not low <= len(args) <= top:
        expected = str(low) if top == low else f"{low} to {top}"
        raise OutOfRangeError(f"{method} takes {expected} arguments, got {len(args)}")
