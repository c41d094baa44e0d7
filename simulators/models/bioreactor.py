"""Rocking-bag bioreactor twin (Xuri W25 class): setpoints, commands and tags.

The culture itself (growth, metabolism, O2 transfer, pH) lives in
:mod:`simulators.models.bioreactor_kinetics`; this module is the device around
it. State is computed lazily from ``clock.now()`` on every read, write and call,
on a fixed 60 s grid counted from the model's creation: a read at any time
reports the state at the last grid point, and a write or command takes effect
there. Reading every second or every hour therefore gives the same trajectory.
Noise (from ``random.Random(seed)``) is added only to reported values; sample
counts draw from a second generator, so polling does not change them.

The rocker motor is the one thing faster than the grid: it slews to a new rate
at 2 rpm/s and to a new angle at 1 deg/s [A] (0 to 15 rpm in 7.5 s) from the
moment of the command, so a wait for the rocker's speed waits for something.
Its position is a closed form of the command times, so reading it changes
nothing; the kinetics use the setpoints while it rocks (a ramp of seconds is
far below the 60 s grid). The perfusion pumps reach their rate at once.

Tags (profile signal names equal these names; limits are the envelope, [V] domain.md 1.1):

=================  ======  ======  ========  ===========================================
name               type    unit    writable  limits / meaning
=================  ======  ======  ========  ===========================================
temperature        float   degC    no        culture (tray when empty), sd 0.02
temperature_sp     float   degC    yes       30..39, default 37
do                 float   %       no        DO, % air saturation, sd 0.5; 0 when empty
ph                 float   pH      no        sd 0.01; 0 when empty (dry sensor spot)
co2                float   %       no        headspace CO2, sd 0.02
co2_sp             float   %       yes       0..10, default 5
rock_rate          float   rpm     no        actual: slews to rock_rate_sp (2 rpm/s)
                                             while rocking, to 0 when stopped
rock_rate_sp       float   rpm     yes       2..40, default 15
rock_angle         float   deg     no        actual: slews to rock_angle_sp (1 deg/s)
                                             while rocking, to 0 when stopped
rock_angle_sp      float   deg     yes       2..12, default 6
rocking            bool            no        the rocker runs
perfusing          bool            no        the perfusion pumps run
weight             float   g       no        bag content on the load cell, sd 0.3
volume             float   mL      no        weight / 1.007 g/mL
perfusion_rate     float   mL/day  no        actual: perfusion_rate_sp while perfusing
perfusion_rate_sp  float   mL/day  yes       0..2000
glucose            float   g/L     no        2 % CV; 0 when empty
lactate            float   g/L     no        2 % CV
ammonia            float   mM      no        3 % CV
sample_vcd         float   1/mL    no        viable cells/mL of the last sample (0: none)
sample_viability   float   %       no        viability of the last sample (0: none)
culture_day        float   d       no        days since seeding; 0 when empty
status             enum            no        idle | busy | warn | error
alarm              string          no        active alarms, comma-separated; "" if none
program_state      enum            no        stopped | running | complete | aborted
step_name          string          no        "batch", "perfusion", "harvest" ("" before)
step_number        int             no        1, 2, 3 (0 before the first seed)
runtime_s          float   s       no        since seeding, frozen at harvest or abort
harvest_count      int             no        harvests since power-on (0: none yet)
harvest_cells      float   cells   no        viable cells drained by the last harvest
harvest_volume_ml  float   mL      no        volume drained by the last harvest
harvest_viability  float   %       no        viability of the last harvest
=================  ======  ======  ========  ===========================================

The culture is the device's program, shaped like an OPC UA LADS ActiveProgram
(:mod:`simulators.models.program`, domain.md 3.3): ``running`` from seeding, in
step 1 "batch", step 2 "perfusion" while the pumps run; ``complete`` (step 3
"harvest") once harvested; ``aborted`` after ``abort()``, and an aborted
culture stays aborted when it is drained. The state lives here, in the device,
so any client (a restarted supervisor) reads the same. The ``harvest_*`` tags
keep the last product's figures until the next harvest, so a harvest whose
reply was lost on the wire can still be read back.

``perfusing`` is a tag beyond the issue's list: with ``rocking`` it tells a
driver which pumps run, since ``perfusion_rate_sp`` may be 0 while they do.

``status``: idle with an empty bag, busy while a culture is in it, warn when a
warning alarm is active, error when DO_CRITICAL is. Alarms, in this order:
OVERFILL (volume above the working maximum), TEMP_DEVIATION (more than 1 °C off
setpoint for longer than 3 temperature time constants: a setpoint step, the
room-temperature inoculum or one cold feed does not raise it, repeated cold
boluses do), DO_CRITICAL (< 5 %) or DO_LOW (< 20 %), PH_LOW
(< 6.8) or PH_HIGH (> 7.6); DO and pH alarms only with a culture in the bag [A].

Methods (each returns a list):

==================================  =======================================================
seed(viable_cells, volume_ml,       inoculate the empty bag with activated cells (busy if
     viability_pct)                 not empty); volume within the working range, viability
                                    1..100 %; the growth lag counts from here
start_rocking() / stop_rocking()    start (busy if already rocking) / stop (no-op if stopped)
start_perfusion(rate_ml_per_day)    0..2000; busy if already perfusing or the bag holds
                                    less than the working minimum
stop_perfusion()                    no-op if stopped
feed(volume_ml)                     fresh medium bolus (22 °C); busy if empty; refused if
                                    the bag would hold more than its nominal volume
sample(volume_ml)                   0.1..50 mL -> [viable cells/mL, viability %], 5 % CV
                                    (sd 1 point); busy if empty, refused unless culture
                                    is left in the bag (draining it is a harvest)
harvest()                           drain -> [viable cells, volume mL, viability %], true
                                    values (the product handed on, also kept in the
                                    harvest_* tags); busy while rocking or perfusing, or
                                    if empty (the message says if it was harvested)
abort()                             stop perfusion and rocking, keep temperature and CO2
                                    control, mark a running culture aborted; always
                                    accepted (idempotent)
==================================  =======================================================

Working volume is 15-50 % of the bag (0.3-1 L in a 2 L bag, domain.md 1.1);
``bag_volume_ml`` may be 2000..25000. Out-of-envelope values raise
:class:`~flexctl.errors.OutOfRangeError`, commands that conflict with the state
:class:`~flexctl.errors.DeviceBusyError`, unknown names
:class:`~simulators.models.base.UnknownTagError`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError
from simulators.models.bioreactor_kinetics import (
    Culture,
    Drive,
    KineticParams,
    integrate,
    kla_per_h,
    ph,
    temperature_tau_h,
)
from simulators.models.program import COMMON_TAGS, ProgramRun, ProgramState

STEP_S = 60.0  # integration grid, process seconds
MEDIUM_DENSITY_G_PER_ML = 1.007  # culture medium at 37 °C [A]
BAG_LIMITS_ML = (2000.0, 25000.0)
WORKING_FRACTION = (0.15, 0.5)  # 0.3-1 L in a 2 L bag (domain.md 1.1)

TEMPERATURE_SP_LIMITS = (30.0, 39.0)
CO2_SP_LIMITS = (0.0, 10.0)
ROCK_RATE_LIMITS = (2.0, 40.0)  # [V] domain.md 1.1
ROCK_ANGLE_LIMITS = (2.0, 12.0)  # [V] domain.md 1.1
PERFUSION_LIMITS = (0.0, 2000.0)
SAMPLE_LIMITS = (0.1, 50.0)
VIABILITY_LIMITS = (1.0, 100.0)
MAX_SEED_DENSITY_PER_ML = 1e8

DO_LOW_PCT = 20.0  # [A]
DO_CRITICAL_PCT = 5.0  # below the growth Monod constant: cells starve of O2 [A]
PH_LOW = 6.8  # below the 7.0-7.4 working range (domain.md 1.1) [A]
PH_HIGH = 7.6
TEMP_DEVIATION_TAUS = 3.0
COUNTER_CV = 0.05  # a cell counter's ~5 % CV
VIABILITY_SD_PCT = 1.0
ROCK_RATE_SLEW_RPM_PER_S = 2.0  # the rocker motor's acceleration [A]
ROCK_ANGLE_SLEW_DEG_PER_S = 1.0  # [A]

STEP_BATCH = ("batch", 1)
STEP_PERFUSION = ("perfusion", 2)
STEP_HARVEST = ("harvest", 3)

_SETPOINTS: dict[str, tuple[float, float]] = {
    "temperature_sp": TEMPERATURE_SP_LIMITS,
    "co2_sp": CO2_SP_LIMITS,
    "rock_rate_sp": ROCK_RATE_LIMITS,
    "rock_angle_sp": ROCK_ANGLE_LIMITS,
    "perfusion_rate_sp": PERFUSION_LIMITS,
}
_READ_ONLY = frozenset(
    {
        "temperature",
        "do",
        "ph",
        "co2",
        "rock_rate",
        "rock_angle",
        "rocking",
        "perfusing",
        "weight",
        "volume",
        "perfusion_rate",
        "glucose",
        "lactate",
        "ammonia",
        "sample_vcd",
        "sample_viability",
        "culture_day",
        "harvest_count",
        "harvest_cells",
        "harvest_volume_ml",
        "harvest_viability",
        *COMMON_TAGS,
    }
)
TAGS = frozenset(_SETPOINTS) | _READ_ONLY
METHODS = frozenset(
    {
        "seed",
        "start_rocking",
        "stop_rocking",
        "start_perfusion",
        "stop_perfusion",
        "feed",
        "sample",
        "harvest",
        "abort",
    }
)
STATUSES = ("idle", "busy", "warn", "error")


class ProcessTime(Protocol):
    """All the model asks of a clock (any :class:`flexctl.clock.Clock` fits)."""

    def now(self) -> float: ...


class Slew:
    """A motor axis moving at a fixed speed towards its target, in closed form."""

    def __init__(self, speed_per_s: float) -> None:
        self.speed = speed_per_s
        self.since = 0.0
        self.origin = 0.0
        self.target = 0.0

    def at(self, now: float) -> float:
        """Where the axis is at ``now`` (it never overshoots its target)."""
        travel = self.speed * max(0.0, now - self.since)
        gap = self.target - self.origin
        if abs(gap) <= travel:
            return self.target
        return self.origin + math.copysign(travel, gap)

    def go(self, now: float, target: float) -> None:
        """Head for ``target`` from wherever the axis is at ``now``."""
        self.origin = self.at(now)
        self.since = now
        self.target = target


class BioreactorModel:
    """Rocking-bag bioreactor twin; see the module docstring for tags and methods."""

    def __init__(
        self,
        clock: ProcessTime,
        seed: int = 0,
        bag_volume_ml: float = 2000.0,
        params: KineticParams | None = None,
    ) -> None:
        low, high = BAG_LIMITS_ML
        if not low <= bag_volume_ml <= high:
            raise OutOfRangeError(f"bag_volume_ml {bag_volume_ml:g} outside [{low:g}, {high:g}]")
        self._clock = clock
        self._rng = random.Random(seed)  # sensor noise
        self._counter_rng = random.Random(f"cell-counter:{seed}")  # sample counts
        self._params = params or KineticParams()
        self.bag_volume_ml = float(bag_volume_ml)
        self.working_volume_ml = (
            WORKING_FRACTION[0] * self.bag_volume_ml,
            WORKING_FRACTION[1] * self.bag_volume_ml,
        )
        self._sp: dict[str, float] = {
            "temperature_sp": 37.0,
            "co2_sp": 5.0,
            "rock_rate_sp": 15.0,  # best for 1 L (domain.md 1.1)
            "rock_angle_sp": 6.0,
            "perfusion_rate_sp": 0.0,
        }
        self._rocking = False
        self._rate_axis = Slew(ROCK_RATE_SLEW_RPM_PER_S)
        self._angle_axis = Slew(ROCK_ANGLE_SLEW_DEG_PER_S)
        self._perfusing = False
        self.program = ProgramRun()
        self.harvest_count = 0
        self._last_harvest: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._sample_vcd = 0.0
        self._sample_viability = 0.0
        self._seeded_at = 0.0  # clock time of seeding
        self._t0 = clock.now()
        self._step = 0  # grid points integrated since _t0
        # the tray is warm and the headspace gassed before a culture arrives
        self._culture = Culture(temperature_c=37.0, co2_pct=5.0)
        self._readers: dict[str, Callable[[], Value]] = {
            "temperature": lambda: round(self._culture.temperature_c + self._noise(0.02), 2),
            "do": self._read_do,
            "ph": self._read_ph,
            "co2": lambda: round(max(0.0, self._culture.co2_pct + self._noise(0.02)), 2),
            "rock_rate": lambda: round(self._rate_axis.at(self._clock.now()), 2),
            "rock_angle": lambda: round(self._angle_axis.at(self._clock.now()), 2),
            "rocking": lambda: self._rocking,
            "perfusing": lambda: self._perfusing,
            "weight": lambda: round(self._weight(), 1),
            "volume": lambda: round(self._weight() / MEDIUM_DENSITY_G_PER_ML, 1),
            "perfusion_rate": self._perfusion_rate,
            "glucose": lambda: self._concentration(self._culture.glucose_g_per_l, 0.02),
            "lactate": lambda: self._concentration(self._culture.lactate_g_per_l, 0.02),
            "ammonia": lambda: self._concentration(self._culture.ammonia_mm, 0.03),
            "sample_vcd": lambda: self._sample_vcd,
            "sample_viability": lambda: self._sample_viability,
            "culture_day": self._culture_day,
            "status": self.status,
            "alarm": lambda: ",".join(self.alarms()),
            "program_state": lambda: self.program.state.value,
            "step_name": lambda: self.program.step_name,
            "step_number": lambda: self.program.step_number,
            "runtime_s": lambda: self.program.read("runtime_s", self._clock.now()),
            "harvest_count": lambda: self.harvest_count,
            "harvest_cells": lambda: self._last_harvest[0],
            "harvest_volume_ml": lambda: self._last_harvest[1],
            "harvest_viability": lambda: self._last_harvest[2],
        }
        self._handlers: dict[str, Callable[[Sequence[Value]], list[Value]]] = {
            "seed": self._seed,
            "start_rocking": self._start_rocking,
            "stop_rocking": self._stop_rocking,
            "start_perfusion": self._start_perfusion,
            "stop_perfusion": self._stop_perfusion,
            "feed": self._feed,
            "sample": self._sample,
            "harvest": self._drain,
            "abort": self._abort,
        }

    # -- TwinModel -------------------------------------------------------------------

    def tags(self) -> frozenset[str]:
        return TAGS

    def methods(self) -> frozenset[str]:
        return METHODS

    def read(self, tag: str) -> Value:
        if tag in _SETPOINTS:
            return self._sp[tag]
        reader = self._readers.get(tag)
        if reader is None:
            raise UnknownTagError(f"bioreactor has no tag {tag!r}")
        self._advance()
        return reader()

    def write(self, tag: str, value: Value) -> None:
        if tag not in _SETPOINTS:
            if tag in TAGS:
                raise OutOfRangeError(f"{tag} is read-only")
            raise UnknownTagError(f"bioreactor has no tag {tag!r}")
        number = _in_range(tag, value, _SETPOINTS[tag])
        self._advance()  # the old setpoint holds up to the grid point of the write
        self._sp[tag] = number
        self._drive_rocker()

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        handler = self._handlers.get(method)
        if handler is None:
            raise UnknownTagError(f"bioreactor has no method {method!r}")
        self._advance()
        return handler(args)

    # -- state -----------------------------------------------------------------------

    @property
    def culture(self) -> Culture:
        """The true state, for tests and benchmarks; a real device has no such view."""
        self._advance()
        return self._culture

    def status(self) -> str:
        """idle, busy, warn or error (frappy-style), from the current alarms."""
        self._advance()
        alarms = self.alarms()
        if "DO_CRITICAL" in alarms:
            return "error"
        if alarms:
            return "warn"
        return "busy" if self._culture.volume_ml > 0 else "idle"

    def alarms(self) -> list[str]:
        """Active alarm names in a fixed order (see the module docstring)."""
        self._advance()
        c = self._culture
        active: list[str] = []
        if c.volume_ml > self.working_volume_ml[1] + 1e-9:
            active.append("OVERFILL")
        if c.temp_off_h > TEMP_DEVIATION_TAUS * temperature_tau_h(c.volume_ml):
            active.append("TEMP_DEVIATION")
        if c.volume_ml > 0:
            if c.do_pct < DO_CRITICAL_PCT:
                active.append("DO_CRITICAL")
            elif c.do_pct < DO_LOW_PCT:
                active.append("DO_LOW")
            culture_ph = ph(c.co2_pct, c.lactate_g_per_l)
            if culture_ph < PH_LOW:
                active.append("PH_LOW")
            elif culture_ph > PH_HIGH:
                active.append("PH_HIGH")
        return active

    def _drive(self) -> Drive:
        rocking = self._rocking
        return Drive(
            temperature_sp_c=self._sp["temperature_sp"],
            co2_sp_pct=self._sp["co2_sp"],
            kla_per_h=kla_per_h(
                self._sp["rock_rate_sp"] if rocking else 0.0,
                self._sp["rock_angle_sp"] if rocking else 0.0,
                self._culture.volume_ml,
                self.bag_volume_ml,
            ),
            perfusion_ml_per_day=self._perfusion_rate(),
        )

    def _advance(self) -> None:
        """Integrate on the fixed grid up to the last grid point at or before now."""
        target = math.floor((self._clock.now() - self._t0) / STEP_S + 1e-9)
        steps = target - self._step
        if steps > 0:
            integrate(self._culture, self._drive(), self._params, steps, STEP_S / 3600.0)
            self._step = target

    def _perfusion_rate(self) -> float:
        return self._sp["perfusion_rate_sp"] if self._perfusing else 0.0

    def _drive_rocker(self) -> None:
        """Send the rocker's axes to the setpoints (rocking) or to rest (stopped)."""
        now = self._clock.now()
        self._rate_axis.go(now, self._sp["rock_rate_sp"] if self._rocking else 0.0)
        self._angle_axis.go(now, self._sp["rock_angle_sp"] if self._rocking else 0.0)

    # -- reported values ---------------------------------------------------------------

    def _noise(self, sd: float) -> float:
        return self._rng.gauss(0.0, sd)

    def _read_do(self) -> float:
        if self._culture.volume_ml <= 0:
            return 0.0
        return round(max(0.0, self._culture.do_pct + self._noise(0.5)), 1)

    def _read_ph(self) -> float:
        c = self._culture
        if c.volume_ml <= 0:
            return 0.0
        return round(ph(c.co2_pct, c.lactate_g_per_l) + self._noise(0.01), 3)

    def _weight(self) -> float:
        volume = self._culture.volume_ml
        if volume <= 0:
            return 0.0
        return max(0.0, volume * MEDIUM_DENSITY_G_PER_ML + self._noise(0.3))

    def _concentration(self, value: float, cv: float) -> float:
        if value <= 0:
            return 0.0
        return round(max(0.0, value * (1.0 + self._noise(cv))), 3)

    def _culture_day(self) -> float:
        if self._culture.volume_ml <= 0:
            return 0.0
        return round((self._clock.now() - self._seeded_at) / 86400.0, 4)

    # -- commands ----------------------------------------------------------------------

    def _seed(self, args: Sequence[Value]) -> list[Value]:
        _arity("seed", args, 3)
        cells = _finite("viable_cells", args[0])
        volume = _in_range("volume_ml", args[1], self.working_volume_ml)
        viability = _in_range("viability_pct", args[2], VIABILITY_LIMITS)
        if not 0 < cells <= MAX_SEED_DENSITY_PER_ML * volume:
            raise OutOfRangeError(
                f"viable_cells {cells:g} must be > 0 and at most "
                f"{MAX_SEED_DENSITY_PER_ML:g}/mL in {volume:g} mL"
            )
        if self._culture.volume_ml > 0:
            raise DeviceBusyError(f"bag is not empty ({self._culture.volume_ml:.1f} mL)")
        self._culture.inoculate(cells, volume, viability)
        self._seeded_at = self._clock.now()
        self._sample_vcd = self._sample_viability = 0.0
        name, number = STEP_PERFUSION if self._perfusing else STEP_BATCH
        self.program.start(self._seeded_at, name, number)
        return []

    def _start_rocking(self, args: Sequence[Value]) -> list[Value]:
        _arity("start_rocking", args, 0)
        if self._rocking:
            raise DeviceBusyError("already rocking")
        self._rocking = True
        self._drive_rocker()
        return []

    def _stop_rocking(self, args: Sequence[Value]) -> list[Value]:
        _arity("stop_rocking", args, 0)
        self._rocking = False
        self._drive_rocker()
        return []

    def _start_perfusion(self, args: Sequence[Value]) -> list[Value]:
        _arity("start_perfusion", args, 1)
        rate = _in_range("rate_ml_per_day", args[0], PERFUSION_LIMITS)
        if self._perfusing:
            raise DeviceBusyError("already perfusing; write perfusion_rate_sp to change the rate")
        minimum = self.working_volume_ml[0]
        if self._culture.volume_ml < minimum:
            raise DeviceBusyError(
                f"perfusion needs at least {minimum:g} mL in the bag "
                f"(has {self._culture.volume_ml:.1f} mL)"
            )
        self._sp["perfusion_rate_sp"] = rate
        self._perfusing = True
        if self.program.running:
            self.program.enter_step(*STEP_PERFUSION)
        return []

    def _stop_perfusion(self, args: Sequence[Value]) -> list[Value]:
        _arity("stop_perfusion", args, 0)
        self._perfusing = False
        if self.program.running:
            self.program.enter_step(*STEP_BATCH)
        return []

    def _feed(self, args: Sequence[Value]) -> list[Value]:
        _arity("feed", args, 1)
        volume = _in_range("volume_ml", args[0], (0.0, self.bag_volume_ml))
        if volume <= 0:
            raise OutOfRangeError("volume_ml must be > 0")
        held = self._culture.volume_ml
        if held <= 0:
            raise DeviceBusyError("bag is empty: seed it first")
        if held + volume > self.bag_volume_ml:
            raise OutOfRangeError(
                f"feed of {volume:g} mL would overfill the {self.bag_volume_ml:g} mL bag "
                f"(holds {held:.1f} mL)"
            )
        self._culture.add_medium(volume)
        return []

    def _sample(self, args: Sequence[Value]) -> list[Value]:
        _arity("sample", args, 1)
        volume = _in_range("volume_ml", args[0], SAMPLE_LIMITS)
        c = self._culture
        if c.volume_ml <= 0:
            raise DeviceBusyError("bag is empty: nothing to sample")
        if volume >= c.volume_ml:
            raise OutOfRangeError(
                f"sample of {volume:g} mL would drain the {c.volume_ml:.1f} mL held: "
                "harvest instead"
            )
        rng = self._counter_rng
        vcd = max(0.0, c.xv_per_ml * (1.0 + rng.gauss(0.0, COUNTER_CV)))
        viability = min(100.0, max(0.0, c.viability_pct + rng.gauss(0.0, VIABILITY_SD_PCT)))
        c.remove(volume)
        self._sample_vcd = round(vcd, -3)
        self._sample_viability = round(viability, 1)
        return [self._sample_vcd, self._sample_viability]

    def _drain(self, args: Sequence[Value]) -> list[Value]:
        _arity("harvest", args, 0)
        c = self._culture
        if c.volume_ml <= 0:
            if self.harvest_count and self.program.state is not ProgramState.STOPPED:
                cells, volume, viability = self._last_harvest
                raise DeviceBusyError(
                    f"bag is empty: already harvested (harvest {self.harvest_count}: "
                    f"{cells:.4g} viable cells in {volume:.1f} mL, {viability:.1f} % viable)"
                )
            raise DeviceBusyError("bag is empty: nothing to harvest")
        if self._rocking or self._perfusing:
            raise DeviceBusyError("stop rocking and perfusion before harvest")
        self._last_harvest = (c.xv_per_ml * c.volume_ml, c.volume_ml, c.viability_pct)
        self.harvest_count += 1
        c.empty()
        if self.program.running:
            self.program.enter_step(*STEP_HARVEST)
            self.program.finish(self._clock.now(), ProgramState.COMPLETE)
        product: list[Value] = [*self._last_harvest]
        return product

    def _abort(self, args: Sequence[Value]) -> list[Value]:
        """Stop every pump and motor at once; the tray and gas stay controlled."""
        _arity("abort", args, 0)
        if self.program.running:
            self.program.finish(self._clock.now(), ProgramState.ABORTED)
        self._perfusing = False
        self._rocking = False
        self._drive_rocker()
        return []


def _arity(method: str, args: Sequence[Value], count: int) -> None:
    if len(args) != count:
        raise OutOfRangeError(f"{method} takes {count} argument(s), got {len(args)}")


def _finite(name: str, value: Value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRangeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise OutOfRangeError(f"{name} must be finite, got {value!r}")
    return number


def _in_range(name: str, value: Value, limits: tuple[float, float]) -> float:
    number = _finite(name, value)
    low, high = limits
    if not low <= number <= high:
        raise OutOfRangeError(f"{name} {number:g} outside [{low:g}, {high:g}]")
    return number
