"""Closed cell processor twin (Sefia S-2000 / Sepax C-Pro class).

Five programs (domain.md 1.2), each a timed list of steps; its outcome is drawn
when it starts and published when it completes (formulation fills its bags one
by one). Every spin loses 0.7-1.3 % of the cells to the supernatant and 0-5 %
of the viability (triangular, mode 1 %; domain.md 1.2 [A]).

Resuspension and dead volume (domain.md 1.2, Cytiva's "tuning intermediate
volumes"): a pellet of ``cells x 0.81 mL / 1e9`` (10 µm cells packed at 65 %)
resuspends in the intermediate volume IV with efficiency
``1 / (1 + (pellet / IV / 0.676) ** 2)``, and the kit dead volume DV (3 mL)
keeps ``DV / (FV + DV)`` of the cells, of which the rinse RV returns
``RV / (RV + DV)``. With the defaults (IV 20 mL, RV 10 mL, FV 20 mL, 2 wash
cycles) culture_harvest recovers about 94 % of 1e9 cells, 93 % of 2e9 and
89 % of 4e9 (domain.md: > 88 % up to 4e9); 10e9 cells recover about 69 %,
and 89 % when IV is raised to :func:`min_intermediate_volume_ml` (52 mL;
domain.md: 68 % rising to > 86 % with optimised IV/RV).

=================  ======  ==================  =====  =============================
program            spins   steps               uses   output
=================  ======  ==================  =====  =============================
isolation          3       prime, load_input,  FV     PBMC: 70 % of the input cells
                           gradient_spin,             are mononuclear, 80 % of those
                           collect_mnc, wash_1,       band at 1.077 g/mL; 60 % of the
                           wash_2, transfer           dead cells are removed [A]
wash               n       prime, load_input,  FV, n  cells in FV
                           wash_1..n, transfer
volume_reduction   1       prime, load_input,  FV     cells in FV (FV < input)
                           concentrate,
                           resuspend, transfer
culture_harvest    1 + n   prime, load_input,  FV, n  cells in FV (the harvest above)
                           concentrate,
                           wash_1..n, resuspend,
                           rinse, transfer
formulation        1       prime, load_input,  B, V   B bags of V mL in cryomedium
                           concentrate,               (dead volume loss, no rinse)
                           add_cryomedium, mix,
                           fill
=================  ======  ==================  =====  =============================

Durations: prime 15 min, load_input at 120 mL/min, gradient spin 20, collect 5,
washes 7-10, concentrate 8-10, resuspend 3, rinse 2, transfer 3-5, cryomedium
5, mix 3, 2 min per bag: 30-90 min per program over the whole envelope
(domain.md 1.2 [A]).

======================  =====  =====  ========  ======================================
tag                     type   unit   writable  limits / meaning
======================  =====  =====  ========  ======================================
input_volume_ml         float  mL     no        the loaded input bag (load)
input_cells             float  cells  no
input_viability         float  %      no
input_loaded            bool   -      no        an unprocessed input is connected
output_volume_ml        float  mL     no        published at completion
output_cells            float  cells  no
output_viability        float  %      no
recovery_pct            float  %      no        output / input cells of the last run
bags_filled             int    -      no        formulation: counts up while filling
program                 enum   -      no        :data:`PROGRAMS`
intermediate_volume_ml  float  mL     idle      IV [10, 200], default 20
rinse_volume_ml         float  mL     idle      RV [0, 50], default 10
status                  enum   -      no        :data:`STATUSES`
alarm                   text   -      no        always "" (no alarms modelled)
program_state           enum   -      no        :data:`PROGRAM_STATES`
step_name               text   -      no        see the program table
step_number             int    -      no        1-based
runtime_s               float  s      no        since start_program
======================  =====  =====  ========  ======================================

=====================================================  ==========  =======================
method(args)                                           returns     notes
=====================================================  ==========  =======================
load(volume_ml, cells, viability_pct)                  []          [30, 3000] mL, [0, 1e12]
                                                                   cells, [0, 100] %; idle
start_program(program, final_volume_ml, cycles,        []          1-5 args; unused ones
              bag_count, bag_volume_ml)                            ignored, missing ones
                                                                   default to 20 mL, 2, 1,
                                                                   50 mL. FV [10, 1000],
                                                                   n [1, 4], B [1, 8],
                                                                   V [10, 250] mL, B x V
                                                                   <= 1000 mL. Busy if
                                                                   running or no input.
abort()                                                []          running -> aborted
unload()                                               [cells,     the output; clears
                                                       mL, %]      input and output; idle
=====================================================  ==========  =======================
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from flexctl.clock import Clock
from flexctl.errors import DeviceBusyError, OutOfRangeError
from flexctl.profile import Value
from simulators.models.base import UnknownTagError
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

__all__ = [
    "PROGRAMS",
    "PROGRAM_STATES",
    "STATUSES",
    "CellProcessorModel",
    "RunResult",
    "min_intermediate_volume_ml",
]

PROGRAMS: tuple[str, ...] = (
    "none",
    "isolation",
    "wash",
    "volume_reduction",
    "culture_harvest",
    "formulation",
)

INPUT_LIMITS_ML = (30.0, 3000.0)  # domain.md 1.2: about 30 mL-3 L
CELL_LIMITS = (0.0, 1e12)
VIABILITY_LIMITS = (0.0, 100.0)
FINAL_VOLUME_LIMITS_ML = (10.0, 1000.0)  # domain.md 1.2: final volume down to about 10 mL
CYCLE_LIMITS = (1, 4)
BAG_COUNT_LIMITS = (1, 8)
BAG_VOLUME_LIMITS_ML = (10.0, 250.0)
FORMULATION_MAX_ML = 1000.0
IV_LIMITS_ML = (10.0, 200.0)
RV_LIMITS_ML = (0.0, 50.0)
DEFAULT_FV_ML = 20.0  # domain.md 1.2: FV 20 mL reference
DEFAULT_CYCLES = 2
DEFAULT_BAG_COUNT = 1
DEFAULT_BAG_VOLUME_ML = 50.0
DEFAULT_IV_ML = 20.0
DEFAULT_RV_ML = 10.0
DEAD_VOLUME_ML = 3.0  # [A] kit dead volume, the main cause of cell loss (domain.md 1.2)

CELL_DIAMETER_UM = 10.0  # activated T cell [A]
PACKING = 0.65  # pellet packing fraction [A]
RESUSPENSION_R0 = 0.676  # pellet/IV ratio at which half the pellet stays behind (fitted)
SPIN_CELL_LOSS = (0.007, 0.013)
SPIN_VIABILITY_LOSS = (0.0, 0.05, 0.01)  # low, high, mode
MNC_FRACTION = 0.70  # [A] mononuclear share of apheresis nucleated cells
GRADIENT_RECOVERY = 0.80  # [A] MNC banding at 1.077 g/mL
DEAD_CELL_REMOVAL = 0.60  # [A] dead cells pellet through the gradient

LOAD_FLOW_ML_PER_MIN = 120.0
MIN_S = 60.0
FILL_S_PER_BAG = 2 * MIN_S

TAGS = frozenset(
    {
        "input_volume_ml",
        "input_cells",
        "input_viability",
        "input_loaded",
        "output_volume_ml",
        "output_cells",
        "output_viability",
        "recovery_pct",
        "bags_filled",
        "program",
        "intermediate_volume_ml",
        "rinse_volume_ml",
        *COMMON_TAGS,
    }
)
METHODS = frozenset({"load", "start_program", "abort", "unload"})


def pellet_volume_ml(cells: float, diameter_um: float = CELL_DIAMETER_UM) -> float:
    """Packed pellet of ``cells`` spheres of ``diameter_um``."""
    cell_ml = math.pi / 6.0 * (diameter_um * 1e-4) ** 3  # µm -> cm, 1 cm^3 = 1 mL
    return cells * cell_ml / PACKING


def resuspension_efficiency(pellet_ml: float, volume_ml: float) -> float:
    """Share of a pellet that resuspends in ``volume_ml`` (large pellets lose more)."""
    return 1.0 / (1.0 + (pellet_ml / volume_ml / RESUSPENSION_R0) ** 2)


def min_intermediate_volume_ml(cells: float, diameter_um: float = CELL_DIAMETER_UM) -> float:
    """The IV that resuspends 95 % of the pellet (the "optimised IV" of domain.md 1.2)."""
    ratio = RESUSPENSION_R0 * math.sqrt(1.0 / 0.95 - 1.0)
    return max(IV_LIMITS_ML[0], pellet_volume_ml(cells, diameter_um) / ratio)


def dead_volume_loss(final_ml: float, rinse_ml: float) -> float:
    """Share of the cells left in the kit's dead volume after the rinse."""
    return (
        DEAD_VOLUME_ML / (final_ml + DEAD_VOLUME_ML) * DEAD_VOLUME_ML / (rinse_ml + DEAD_VOLUME_ML)
    )


