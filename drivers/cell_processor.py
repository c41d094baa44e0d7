"""Closed cell processor (Sefia S-2000 / Sepax C-Pro class), in device terms.

One kit, one input bag, five programs (domain.md 1.2): density-gradient
isolation, wash, volume reduction, culture harvest and formulation. A program
runs 30-90 minutes on the device; the driver starts it, waits in process time
and reads back what it produced::

    await processor.load_input(1000.0, 2e9, 95.0)     # the harvest bag
    result = await processor.culture_harvest(final_volume_ml=20.0)
    output = await processor.unload()

The device has one ``start_program`` command whose argument list is fixed
(program, final volume, cycles, bag count, bag volume), because a profile
binds a command to a fixed argument list on every transport (Modbus argument
registers, a serial send template, OPC UA InputArguments). The driver always
sends all five: it checks the ones the program uses against the envelope and
fills the others with the device's own defaults, which the device ignores.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from drivers.base import CannotTell, Driver, ProgramState, Recovered, SafeAction
from flexctl.errors import OutOfRangeError, ProgramAborted, ProtocolError
from flexctl.profile import Value

# The device envelope of start_program's arguments (domain.md 1.2). They are not
# signals of the device, so they live here rather than in the profile.
FINAL_VOLUME_ML = (10.0, 1000.0)
CYCLES = (1, 4)
BAG_COUNT = (1, 8)
BAG_VOLUME_ML = (10.0, 250.0)
FORMULATION_MAX_ML = 1000.0
# What the device assumes when a program does not use an argument.
DEFAULT_FINAL_VOLUME_ML = 20.0
DEFAULT_CYCLES = 2
DEFAULT_BAG_COUNT = 1
DEFAULT_BAG_VOLUME_ML = 50.0
#: Process seconds a program may take before run_program gives up (programs take 30-90 min).
PROGRAM_WITHIN_S = 2 * 3600.0
#: Process seconds between two looks at a running program.
PROGRAM_POLL_S = 30.0

_INPUT = ("input_volume_ml", "input_cells", "input_viability", "input_loaded")
_UNLOAD = ("cells", "volume_ml", "viability_pct")  # the order the device returns them in
_RESULT = (
    "program",
    "program_state",
    "input_volume_ml",
    "input_cells",
    "input_viability",
    "output_volume_ml",
    "output_cells",
    "output_viability",
    "recovery_pct",
    "bags_filled",
    "runtime_s",
)
#: What recovery reads to tell whether a program was started on the loaded input.
_STARTED = (
    *_INPUT,
    "program",
    "program_state",
    "step_name",
    "runtime_s",
    "output_volume_ml",
    "bags_filled",
)


class ProcessProgram(StrEnum):
    """The programs of the device; the value is what ``start_program`` sends."""

    ISOLATION = "isolation"
    WASH = "wash"
    VOLUME_REDUCTION = "volume_reduction"
    CULTURE_HARVEST = "culture_harvest"
    FORMULATION = "formulation"


@dataclass(frozen=True)
class InputBag:
    """The input bag as the device holds it.

    ``loaded`` is true while it waits unprocessed; once a program starts, the bag
    is drawn into the kit and the figures stay as the reference for recovery.
    """

    volume_ml: float
    cells: float
    viability_pct: float
    loaded: bool


@dataclass(frozen=True)
class ProcessResult:
    """What one program made of its input."""

    program: str
    input_volume_ml: float
    input_cells: float
    input_viability_pct: float
    output_volume_ml: float
    output_cells: float
    output_viability_pct: float
    recovery_pct: float
    bags_filled: int
    runtime_s: float


@dataclass(frozen=True)
class OutputBag:
    """The product handed over at unload."""

    volume_ml: float
    cells: float
    viability_pct: float


def _number(name: str, value: float, limits: tuple[float, float], unit: str) -> float:
    low, high = limits
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OutOfRangeError(
            f"{name}: {value!r} {unit} is outside the device envelope [{low:g}, {high:g}] {unit}"
        )
    return float(value)


def _whole(name: str, value: int, limits: tuple[int, int]) -> int:
    low, high = limits
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or not low <= value <= high:
        raise OutOfRangeError(f"{name}: {value!r} is not a whole number in [{low}, {high}]")
    return value


def _same(seen: float, asked: float) -> bool:
    """A figure read back equals the one sent, up to float32 on the wire and device rounding."""
    return math.isclose(float(seen), float(asked), rel_tol=1e-5, abs_tol=1e-3)


def _float(values: Mapping[str, Value], name: str, device: str) -> float:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(device, f"{name}: expected a number, read {value!r}")
    return float(value)


class CellProcessor(Driver):
    """A closed cell processor; see the module docstring."""

    kind = "cell_processor"
    trends = ("output_cells", "output_viability", "recovery_pct")
    argument_limits: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "load_input": {
            "volume_ml": "input_volume_ml",
            "cells": "input_cells",
            "viability_pct": "input_viability",
        },
        "set_intermediate_volume": {"volume_ml": "intermediate_volume_ml"},
        "set_rinse_volume": {"volume_ml": "rinse_volume_ml"},
    }
    required_signals: ClassVar[tuple[str, ...]] = (
        *_INPUT,
        "output_volume_ml",
        "output_cells",
        "output_viability",
        "recovery_pct",
        "bags_filled",
        "program",
        "intermediate_volume_ml",
        "rinse_volume_ml",
        "status",
        "alarm",
        "program_state",
        "step_name",
        "step_number",
        "runtime_s",
    )
    required_commands: ClassVar[tuple[str, ...]] = ("load", "start_program", "abort", "unload")
    #: Setpoints (IV, RV), the abort (no effect when idle) and reads.
    resendable: ClassVar[frozenset[str]] = frozenset(
        {
            "set_intermediate_volume",
            "set_rinse_volume",
            "abort",
            "input_bag",
            "result",
            "wait_bags_filled",
            "status",
            "alarm",
            "reading",
            "program",
            "wait_program_done",
        }
    )

    # -- the input bag --------------------------------------------------------------

    async def load_input(self, volume_ml: float, cells: float, viability_pct: float) -> None:
        """Connect the input bag: its volume, total nucleated cells and viability.

        On hardware the operator connects the bag and enters (or the device
        measures) these figures; in simulation the supervisor hands over what the
        previous device produced. Outside the device envelope is refused unsent.
        """
        self.check_limits("input_volume_ml", volume_ml)
        self.check_limits("input_cells", cells)
        self.check_limits("input_viability", viability_pct)
        await self.command("load", float(volume_ml), float(cells), float(viability_pct))

    async def input_bag(self) -> InputBag:
        """The input as the device holds it (one batched read)."""
        values = await self.read(_INPUT)
        return InputBag(
            volume_ml=_float(values, "input_volume_ml", self.name),
            cells=_float(values, "input_cells", self.name),
            viability_pct=_float(values, "input_viability", self.name),
            loaded=bool(values["input_loaded"]),
        )

    async def unload(self) -> OutputBag:
        """Disconnect the bags and hand over the product; the device is empty afterwards."""
        results = await self.command("unload")
        if len(results) != len(_UNLOAD):
            raise ProtocolError(self.name, f"unload returned {len(results)} values, expected 3")
        values = dict(zip(_UNLOAD, results, strict=True))
        return OutputBag(
            volume_ml=_float(values, "volume_ml", self.name),
            cells=_float(values, "cells", self.name),
            viability_pct=_float(values, "viability_pct", self.name),
        )

    # -- program parameters ---------------------------------------------------------

    async def set_intermediate_volume(self, volume_ml: float, *, within: float = 60.0) -> float:
        """Set IV (the pellet's resuspension volume; raise it for large pellets); idle only."""
        value = await self.set_and_wait(
            "intermediate_volume_ml",
            volume_ml,
            readback="intermediate_volume_ml",
            within=within,
            poll=1.0,
        )
        return float(value)

    async def set_rinse_volume(self, volume_ml: float, *, within: float = 60.0) -> float:
        """Set RV (rinses cells out of the kit's dead volume); idle only."""
        value = await self.set_and_wait(
            "rinse_volume_ml", volume_ml, readback="rinse_volume_ml", within=within, poll=1.0
        )
        return float(value)

    # -- programs -------------------------------------------------------------------

    async def start_program(
        self,
        program: ProcessProgram | str,
        *,
        final_volume_ml: float = DEFAULT_FINAL_VOLUME_ML,
        cycles: int = DEFAULT_CYCLES,
        bag_count: int = DEFAULT_BAG_COUNT,
        bag_volume_ml: float = DEFAULT_BAG_VOLUME_ML,
    ) -> None:
        """Start ``program`` on the loaded input and return at once.

        The arguments the program uses are checked against the envelope before
        anything is sent; the device itself refuses a volume reduction to a
        final volume not below the input, a start while busy or with no input.
        """
        try:
            name = ProcessProgram(program)
        except ValueError:
            known = ", ".join(p.value for p in ProcessProgram)
            raise OutOfRangeError(
                f"unknown program {program!r} (expected one of {known})"
            ) from None
        if name is ProcessProgram.FORMULATION:
            bag_count = _whole("bag_count", bag_count, BAG_COUNT)
            bag_volume_ml = _number("bag_volume_ml", bag_volume_ml, BAG_VOLUME_ML, "mL")
            if bag_count * bag_volume_ml > FORMULATION_MAX_ML:
                raise OutOfRangeError(
                    f"formulation of {bag_count} x {bag_volume_ml:g} mL exceeds "
                    f"{FORMULATION_MAX_ML:g} mL"
                )
        else:
            final_volume_ml = _number("final_volume_ml", final_volume_ml, FINAL_VOLUME_ML, "mL")
        if name in (ProcessProgram.WASH, ProcessProgram.CULTURE_HARVEST):
            cycles = _whole("cycles", cycles, CYCLES)
        await self.command(
            "start_program",
            name.value,
            float(final_volume_ml),
            int(cycles),
            int(bag_count),
            float(bag_volume_ml),
        )

    async def run_program(
        self,
        program: ProcessProgram | str,
        *,
        final_volume_ml: float = DEFAULT_FINAL_VOLUME_ML,
        cycles: int = DEFAULT_CYCLES,
        bag_count: int = DEFAULT_BAG_COUNT,
        bag_volume_ml: float = DEFAULT_BAG_VOLUME_ML,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """Start ``program``, wait until it ends and return what it made.

        ConditionTimeout when it runs past ``within`` process seconds (the program
        keeps running); ProgramAborted when it ends Aborted.
        """
        await self.start_program(
            program,
            final_volume_ml=final_volume_ml,
            cycles=cycles,
            bag_count=bag_count,
            bag_volume_ml=bag_volume_ml,
        )
        state = await self.wait_program_done(within=within, poll=poll)
        if state is ProgramState.ABORTED:
            raise ProgramAborted(self.name, str(program), str(await self.get("step_name")))
        return await self.result()

    async def isolation(
        self,
        final_volume_ml: float = DEFAULT_FINAL_VOLUME_ML,
        *,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """Density-gradient (Ficoll 1.077 g/mL) isolation of mononuclear cells into FV."""
        return await self.run_program(
            ProcessProgram.ISOLATION, final_volume_ml=final_volume_ml, within=within, poll=poll
        )

    async def wash(
        self,
        cycles: int = DEFAULT_CYCLES,
        final_volume_ml: float = DEFAULT_FINAL_VOLUME_ML,
        *,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """``cycles`` dilution/spin washes, resuspended in FV."""
        return await self.run_program(
            ProcessProgram.WASH,
            final_volume_ml=final_volume_ml,
            cycles=cycles,
            within=within,
            poll=poll,
        )

    async def volume_reduction(
        self,
        final_volume_ml: float,
        *,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """Concentrate the input into FV (below the input volume)."""
        return await self.run_program(
            ProcessProgram.VOLUME_REDUCTION,
            final_volume_ml=final_volume_ml,
            within=within,
            poll=poll,
        )

    async def culture_harvest(
        self,
        final_volume_ml: float = DEFAULT_FINAL_VOLUME_ML,
        cycles: int = DEFAULT_CYCLES,
        *,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """Harvest a culture: concentrate, wash ``cycles`` times, resuspend in FV, rinse."""
        return await self.run_program(
            ProcessProgram.CULTURE_HARVEST,
            final_volume_ml=final_volume_ml,
            cycles=cycles,
            within=within,
            poll=poll,
        )

    async def formulation(
        self,
        bag_count: int,
        bag_volume_ml: float,
        *,
        within: float = PROGRAM_WITHIN_S,
        poll: float = PROGRAM_POLL_S,
    ) -> ProcessResult:
        """Dilute 1:1 into cryomedium and fill ``bag_count`` bags of ``bag_volume_ml``."""
        return await self.run_program(
            ProcessProgram.FORMULATION,
            bag_count=bag_count,
            bag_volume_ml=bag_volume_ml,
            within=within,
            poll=poll,
        )

    async def result(self) -> ProcessResult:
        """The last program's input and output as the device reports them (one batched read).

        The output is published when the program completes (formulation: bag by bag).
        """
        values = await self.read(_RESULT)
        return ProcessResult(
            program=str(values["program"]),
            input_volume_ml=_float(values, "input_volume_ml", self.name),
            input_cells=_float(values, "input_cells", self.name),
            input_viability_pct=_float(values, "input_viability", self.name),
            output_volume_ml=_float(values, "output_volume_ml", self.name),
            output_cells=_float(values, "output_cells", self.name),
            output_viability_pct=_float(values, "output_viability", self.name),
            recovery_pct=_float(values, "recovery_pct", self.name),
            bags_filled=int(_float(values, "bags_filled", self.name)),
            runtime_s=_float(values, "runtime_s", self.name),
        )

    async def wait_bags_filled(
        self, count: int, *, within: float = PROGRAM_WITHIN_S, poll: float = 10.0
    ) -> int:
        """Wait until a formulation has filled ``count`` bags (to label them as they come)."""
        count = _whole("count", count, BAG_COUNT)

        def filled(values: dict[str, Value]) -> bool:
            bags = values["bags_filled"]
            return isinstance(bags, int) and bags >= count

        values = await self.wait_until(
            ["bags_filled"], filled, within=within, poll=poll, what=f"{count} bag(s) filled"
        )
        return int(values["bags_filled"])

    async def abort(self) -> None:
        """Abort the running program; the cells stay in the kit (no output). Idle: no effect."""
        await self.command("abort")

    # -- crash recovery -------------------------------------------------------------

    async def recover(self, method: str, args: Mapping[str, Value]) -> Recovered | None:
        """Did ``method(**args)``, sent before a supervisor crash, take effect? (device reads only).

        - ``load_input``: an unprocessed input with these figures: done; no
          unprocessed input: not done; another input: CannotTell.
        - ``start_program``, ``run_program`` and the five programs: an input still
          waiting unprocessed: not started. Otherwise the device's ``program`` must
          name this program: running, the program methods wait for its end as they
          would (within what is left of ``within``, by the device's runtime) and
          return its result; complete, its result (start_program: None); aborted,
          ProgramAborted as the method would raise. No input at all: not done.
        - ``unload``: the product still in the device: not done; the device
          empty: CannotTell (an unload clears the output figures it returned).
        - :attr:`resendable` methods: not done (send again); others: CannotTell.
        """
        if method == "load_input":
            return await self._recover_load(self._arguments(method, args))
        if method == "unload":
            return await self._recover_unload()
        if method in _PROGRAM_METHODS:
            call = self._arguments(method, args)
            program = _PROGRAM_METHODS[method] or call["program"]
            # start_program returns at once; the others wait for the program's end.
            waits = method != "start_program"
            return await self._recover_program(
                str(program),
                final_volume_ml=call.get("final_volume_ml", DEFAULT_FINAL_VOLUME_ML),
                bag_count=call.get("bag_count", DEFAULT_BAG_COUNT),
                bag_volume_ml=call.get("bag_volume_ml", DEFAULT_BAG_VOLUME_ML),
                wait=(call["within"], call["poll"]) if waits else None,
            )
        return await super().recover(method, args)

    def _arguments(self, method: str, args: Mapping[str, Value]) -> dict[str, Any]:
        """The journaled arguments bound to ``method`` as its call would, defaults filled in."""
        try:
            bound = inspect.signature(getattr(self, method)).bind(**args)
        except TypeError as exc:
            raise CannotTell(
                f"{self.name}: the journaled call {method}({dict(args)}) does not bind: {exc}"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    async def _recover_load(self, call: Mapping[str, Any]) -> Recovered | None:
        bag = await self.input_bag()
        if not bag.loaded:
            # No input waits: this load did not land (had it, no program could
            # have drawn the input in since, for nothing was sent after it).
            return None
        seen = (bag.volume_ml, bag.cells, bag.viability_pct)
        asked = (call["volume_ml"], call["cells"], call["viability_pct"])
        if all(_same(a, b) for a, b in zip(seen, asked, strict=True)):
            return Recovered(None)
        raise CannotTell(
            f"{self.name}: an input of {bag.volume_ml:g} mL, {bag.cells:.4g} cells, "
            f"{bag.viability_pct:g} % is loaded, not the {float(asked[0]):g} mL, "
            f"{float(asked[1]):.4g} cells, {float(asked[2]):g} % this load gave: "
            "another bag is connected"
        )

    async def _recover_unload(self) -> Recovered | None:
        values = await self.read(("input_volume_ml", "input_loaded", "output_volume_ml"))
        held = _float(values, "input_volume_ml", self.name)
        output = _float(values, "output_volume_ml", self.name)
        if held > 0 or output > 0 or bool(values["input_loaded"]):
            return None  # unload clears input and output: it did not land
        raise CannotTell(
            f"{self.name}: the device is empty (no input, no output): the unload landed, or "
            "there was nothing to unload; the output figures it returned are cleared on the "
            "device (the program's result, journaled at the step before, has them)"
        )

    async def _recover_program(
        self,
        program: str,
        *,
        final_volume_ml: float,
        bag_count: int,
        bag_volume_ml: float,
        wait: tuple[float, float] | None,
    ) -> Recovered | None:
        try:
            name = ProcessProgram(program)
        except ValueError:
            return None  # refused unsent by start_program: sending it again is as safe
        values = await self.read(_STARTED)
        if bool(values["input_loaded"]):
            return None  # the input waits unprocessed: no program started on it
        if _float(values, "input_volume_ml", self.name) <= 0:
            return None  # no input at all: the device refuses a start, as it did
        state = self.as_program_state(values["program_state"])
        seen = str(values["program"])
        if seen != name.value or state is ProgramState.STOPPED:
            raise CannotTell(
                f"{self.name}: the input was drawn into program {seen} ({state.value}, step "
                f"{values['step_name'] or '-'}), not {name.value}: the device does not show "
                f"that this start of {name.value} landed"
            )
        if state is ProgramState.RUNNING and wait is not None:
            within, poll = wait
            # run_program's ``within`` counts from the start; the device's runtime says
            # how much of it has gone.
            left = max(0.0, within - _float(values, "runtime_s", self.name))
            state = await self.wait_program_done(within=left, poll=poll)
            values = await self.read(_STARTED)
        if state is ProgramState.ABORTED:
            if wait is None:
                return Recovered(None)  # start_program returns at its start
            raise ProgramAborted(self.name, name.value, str(values["step_name"]))
        if state is ProgramState.COMPLETE:
            self._check_made(name, values, final_volume_ml, bag_count, bag_volume_ml)
        if wait is None:
            return Recovered(None)
        return Recovered(await self.result())

    def _check_made(
        self,
        name: ProcessProgram,
        values: Mapping[str, Value],
        final_volume_ml: float,
        bag_count: int,
        bag_volume_ml: float,
    ) -> None:
        """A complete run's output must be what this call asked for (volume, bags)."""
        volume = _float(values, "output_volume_ml", self.name)
        bags = int(_float(values, "bags_filled", self.name))
        if name is ProcessProgram.FORMULATION:
            asked = f"{bag_count} bag(s) of {bag_volume_ml:g} mL"
            made = bags == bag_count and _same(volume, bag_count * bag_volume_ml)
        else:
            asked = f"{final_volume_ml:g} mL"
            made = _same(volume, final_volume_ml)
        if not made:
            raise CannotTell(
                f"{self.name}: program {name.value} is complete with {volume:g} mL in "
                f"{bags} bag(s), not the {asked} this call asked for: another run of it"
            )

    # -- safe state -----------------------------------------------------------------

    async def safe_state(self, action: SafeAction) -> None:
        """HOLD: nothing is sent; a running program runs on to its end. ABORT: abort it.

        HOLD leaves the device alone: a centrifuge stopped mid-spin can lose the
        product (a disturbed pellet or gradient, cells stranded in the kit), and
        the program's own sequence is the device's safe path to a bag. The output
        waits in the kit until unload; starting nothing new is the supervisor's part. Because
        HOLD sends nothing it also succeeds when the device cannot be reached.
        ABORT sends ``abort``: the device stops the program at once and keeps the
        cells in the kit with no output; with nothing running it has no effect.
        """
        if action is SafeAction.ABORT:
            await self.abort()


#: Methods that start a program -> the program they start (None: the ``program`` argument).
_PROGRAM_METHODS: Mapping[str, ProcessProgram | None] = {
    "start_program": None,
    "run_program": None,
    "isolation": ProcessProgram.ISOLATION,
    "wash": ProcessProgram.WASH,
    "volume_reduction": ProcessProgram.VOLUME_REDUCTION,
    "culture_harvest": ProcessProgram.CULTURE_HARVEST,
    "formulation": ProcessProgram.FORMULATION,
}
