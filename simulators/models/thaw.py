"""Dry-plate thaw device twin (VIA Thaw class): sample-specific end point.

A bag from storage (LN2 vapour, at most -150 °C) lies on a controlled
aluminium plate (domain.md 1.3). The bag is one enthalpy node
(:mod:`simulators.models.bag_thermal`): sensible warming of the frozen bag,
a melting plateau just below the melting point (-3 °C; latent heat 334 J/g
water), then a fast rise once the ice is gone. The device watches the sample
sensor's slope and sets the end point when the sample rises off the plateau
(above -2.5 °C and warming faster than 1.5 °C/min over 30 s), not after a
preset time. At the end point it stops heating and pulls the plate to a 4 °C
hold (a Peltier plate [A]); the program is complete once the plate is below
10 °C, and the sample stays well under +10 °C. A sample above +10 °C while a
program runs or after it completed raises ``OVERSHOOT`` and aborts the run
(domain.md 1.3: stop before the product warms above about +4-10 °C, to limit
DMSO exposure). ``NO_END_POINT``: none within 60 min (aborts).

Numbers [A], chosen so a 50-100 mL bag from -150 °C reaches the end point in
about 7-10 min (domain.md 1.3: minutes, scaling with fill): plate 150 J/K,
heater 250 W, cooler 100 W, proportional control 30 W/K; bag-plate
conductance 1.1 W/K for 50 mL, growing with the square root of the fill (the
bag is thicker, its contact area larger); standard program plate setpoint
37 °C (as the water bath it replaces). Measured on the twin from -150 °C
(tests/test_model_thaw.py prints them): 25 / 50 / 100 mL reach the end point
at 5.3 / 7.7 / 10.9 min after 1.4 / 2.0 / 2.8 min within -4.5..-2.5 °C, and
peak at about 4 °C.

Fault injection (constructor): ``end_point_delay_s`` delays the end point
after the device would see it; ``math.inf`` disables detection.

====================  =====  ====  ========  ==========================================
tag                   type   unit  writable  limits / meaning
====================  =====  ====  ========  ==========================================
plate_temperature     float  degC  no        the plate
plate_sp              float  degC  no        37 heating, 4 hold; ambient when off
sample_temperature    float  degC  no        bag sensor
end_point_detected    bool   -     no        the slope rose off the plateau
thaw_complete         bool   -     no        end point seen and plate back to hold
bag_loaded            bool   -     no        load_bag / unload_bag
fill_volume_ml        float  mL    no        of the loaded bag (0 when none)
status                enum   -     no        :data:`STATUSES`
alarm                 text   -     no        OVERSHOOT, NO_END_POINT or ""
program_state         enum   -     no        :data:`PROGRAM_STATES`
step_name             text   -     no        :data:`STEP_NAMES`
step_number           int    -     no        1-3 (0 before the first start)
runtime_s             float  s     no        since start
====================  =====  ====  ========  ==========================================

==========================================  =======  ==================================
method(args)                                returns  notes
==========================================  =======  ==================================
load_bag(volume_ml, start_temperature_c)    []       [5, 250] mL, [-196, 25] °C; idle
unload_bag()                                [T]      the sample temperature; idle
start(program)                              []       :data:`PROGRAMS`; busy if running
                                                     or no bag; other names: out of range
stop()                                      []       running -> stopped, plate to hold
abort()                                     []       running -> aborted, plate to hold
==========================================  =======  ==================================
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
from simulators.models.grid import FixedGrid
from simulators.models.program import (
    COMMON_TAGS,
    PROGRAM_STATES,
    STATUSES,
    ProgramRun,
    ProgramState,
    arity,
    number,
    text,
)

__all__ = ["PROGRAMS", "PROGRAM_STATES", "STATUSES", "STEP_NAMES", "ThawModel"]

PROGRAMS: tuple[str, ...] = ("standard",)
STEP_NAMES: tuple[str, ...] = ("warming", "melting", "cool_down")

DT_S = 1.0
AMBIENT_C = 22.0
PLATE_CAPACITY = 150.0  # J/K
PLATE_LOSS = 0.3  # W/K to the room
HEATER_W = 250.0
COOLER_W = 100.0
GAIN_W_PER_K = 30.0
HEAT_SP_C = 37.0
HOLD_SP_C = 4.0
BAG_UA_50ML = 1.1  # W/K
PLATEAU_ENTRY_BELOW_TM = 2.0  # step "melting" once the sample is within 2 °C of Tm
END_POINT_ABOVE_TM = 0.5
END_POINT_SLOPE = 1.5  # °C/min
SLOPE_WINDOW_S = 30.0
COMPLETE_PLATE_C = 10.0
OVERSHOOT_C = 10.0  # domain.md 1.3: +4-10 °C
MAX_RUN_S = 3600.0
FILL_LIMITS_ML = (5.0, 250.0)
START_LIMITS_C = (-196.0, 25.0)
SAMPLE_NOISE_C = 0.02
PLATE_NOISE_C = 0.05

TAGS = frozenset(
    {
        "plate_temperature",
        "plate_sp",
        "sample_temperature",
        "end_point_detected",
        "thaw_complete",
        "bag_loaded",
        "fill_volume_ml",
        *COMMON_TAGS,
    }
)
METHODS = frozenset({"load_bag", "unload_bag", "start", "stop", "abort"})


class ThawModel:
    """Dry thaw plate with one bag; see the module docstring."""

    def __init__(self, clock: Clock, seed: int = 0, *, end_point_delay_s: float = 0.0) -> None:
        if not end_point_delay_s >= 0.0:
            raise OutOfRangeError(f"end_point_delay_s must be >= 0, got {end_point_delay_s!r}")
        self._clock = clock
        self._noise = random.Random(seed)  # reported values only; the physics is deterministic
        self._grid = FixedGrid(clock.now(), DT_S)
        self.program = ProgramRun()
        self.end_point_delay_s = end_point_delay_s
        self._plate = AMBIENT_C
        self._mode = "off"  # off | heat | hold
        self._bag: BagThermal | None = None
        self._enthalpy = 0.0
        self._sample = AMBIENT_C
        self._ua = 0.0
        self._history: deque[float] = deque(maxlen=int(SLOPE_WINDOW_S / DT_S) + 1)
        self._run_origin = 0.0
        self._seen_at: float | None = None
        self.end_point_time: float | None = None
        self._end_point = False
        self._complete = False
        self._last_change = 0.0  # largest change in the last step; 0: nothing moves
        self._watching = False  # the program watches the bag it thawed, until it leaves

    # -- lazy integration ----------------------------------------------------------------

    def _advance(self) -> None:
        self._grid.advance(self._clock.now(), self._step, self._quiescent)

    def _plate_sp(self) -> float:
        return {"heat": HEAT_SP_C, "hold": HOLD_SP_C}.get(self._mode, AMBIENT_C)

    def _quiescent(self) -> bool:
        # settled to well below the sensor's resolution and no program watching
        return not self.program.running and self._last_change < 1e-9

    def _step(self, t: float) -> None:
        before = (self._plate, self._sample)
        flow = 0.0
        if self._bag is not None:
            flow = self._ua * (self._plate - self._sample)  # W into the bag
        power = 0.0
        if self._mode != "off":
            power = min(HEATER_W, max(-COOLER_W, GAIN_W_PER_K * (self._plate_sp() - self._plate)))
        self._plate += (
            (power - flow - PLATE_LOSS * (self._plate - AMBIENT_C)) / PLATE_CAPACITY * DT_S
        )
        if self._bag is not None:
            self._enthalpy += flow * DT_S
            self._sample = self._bag.temperature(self._enthalpy, equilibrium=True)
            self._history.append(self._sample)
        self._last_change = max(abs(self._plate - before[0]), abs(self._sample - before[1]))
        if self._watching and self.program.state in (ProgramState.RUNNING, ProgramState.COMPLETE):
            self._watch(t + DT_S)

    def _slope_c_per_min(self) -> float:
        if len(self._history) < 2:
            return 0.0
        return (self._history[-1] - self._history[0]) / ((len(self._history) - 1) * DT_S) * 60.0

    def _watch(self, t: float) -> None:
        """What the device's program does with the sample sensor at grid time ``t``."""
        if self._sample > OVERSHOOT_C:
            self.program.raise_alarm("OVERSHOOT")
            self._mode = "hold"
            if self.program.running:
                self.program.finish(t, ProgramState.ABORTED)
            return
        if not self.program.running or self._bag is None:
            return
        tm = self._bag.melting_point_c
        if self.program.step_number == 1 and self._sample >= tm - PLATEAU_ENTRY_BELOW_TM:
            self.program.enter_step(STEP_NAMES[1], 2)
        if self.program.step_number == 2 and not self._end_point:
            if (
                self._seen_at is None
                and self._sample >= tm + END_POINT_ABOVE_TM
                and self._slope_c_per_min() >= END_POINT_SLOPE
            ):
                self._seen_at = t
            if self._seen_at is not None and t - self._seen_at >= self.end_point_delay_s:
                self._end_point = True
                self.end_point_time = t
                self._mode = "hold"  # stop heating at the end point
                self.program.enter_step(STEP_NAMES[2], 3)
        if self._end_point and self._plate <= COMPLETE_PLATE_C:
            self._complete = True
            self.program.finish(t, ProgramState.COMPLETE)
        elif t - self._run_origin >= MAX_RUN_S:
            self.program.raise_alarm("NO_END_POINT")
            self._mode = "hold"
            self.program.finish(t, ProgramState.ABORTED)

    # -- TwinModel -----------------------------------------------------------------------

    def tags(self) -> frozenset[str]:
        return TAGS

    def methods(self) -> frozenset[str]:
        return METHODS

    def read(self, tag: str) -> Value:
        self._advance()
        match tag:
            case "plate_temperature":
                return round(self._plate + self._noise.gauss(0.0, PLATE_NOISE_C), 3)
            case "plate_sp":
                return self._plate_sp()
            case "sample_temperature":
                return round(self._sample + self._noise.gauss(0.0, SAMPLE_NOISE_C), 3)
            case "end_point_detected":
                return self._end_point
            case "thaw_complete":
                return self._complete
            case "bag_loaded":
                return self._bag is not None
            case "fill_volume_ml":
                return 0.0 if self._bag is None else self._bag.volume_ml
        if tag in COMMON_TAGS:
            return self.program.read(tag, self._clock.now())
        raise UnknownTagError(f"thaw device has no tag {tag!r}")

    def write(self, tag: str, value: Value) -> None:
        self._advance()
        if tag in TAGS:
            raise OutOfRangeError(f"{tag} is read-only")
        raise UnknownTagError(f"thaw device has no tag {tag!r}")

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        self._advance()
        match method:
            case "load_bag":
                arity(method, args, 2)
                self.load_bag(
                    number("volume_ml", args[0], *FILL_LIMITS_ML),
                    number("start_temperature_c", args[1], *START_LIMITS_C),
                )
                return []
            case "unload_bag":
                arity(method, args, 0)
                return [self.unload_bag()]
            case "start":
                arity(method, args, 1)
                self.start(text("program", args[0], PROGRAMS))
                return []
            case "stop" | "abort":
                arity(method, args, 0)
                getattr(self, method)()
                return []
        raise UnknownTagError(f"thaw device has no method {method!r}")

    # -- commands ------------------------------------------------------------------------

    def _idle_only(self, what: str) -> None:
        if self.program.running:
            raise DeviceBusyError(f"thaw device: cannot {what} while a program runs")

    def load_bag(self, volume_ml: float, start_temperature_c: float) -> None:
        """Place a bag of ``volume_ml`` at ``start_temperature_c`` on the plate."""
        self._advance()
        self._last_change = math.inf
        volume = number("volume_ml", volume_ml, *FILL_LIMITS_ML)
        start_c = number("start_temperature_c", start_temperature_c, *START_LIMITS_C)
        self._idle_only("load a bag")
        self._bag = BagThermal(volume)
        self._enthalpy = self._bag.enthalpy(start_c, equilibrium=True)
        self._sample = start_c
        self._ua = BAG_UA_50ML * math.sqrt(volume / 50.0)
        self._history.clear()
        self._history.append(start_c)
        self._end_point = False
        self._complete = False
        self.end_point_time = None
        self._watching = False

    def unload_bag(self) -> float:
        """Take the bag off the plate; returns its temperature. The plate switches off."""
        self._advance()
        self._last_change = math.inf
        self._idle_only("unload the bag")
        if self._bag is None:
            raise DeviceBusyError("thaw device: no bag loaded")
        temperature = self._sample
        self._bag = None
        self._history.clear()
        self._mode = "off"
        self._watching = False
        return round(temperature, 3)

    def start(self, program: str) -> None:
        """Run ``program`` (only ``standard``) on the loaded bag."""
        self._advance()
        self._last_change = math.inf
        if program not in PROGRAMS:
            raise OutOfRangeError(f"unknown thaw program {program!r}; known: {', '.join(PROGRAMS)}")
        self._idle_only("start")
        if self._bag is None:
            raise DeviceBusyError("thaw device: no bag loaded")
        self._end_point = False
        self._complete = False
        self.end_point_time = None
        self._seen_at = None
        self._watching = True
        self._mode = "heat"
        self._run_origin = self._grid.t
        self.program.start(self._clock.now(), STEP_NAMES[0], 1)

    def stop(self) -> None:
        """Stop heating; the plate holds 4 °C."""
        self._advance()
        self._last_change = math.inf
        if self.program.running:
            self._mode = "hold"
            self.program.finish(self._clock.now(), ProgramState.STOPPED)

    def abort(self) -> None:
        """Abort; the plate holds 4 °C."""
        self._advance()
        self._last_change = math.inf
        if self.program.running:
            self._mode = "hold"
            self.program.finish(self._clock.now(), ProgramState.ABORTED)