@dataclass
class RunResult:
    """What one program does to its input, drawn at start (for tests and reports)."""

    program: str
    steps: list[tuple[str, float]]
    output_volume_ml: float
    output_cells: float
    output_viability: float
    spins: int
    cell_loss_per_spin: list[float] = field(default_factory=list)
    viability_loss_per_spin: list[float] = field(default_factory=list)
    pellet_ml: float = 0.0
    resuspension: float = 1.0
    dead_volume_loss: float = 0.0
    bag_count: int = 0
    bag_volume_ml: float = 0.0

    @property
    def duration_s(self) -> float:
        return sum(seconds for _, seconds in self.steps)


class CellProcessorModel:
    """Cell processor with one kit; see the module docstring."""

    def __init__(self, clock: Clock, seed: int = 0) -> None:
        self._clock = clock
        self._rng = random.Random(seed)  # drawn at program start only
        self.program = ProgramRun()
        self._program_name = "none"
        self._iv = DEFAULT_IV_ML
        self._rv = DEFAULT_RV_ML
        self._input = (0.0, 0.0, 0.0)
        self._input_loaded = False
        self._output = (0.0, 0.0, 0.0)
        self._recovery = 0.0
        self._bags_filled = 0
        self.last_result: RunResult | None = None

    # -- lazy state ----------------------------------------------------------------------

    def _advance(self) -> None:
        """Bring the program up to now: step, progress and completion are functions of time."""
        result = self.last_result
        if not self.program.running or result is None:
            return
        elapsed = self._clock.now() - self.program.started_at
        t = 0.0
        for number_, (name, seconds) in enumerate(result.steps, start=1):
            if elapsed < t + seconds:
                self.program.enter_step(name, number_)
                if name == "fill":
                    self._publish(
                        result, min(result.bag_count, int((elapsed - t) // FILL_S_PER_BAG))
                    )
                return
            t += seconds
        self._publish(result, result.bag_count)
        self.program.finish(self.program.started_at + t, ProgramState.COMPLETE)

    def _publish(self, result: RunResult, bags: int) -> None:
        share = 1.0 if result.bag_count == 0 else bags / result.bag_count
        if result.bag_count and bags == 0:
            return
        self._bags_filled = bags
        self._output = (
            result.output_volume_ml * share,
            result.output_cells * share,
            result.output_viability,
        )
        cells_in = self._input[1]
        self._recovery = 0.0 if cells_in <= 0.0 else 100.0 * self._output[1] / cells_in

    # -- TwinModel -----------------------------------------------------------------------

    def tags(self) -> frozenset[str]:
        return TAGS

    def methods(self) -> frozenset[str]:
        return METHODS

    def read(self, tag: str) -> Value:
        self._advance()
        match tag:
            case "input_volume_ml":
                return round(self._input[0], 3)
            case "input_cells":
                return float(round(self._input[1]))
            case "input_viability":
                return round(self._input[2], 3)
            case "input_loaded":
                return self._input_loaded
            case "output_volume_ml":
                return round(self._output[0], 3)
            case "output_cells":
                return float(round(self._output[1]))
            case "output_viability":
                return round(self._output[2], 3)
            case "recovery_pct":
                return round(self._recovery, 3)
            case "bags_filled":
                return self._bags_filled
            case "program":
                return self._program_name
            case "intermediate_volume_ml":
                return self._iv
            case "rinse_volume_ml":
                return self._rv
        if tag in COMMON_TAGS:
            return self.program.read(tag, self._clock.now())
        raise UnknownTagError(f"cell processor has no tag {tag!r}")

    def write(self, tag: str, value: Value) -> None:
        self._advance()
        match tag:
            case "intermediate_volume_ml":
                volume = number(tag, value, *IV_LIMITS_ML)
                self._idle_only(f"write {tag}")
                self._iv = volume
            case "rinse_volume_ml":
                volume = number(tag, value, *RV_LIMITS_ML)
                self._idle_only(f"write {tag}")
                self._rv = volume
            case _:
                if tag in TAGS:
                    raise OutOfRangeError(f"{tag} is read-only")
                raise UnknownTagError(f"cell processor has no tag {tag!r}")

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        self._advance()
        match method:
            case "load":
                arity(method, args, 3)
                self.load(
                    number("volume_ml", args[0], *INPUT_LIMITS_ML),
                    number("cells", args[1], *CELL_LIMITS),
                    number("viability_pct", args[2], *VIABILITY_LIMITS),
                )
                return []
            case "start_program":
                arity(method, args, 1, 5)
                name = text("program", args[0], PROGRAMS[1:])
                defaults: list[Value] = [
                    DEFAULT_FV_ML,
                    DEFAULT_CYCLES,
                    DEFAULT_BAG_COUNT,
                    DEFAULT_BAG_VOLUME_ML,
                ]
                given = [*args[1:], *defaults[len(args) - 1 :]]
                self._start(name, given)
                return []
            case "abort":
                arity(method, args, 0)
                self.abort()
                return []
            case "unload":
                arity(method, args, 0)
                return list(self.unload())
        raise UnknownTagError(f"cell processor has no method {method!r}")

    # -- commands ------------------------------------------------------------------------

    def _idle_only(self, what: str) -> None:
        if self.program.running:
            raise DeviceBusyError(f"cell processor: cannot {what} while a program runs")

    def load(self, volume_ml: float, cells: float, viability_pct: float) -> None:
        """Connect an input bag (in simulation: what the previous device produced)."""
        self._advance()
        volume = number("volume_ml", volume_ml, *INPUT_LIMITS_ML)
        count = number("cells", cells, *CELL_LIMITS)
        viability = number("viability_pct", viability_pct, *VIABILITY_LIMITS)
        self._idle_only("load an input")
        self._input = (volume, count, viability)
        self._input_loaded = True

    def start_program(
        self,
        program: str,
        final_volume_ml: float = DEFAULT_FV_ML,
        cycles: int = DEFAULT_CYCLES,
        bag_count: int = DEFAULT_BAG_COUNT,
        bag_volume_ml: float = DEFAULT_BAG_VOLUME_ML,
    ) -> None:
        """Run ``program`` on the loaded input (arguments a program does not use are ignored)."""
        self._advance()
        self._start(
            text("program", program, PROGRAMS[1:]),
            [final_volume_ml, cycles, bag_count, bag_volume_ml],
        )

    def abort(self) -> None:
        """Abort a run; the cells stay in the kit (no output)."""
        self._advance()
        if self.program.running:
            self.program.finish(self._clock.now(), ProgramState.ABORTED)

    def unload(self) -> tuple[float, float, float]:
        """Disconnect the bags; returns the output (cells, mL, viability %)."""
        self._advance()
        self._idle_only("unload")
        volume, cells, viability = self._output
        self._output = (0.0, 0.0, 0.0)
        self._input = (0.0, 0.0, 0.0)
        self._input_loaded = False
        self._bags_filled = 0
        return (float(round(cells)), round(volume, 3), round(viability, 3))

    # -- programs ------------------------------------------------------------------------

    def _start(self, name: str, args: Sequence[Value]) -> None:
        final_value, cycles_value, count_value, bag_value = args
        volume_in = self._input[0]
        final_ml = 0.0
        cycles = 0
        bag_count = 0
        bag_ml = 0.0
        # validate only what this program uses, before any state changes
        if name != "formulation":
            final_ml = number("final_volume_ml", final_value, *FINAL_VOLUME_LIMITS_ML)
        if name in ("wash", "culture_harvest"):
            cycles = integer("cycles", cycles_value, *CYCLE_LIMITS)
        if name == "formulation":
            bag_count = integer("bag_count", count_value, *BAG_COUNT_LIMITS)
            bag_ml = number("bag_volume_ml", bag_value, *BAG_VOLUME_LIMITS_ML)
            if bag_count * bag_ml > FORMULATION_MAX_ML:
                raise OutOfRangeError(
                    f"formulation of {bag_count} x {bag_ml:g} mL exceeds {FORMULATION_MAX_ML:g} mL"
                )
        self._idle_only("start")
        if not self._input_loaded:
            raise DeviceBusyError("cell processor: no input bag loaded")
        if name == "volume_reduction" and final_ml >= volume_in:
            raise OutOfRangeError(
                f"volume_reduction final volume {final_ml:g} mL must be below the input "
                f"{volume_in:g} mL"
            )
        result = self._plan(name, final_ml, cycles, bag_count, bag_ml)
        self.last_result = result
        self._program_name = name
        self._input_loaded = False  # the input bag is drawn into the kit
        self._output = (0.0, 0.0, 0.0)
        self._recovery = 0.0
        self._bags_filled = 0
        self.program.start(self._clock.now(), result.steps[0][0], 1)

    def _spins(self, result: RunResult, cells: float, viability: float) -> tuple[float, float]:
        """Apply ``result.spins`` spins: supernatant cell loss and viability loss."""
        for _ in range(result.spins):
            cell_loss = self._rng.uniform(*SPIN_CELL_LOSS)
            low, high, mode = SPIN_VIABILITY_LOSS
            viability_loss = self._rng.triangular(low, high, mode)
            result.cell_loss_per_spin.append(cell_loss)
            result.viability_loss_per_spin.append(viability_loss)
            cells *= 1.0 - cell_loss
            viability *= 1.0 - viability_loss
        return cells, viability

    def _plan(
        self, name: str, final_ml: float, cycles: int, bag_count: int, bag_ml: float
    ) -> RunResult:
        """Steps and outcome of one run (every random draw of the run happens here)."""
        volume_in, cells, viability = self._input
        load_s = volume_in / LOAD_FLOW_ML_PER_MIN * MIN_S
        steps: list[tuple[str, float]] = [("prime", 15 * MIN_S), ("load_input", load_s)]
        spins = 0
        resuspend_in = self._iv
        rinse = self._rv
        if name == "isolation":
            steps += [("gradient_spin", 20 * MIN_S), ("collect_mnc", 5 * MIN_S)]
            steps += [("wash_1", 7 * MIN_S), ("wash_2", 7 * MIN_S), ("transfer", 3 * MIN_S)]
            spins = 3
            # Ficoll 1.077 g/mL: mononuclear cells band, granulocytes and dead cells pellet
            viable = cells * viability / 100.0 * MNC_FRACTION * GRADIENT_RECOVERY
            dead = cells * (1.0 - viability / 100.0) * MNC_FRACTION * (1.0 - DEAD_CELL_REMOVAL)
            cells = viable + dead
            viability = 0.0 if cells <= 0.0 else 100.0 * viable / cells
        elif name == "wash":
            steps += [(f"wash_{i}", 10 * MIN_S) for i in range(1, cycles + 1)]
            steps += [("transfer", 5 * MIN_S)]
            spins = cycles
        elif name == "volume_reduction":
            steps += [("concentrate", 10 * MIN_S), ("resuspend", 3 * MIN_S)]
            steps += [("transfer", 5 * MIN_S)]
            spins = 1
            resuspend_in = final_ml  # no intermediate volume: straight into FV
        elif name == "culture_harvest":
            steps += [("concentrate", 8 * MIN_S)]
            steps += [(f"wash_{i}", 8 * MIN_S) for i in range(1, cycles + 1)]
            steps += [("resuspend", 3 * MIN_S), ("rinse", 2 * MIN_S), ("transfer", 3 * MIN_S)]
            spins = 1 + cycles
        else:  # formulation
            final_ml = bag_count * bag_ml
            steps += [("concentrate", 8 * MIN_S), ("add_cryomedium", 5 * MIN_S)]
            steps += [("mix", 3 * MIN_S), ("fill", bag_count * FILL_S_PER_BAG)]
            spins = 1
            resuspend_in = final_ml / 2.0  # concentrate to half, then 1:1 cryomedium
            rinse = 0.0  # bags are filled from the mix bag: the line is not rinsed
        result = RunResult(
            name, steps, final_ml, 0.0, 0.0, spins, bag_count=bag_count, bag_volume_ml=bag_ml
        )
        pellet = pellet_volume_ml(cells)
        result.pellet_ml = pellet
        result.resuspension = resuspension_efficiency(pellet, resuspend_in)
        result.dead_volume_loss = dead_volume_loss(final_ml, rinse)
        cells, viability = self._spins(result, cells, viability)
        result.output_cells = cells * result.resuspension * (1.0 - result.dead_volume_loss)
        result.output_viability = viability
        return result
