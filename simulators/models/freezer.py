"""Controlled-rate freezer twin (VIA Freeze class): chamber profile, bag, nucleation.

The chamber air follows the programmed setpoint (first-order, 20 s) of a
multi-segment profile (:mod:`simulators.models.freezer_profile`). One bag sits
in it and exchanges heat with the chamber through its wall (first-order, time
constant 4 min for a 50 mL bag, growing with the square root of the fill [A]).
The bag is a lumped enthalpy node (:mod:`simulators.models.bag_thermal`): it
supercools as a liquid until it nucleates at ``Tm - S``, where the supercooling
``S`` is drawn uniformly in 5-15 °C when the program starts (domain.md 1.4).
Nucleation is adiabatic: the enthalpy is kept and the bag jumps to the ice /
solution equilibrium, near the melting point (the exotherm), then releases the
rest of its latent heat over minutes. The nucleation-compensation segments
(fast drop, warm back) take that heat out so the sample keeps cooling at about
-1 °C/min afterwards. The nucleation event lasts from nucleation until 80 % of
the freezable water is ice (sample below about -15 °C).

Deviation alarm ``RATE_DEVIATION``: the sample's rate over the last minute
leaves the expected rate ±0.5 °C/min (domain.md 1.4) while a checked segment
ramps (standard_bag: -1 °C/min in segments 3, 6, 7; a custom segment: its own
rate when it ramps at most 2 °C/min), once the segment has run 5 min (a bag
needs about one time constant to pick up a new rate) and outside the
nucleation event. The standard profile stays in band for 30-100 mL fills.
``DOOR_OPEN``: the door opened while a program ran (the run aborts). Alarms
latch until the next start.

========================  =====  ======  ========  =====================================
tag                       type   unit    writable  limits / meaning
========================  =====  ======  ========  =====================================
chamber_temperature       float  degC    no        chamber air
chamber_sp                float  degC    idle      [-100, 40]; the profile drives it
sample_temperature        float  degC    no        bag probe
sample_rate               float  degC/m  no        sample change over the last minute
door_closed               bool   -       no        operator: open_door / close_door
segment                   int    -       no        current segment, 1-based (0: none)
segment_count             int    -       no        segments in the loaded profile
profile_name              text   -       no        :data:`PROFILE_NAMES`
fill_volume_ml            float  mL      no        the bag in the chamber (load_bag)
status                    enum   -       no        :data:`STATUSES`
alarm                     text   -       no        RATE_DEVIATION, DOOR_OPEN or ""
program_state             enum   -       no        :data:`PROGRAM_STATES`
step_name                 text   -       no        segment name (standard_bag) or
                                                   "segment N"
step_number               int    -       no        same as segment
runtime_s                 float  s       no        since start_program
========================  =====  ======  ========  =====================================

"idle": only while no program runs (DeviceBusyError otherwise).

=============================================  ======  ===================================
method(args)                                   returns notes
=============================================  ======  ===================================
load_profile(name)                             []      "standard_bag"; idle only
set_segment(index, rate, target, hold_min)     [n]     writes the *draft* (not the loaded
                                                       profile): 1-based; index <= n + 1;
                                                       writing segment k ends the draft
                                                       at k; rate |r| <= 50 °C/min (0:
                                                       step), target [-100, 40] °C, hold
                                                       [0, 600] min; returns the draft's
                                                       count; idle only
commit_profile(count)                          []      loads the draft as "custom" if it
                                                       holds exactly ``count`` segments
                                                       (out of range otherwise); idle only
start_program()                                []      busy if running or door open
stop_program()                                 []      running -> stopped
abort()                                        []      running -> aborted
open_door() / close_door()                     []      the operator; opening aborts a run
load_bag(volume_ml, temperature_c)             []      [10, 250] mL, [-196, 40] °C; idle
=============================================  ======  ===================================

A custom profile is defined atomically: segments go into a draft that nothing
runs, and ``commit_profile`` swaps the whole draft in at once. A definition
that fails part way (a refused segment, a lost link) leaves the loaded profile
as it was, complete, never a truncated one.

Python attributes for tests and reports: ``supercooling_c``, ``nucleation_time``,
``nucleation_temperature_c``, ``event_end_time`` (process times, None until seen).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence

from flexctl.clock import Clock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.bag_thermal import BagThermal
from simulators.models.base import UnknownTagError
from simulators.models.freezer_profile import (
    BUILT_IN,
    MAX_SEGMENTS,
    PROFILE_NAMES,
    TARGET_LIMITS_C,
    Planned,
    Schedule,
    Segment,
)
from simulators.models.grid import FixedGrid
from simulators.models.program import (
    COMMON_TAGS,
    PROGRAM_STATES,
    STATUSES,
    ProgramRun,
    ProgramState,
    arity,
    integer,
    number,
    text,
)

__all__ = ["PROFILE_NAMES", "PROGRAM_STATES", "STATUSES", "FreezerModel"]

DT_S = 1.0
CHAMBER_TAU_S = 20.0
DOOR_TAU_S = 60.0  # open door: room air pulls the chamber towards ROOM_C
ROOM_C = 20.0
STANDBY_C = 4.0  # chamber pre-cooled to the first hold (domain.md 1.4 step 1)
BAG_TAU_50ML_S = 240.0  # [A] a 50 mL bag follows the chamber with about 4 min lag
SUPERCOOLING_C = (5.0, 15.0)  # domain.md 1.4
EVENT_END_ICE = 0.8
RATE_BAND = 0.5  # domain.md 1.4: ±0.5 °C/min
SETTLE_S = 300.0
RATE_WINDOW_S = 60.0
FILL_LIMITS_ML = (10.0, 250.0)
LOAD_TEMPERATURE_LIMITS_C = (-196.0, 40.0)
DEFAULT_FILL_ML = 50.0
SAMPLE_NOISE_C = 0.02
CHAMBER_NOISE_C = 0.05

TAGS = frozenset(
    {
        "chamber_temperature",
        "chamber_sp",
        "sample_temperature",
        "sample_rate",
        "door_closed",
        "segment",
        "segment_count",
        "profile_name",
        "fill_volume_ml",
        *COMMON_TAGS,
    }
)
METHODS = frozenset(
    {
        "load_profile",
        "set_segment",
        "commit_profile",
        "start_program",
        "stop_program",
        "abort",
        "open_door",
        "close_door",
        "load_bag",
    }
)


class FreezerModel:
    """Controlled-rate freezer with one bag; see the module docstring."""

    def __init__(self, clock: Clock, seed: int = 0, *, fill_volume_ml: float = 50.0) -> None:
        self._clock = clock
        self._rng = random.Random(seed)  # physics: drawn at program start only
        self._noise = random.Random(seed + 1)  # reported values only
        self._grid = FixedGrid(clock.now(), DT_S)
        self.program = ProgramRun()
        self._profile_name = "standard_bag"
        self._segments: list[Segment] = list(BUILT_IN["standard_bag"])
        self._draft: list[Segment] = []
        self._schedule: Schedule | None = None
        self._run_origin = 0.0
        self._segment = 0
        self._door_closed = True
        self._sp = STANDBY_C
        self._chamber = STANDBY_C
        self._last_change = math.inf  # largest change of the last step; forces stepping
        self.supercooling_c = self._rng.uniform(*SUPERCOOLING_C)
        self._place_bag(number("fill_volume_ml", fill_volume_ml, *FILL_LIMITS_ML), STANDBY_C)

    # -- the bag -------------------------------------------------------------------------

    def _place_bag(self, volume_ml: float, temperature_c: float) -> None:
        self._bag = BagThermal(volume_ml)
        # a frozen bag is loaded in equilibrium; a liquid one has not nucleated
        self._nucleated = temperature_c < self._bag.melting_point_c
        self._enthalpy = self._bag.enthalpy(temperature_c, equilibrium=self._nucleated)
        self._sample = temperature_c
        self._ua = self._bag.liquid_capacity / (BAG_TAU_50ML_S * math.sqrt(volume_ml / 50.0))
        self._history: deque[float] = deque(
            [temperature_c] * int(RATE_WINDOW_S / DT_S + 1), maxlen=int(RATE_WINDOW_S / DT_S + 1)
        )
        self.nucleation_time: float | None = None
        self.nucleation_temperature_c: float | None = None
        self.event_end_time: float | None = None

    # -- lazy integration ----------------------------------------------------------------

    def _advance(self) -> None:
        self._grid.advance(self._clock.now(), self._step, self._quiescent)

    def _quiescent(self) -> bool:
        # settled far below the sensors' resolution, with no program to follow
        return (
            not self.program.running
            and self._last_change < 1e-9
            and max(self._history) - min(self._history) < 1e-6
        )

    def _step(self, t: float) -> None:
        planned: Planned | None = None
        t_next = t + DT_S
        if self.program.running and self._schedule is not None:
            # the setpoint at the end of the step, so the state at a grid point shows sp(t)
            elapsed = t_next - self._run_origin
            planned = self._schedule.at(elapsed)
            self._sp = planned.setpoint(elapsed)
            if self._segment != planned.number:
                self._segment = planned.number
                self.program.enter_step(planned.name, planned.number)
        # chamber: first-order towards the setpoint, plus room air through an open door
        d_chamber = (self._sp - self._chamber) / CHAMBER_TAU_S
        if not self._door_closed:
            d_chamber += (ROOM_C - self._chamber) / DOOR_TAU_S
        self._chamber += d_chamber * DT_S
        # bag: heat through the wall, enthalpy in J
        before = self._sample
        self._enthalpy += self._ua * (self._chamber - self._sample) * DT_S
        self._sample = self._bag.temperature(self._enthalpy, equilibrium=self._nucleated)
        self._last_change = max(abs(d_chamber * DT_S), abs(self._sample - before))
        self._phase_change(t_next)
        self._history.append(self._sample)
        if planned is not None and self._schedule is not None:
            self._check_rate(planned, t_next - self._run_origin)
            if t_next - self._run_origin >= self._schedule.total_s:
                self.program.finish(t_next, ProgramState.COMPLETE)

    def _phase_change(self, t: float) -> None:
        tm = self._bag.melting_point_c
        if not self._nucleated and self._sample <= tm - self.supercooling_c:
            # adiabatic nucleation: same enthalpy, now ice + solution in equilibrium
            self._nucleated = True
            self.nucleation_time = t
            self.nucleation_temperature_c = self._sample
            self.event_end_time = None
            self._sample = self._bag.temperature(self._enthalpy, equilibrium=True)
        elif self._nucleated and self._enthalpy >= 0.0:
            self._nucleated = False  # all ice melted: it may supercool again
        if (
            self._nucleated
            and self.nucleation_time is not None
            and self.event_end_time is None
            and self._bag.ice_fraction(self._sample) >= EVENT_END_ICE
        ):
            self.event_end_time = t

    def _in_event(self) -> bool:
        return self.nucleation_time is not None and self.event_end_time is None

    def _rate_c_per_min(self) -> float:
        span_s = (len(self._history) - 1) * DT_S
        return (self._history[-1] - self._history[0]) / span_s * 60.0

    def _check_rate(self, planned: Planned, elapsed_s: float) -> None:
        expected = planned.expected_sample_rate
        if (
            expected is not None
            and planned.ramping(elapsed_s)
            and elapsed_s - planned.start_s >= SETTLE_S
            and not self._in_event()
            and abs(self._rate_c_per_min() - expected) > RATE_BAND
        ):
            self.program.raise_alarm("RATE_DEVIATION")

    # -- TwinModel -----------------------------------------------------------------------

    def tags(self) -> frozenset[str]:
        return TAGS

    def methods(self) -> frozenset[str]:
        return METHODS

    def read(self, tag: str) -> Value:
        self._advance()
        match tag:
            case "chamber_temperature":
                return round(self._chamber + self._noise.gauss(0.0, CHAMBER_NOISE_C), 3)
            case "chamber_sp":
                return round(self._sp, 3)
            case "sample_temperature":
                return round(self._sample + self._noise.gauss(0.0, SAMPLE_NOISE_C), 3)
            case "sample_rate":
                return round(self._rate_c_per_min(), 3)
            case "door_closed":
                return self._door_closed
            case "segment":
                return self._segment
            case "segment_count":
                return len(self._segments)
            case "profile_name":
                return self._profile_name
            case "fill_volume_ml":
                return self._bag.volume_ml
        if tag in COMMON_TAGS:
            return self.program.read(tag, self._clock.now())
        raise UnknownTagError(f"freezer has no tag {tag!r}")

    def write(self, tag: str, value: Value) -> None:
        self._advance()
        if tag == "chamber_sp":
            setpoint = number(tag, value, *TARGET_LIMITS_C)
            self._idle_only("write chamber_sp")
            self._sp = setpoint
            self._last_change = math.inf
            return
        if tag in TAGS:
            raise OutOfRangeError(f"{tag} is read-only")
        raise UnknownTagError(f"freezer has no tag {tag!r}")

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        self._advance()
        match method:
            case "load_profile":
                arity(method, args, 1)
                self.load_profile(text("name", args[0], tuple(BUILT_IN)))
                return []
            case "set_segment":
                arity(method, args, 4)
                count = self.set_segment(
                    integer("index", args[0], 1, MAX_SEGMENTS),
                    number("rate", args[1], -1e9, 1e9),
                    number("target", args[2], -1e9, 1e9),
                    number("hold_min", args[3], -1e9, 1e9),
                )
                return [count]
            case "commit_profile":
                arity(method, args, 1)
                self.commit_profile(integer("count", args[0], 1, MAX_SEGMENTS))
                return []
            case "load_bag":
                arity(method, args, 2)
                self.load_bag(
                    number("volume_ml", args[0], *FILL_LIMITS_ML),
                    number("temperature_c", args[1], *LOAD_TEMPERATURE_LIMITS_C),
                )
                return []
            case "start_program" | "stop_program" | "abort" | "open_door" | "close_door":
                arity(method, args, 0)
                getattr(self, method)()
                return []
        raise UnknownTagError(f"freezer has no method {method!r}")

    # -- commands (also callable directly, e.g. by a test playing the operator) ---------------

    def _idle_only(self, what: str) -> None:
        if self.program.running:
            raise DeviceBusyError(f"freezer: cannot {what} while a program runs")

    def load_profile(self, name: str) -> None:
        """Load a built-in profile (``standard_bag``)."""
        self._advance()
        if name not in BUILT_IN:
            raise OutOfRangeError(f"unknown profile {name!r}; built in: {', '.join(BUILT_IN)}")
        self._idle_only("load a profile")
        self._segments = list(BUILT_IN[name])
        self._profile_name = name

    def set_segment(self, index: int, rate: float, target: float, hold_min: float) -> int:
        """Write draft segment ``index`` (1-based) and end the draft there; returns its count."""
        self._advance()
        top = min(len(self._draft) + 1, MAX_SEGMENTS)
        if not 1 <= index <= top:
            raise OutOfRangeError(f"segment index {index} outside [1, {top}]")
        segment = Segment(rate, target, hold_min)  # validates the envelope
        self._idle_only("change the profile")
        self._draft = [*self._draft[: index - 1], segment]
        return len(self._draft)

    def commit_profile(self, count: int) -> None:
        """Load the draft as the "custom" profile, all at once, if it has ``count`` segments."""
        self._advance()
        if not 1 <= count <= MAX_SEGMENTS or count != len(self._draft):
            raise OutOfRangeError(
                f"commit of {count} segments refused: the draft holds {len(self._draft)}; "
                f"the loaded profile ({self._profile_name}, {len(self._segments)} segments) "
                "is unchanged"
            )
        self._idle_only("change the profile")
        self._segments = list(self._draft)
        self._profile_name = "custom"
        self._draft = []

    def start_program(self) -> None:
        """Run the loaded profile from the chamber's present temperature."""
        self._advance()
        self._last_change = math.inf
        self._idle_only("start")
        if not self._door_closed:
            raise DeviceBusyError("freezer: door open, close it before starting")
        self._schedule = Schedule(self._segments, self._chamber)
        # the stochastic event of this run is drawn now, never at read time
        self.supercooling_c = self._rng.uniform(*SUPERCOOLING_C)
        self.nucleation_time = None
        self.nucleation_temperature_c = None
        self.event_end_time = None
        self._run_origin = self._grid.t
        first = self._schedule.segments[0]
        self._segment = first.number
        self.program.start(self._clock.now(), first.name, first.number)

    def stop_program(self) -> None:
        """Stop a run; the chamber holds its present setpoint."""
        self._advance()
        self._last_change = math.inf
        if self.program.running:
            self.program.finish(self._clock.now(), ProgramState.STOPPED)

    def abort(self) -> None:
        """Abort a run; the chamber holds its present setpoint."""
        self._advance()
        self._last_change = math.inf
        if self.program.running:
            self.program.finish(self._clock.now(), ProgramState.ABORTED)

    def open_door(self) -> None:
        """The operator opens the door; a running program aborts with ``DOOR_OPEN``."""
        self._advance()
        self._last_change = math.inf
        self._door_closed = False
        if self.program.running:
            self.program.raise_alarm("DOOR_OPEN")
            self.program.finish(self._clock.now(), ProgramState.ABORTED)

    def close_door(self) -> None:
        self._advance()
        self._last_change = math.inf
        self._door_closed = True

    def load_bag(self, volume_ml: float, temperature_c: float) -> None:
        """Place a new bag (``volume_ml`` at ``temperature_c``) in the chamber."""
        self._advance()
        self._last_change = math.inf
        volume = number("volume_ml", volume_ml, *FILL_LIMITS_ML)
        temperature = number("temperature_c", temperature_c, *LOAD_TEMPERATURE_LIMITS_C)
        self._idle_only("load a bag")
        self._place_bag(volume, temperature)
