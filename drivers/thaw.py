"""Dry-plate thaw device (VIA Thaw class): a sample-specific end point, not a timer.

The device warms a frozen bag on a controlled plate, watches the sample sensor
through the melting plateau (near -3 °C) and sets the end point when the
sample rises off it; it then stops heating and pulls the plate to a 4 °C hold,
and the thaw is complete once the plate is cold (domain.md 1.3). The program is
the device's, shaped like an OPC UA LADS ActiveProgram (steps warming,
melting, cool_down).

Placing the bag on the plate is a person's act. The twin offers it as a
command (``load_bag``/``unload_bag``) so a simulated run has a bag; this driver
calls them :meth:`ThawDevice.twin_load_bag` and :meth:`ThawDevice.twin_unload_bag`,
and a hardware profile simply leaves them out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import structlog

from drivers.base import (
    PROGRAM_SIGNALS,
    CannotTell,
    Driver,
    ProgramState,
    Recovered,
    SafeAction,
)
from flexctl.errors import ConditionTimeout, DeviceBusyError, OutOfRangeError, ProtocolError
from flexctl.profile import Value

log = structlog.get_logger("flexctl.driver.thaw")

STANDARD_PROGRAM = "standard"
#: Programs built into the device.
PROGRAMS: tuple[str, ...] = (STANDARD_PROGRAM,)
#: What the device accepts for a bag (VIA Thaw class; simulators/models/thaw.py).
BAG_VOLUME_LIMITS_ML = (5.0, 250.0)
BAG_START_LIMITS_C = (-196.0, 25.0)

_RECORD_SIGNALS = (
    "program_state",
    "step_number",
    "runtime_s",
    "plate_temperature",
    "sample_temperature",
    "end_point_detected",
)


@dataclass(frozen=True)
class ThawTemperatures:
    """Plate (value and setpoint) and sample, read together."""

    plate_c: float
    plate_sp_c: float
    sample_c: float


@dataclass(frozen=True)
class ThawResult:
    """How a thaw ended."""

    state: ProgramState
    end_point_detected: bool
    thaw_complete: bool
    runtime_s: float
    sample_c: float


@dataclass(frozen=True)
class ThawSample:
    """One point of a thaw record."""

    runtime_s: float
    step_number: int
    plate_c: float
    sample_c: float
    end_point_detected: bool


@dataclass(frozen=True)
class ThawRecord:
    """Plate vs sample over a thaw, as the driver saw it, and how it ended."""

    samples: tuple[ThawSample, ...]
    result: ThawResult

    def time_within(self, low_c: float, high_c: float) -> float:
        """Seconds the sample spent in [low_c, high_c] (the plateau), by the record."""
        total = 0.0
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            if low_c <= before.sample_c <= high_c and low_c <= after.sample_c <= high_c:
                total += after.runtime_s - before.runtime_s
        return total

    @property
    def max_sample_c(self) -> float:
        return max(s.sample_c for s in self.samples)

    @property
    def end_point_runtime_s(self) -> float | None:
        """Runtime of the first point with the end point seen, if any."""
        return next((s.runtime_s for s in self.samples if s.end_point_detected), None)


class ThawDevice(Driver):
    """A dry-plate thaw device: start, temperatures, end point, completion."""

    kind = "thaw"
    trends = ("plate_temperature", "sample_temperature")
    required_signals: ClassVar[tuple[str, ...]] = (
        "plate_temperature",
        "plate_sp",
        "sample_temperature",
        "end_point_detected",
        "thaw_complete",
        "bag_loaded",
        "status",
        "alarm",
        *PROGRAM_SIGNALS,
    )
    required_commands: ClassVar[tuple[str, ...]] = ("start", "stop", "abort")
    targets = {"plate_temperature": "plate_sp"}
    #: Stop and abort (no effect unless a program runs), reads and waits.
    resendable: ClassVar[frozenset[str]] = frozenset(
        {
            "stop",
            "abort",
            "bag_loaded",
            "temperatures",
            "end_point_detected",
            "thaw_complete",
            "result",
            "wait_end_point",
            "wait_complete",
            "follow_thaw",
            "status",
            "alarm",
            "reading",
            "program",
            "wait_program_done",
        }
    )

    # -- the bag (twin only) ------------------------------------------------------------

    async def twin_load_bag(self, volume_ml: float, start_temperature_c: float) -> None:
        """TWIN ONLY: put a frozen bag of ``volume_ml`` at ``start_temperature_c`` on the plate.

        On hardware a person places the bag; a hardware profile has no
        ``load_bag`` and this raises ConfigurationError. Refused unsent outside
        5-250 mL and -196..+25 °C.
        """
        _check("volume_ml", volume_ml, BAG_VOLUME_LIMITS_ML, "mL")
        _check("start_temperature_c", start_temperature_c, BAG_START_LIMITS_C, "°C")
        await self.command("load_bag", float(volume_ml), float(start_temperature_c))

    async def twin_unload_bag(self) -> float:
        """TWIN ONLY: take the bag off the plate; returns its temperature (°C)."""
        result = await self.command("unload_bag")
        if (
            len(result) != 1
            or isinstance(result[0], bool)
            or not isinstance(result[0], float | int)
        ):
            raise ProtocolError(self.name, f"unload_bag: expected a temperature, got {result!r}")
        return float(result[0])

    async def bag_loaded(self) -> bool:
        return bool(await self.get("bag_loaded"))

    # -- readings ---------------------------------------------------------------------

    async def temperatures(self) -> ThawTemperatures:
        v = await self.read(["plate_temperature", "plate_sp", "sample_temperature"])
        return ThawTemperatures(
            plate_c=float(v["plate_temperature"]),
            plate_sp_c=float(v["plate_sp"]),
            sample_c=float(v["sample_temperature"]),
        )

    async def end_point_detected(self) -> bool:
        """The device saw the sample rise off the melting plateau."""
        return bool(await self.get("end_point_detected"))

    async def thaw_complete(self) -> bool:
        """End point seen and the plate back to its cold hold."""
        return bool(await self.get("thaw_complete"))

    async def result(self) -> ThawResult:
        """The program's state with the end point and completion flags, in one read."""
        v = await self.read(
            [
                "program_state",
                "end_point_detected",
                "thaw_complete",
                "runtime_s",
                "sample_temperature",
            ]
        )
        return ThawResult(
            state=ProgramState(str(v["program_state"])),
            end_point_detected=bool(v["end_point_detected"]),
            thaw_complete=bool(v["thaw_complete"]),
            runtime_s=float(v["runtime_s"]),
            sample_c=float(v["sample_temperature"]),
        )

    # -- the program -------------------------------------------------------------------

    async def start(self, program: str = STANDARD_PROGRAM) -> None:
        """Start a thaw program on the loaded bag.

        An unknown program is refused unsent (OutOfRangeError); no bag on the
        plate or a program already running is DeviceBusyError, checked first so
        the refusal says why.
        """
        if program not in PROGRAMS:
            raise OutOfRangeError(
                f"{self.name}: unknown thaw program {program!r} (known: {', '.join(PROGRAMS)})"
            )
        v = await self.read(["bag_loaded", "program_state"])
        if not bool(v["bag_loaded"]):
            raise DeviceBusyError(f"{self.name}: no bag on the plate; place one before starting")
        if str(v["program_state"]) == ProgramState.RUNNING.value:
            raise DeviceBusyError(f"{self.name}: a thaw program is already running")
        await self.command("start", program)
        log.info("thaw started", device=self.name, program=program)

    async def stop(self) -> None:
        """Stop the program (LADS Stop): heating off, the plate holds 4 °C."""
        await self.command("stop")

    async def abort(self) -> None:
        """Abort the program (LADS Abort): heating off, the plate holds 4 °C."""
        await self.command("abort")

    async def wait_end_point(self, *, within: float, poll: float = 5.0) -> None:
        """Wait until the device detects the end point; ConditionTimeout otherwise."""
        await self.wait_until(
            ["end_point_detected"],
            lambda v: bool(v["end_point_detected"]),
            within=within,
            poll=poll,
            what="thaw end point",
        )

    async def wait_complete(self, *, within: float, poll: float = 10.0) -> ThawResult:
        """Wait until the program is no longer running; returns how it ended.

        ``complete`` (with ``thaw_complete``) is the good end; ``aborted`` means
        the device stopped it (see :meth:`alarm`: OVERSHOOT, NO_END_POINT) or a
        caller did. ConditionTimeout when ``within`` passes first.
        """
        await self.wait_until(
            ["program_state"],
            lambda v: str(v["program_state"]) != ProgramState.RUNNING.value,
            within=within,
            poll=poll,
            what="thaw program done",
        )
        return await self.result()

    async def follow_thaw(self, *, within: float, every: float = 10.0) -> ThawRecord:
        """Record plate vs sample every ``every`` s until the program ends."""
        if every <= 0 or within < 0:
            raise OutOfRangeError(f"{self.name}: every must be > 0 and within >= 0")
        deadline = self.clock.now() + within
        samples: list[ThawSample] = []
        while True:
            v = await self.read(_RECORD_SIGNALS)
            samples.append(
                ThawSample(
                    runtime_s=float(v["runtime_s"]),
                    step_number=int(v["step_number"]),
                    plate_c=float(v["plate_temperature"]),
                    sample_c=float(v["sample_temperature"]),
                    end_point_detected=bool(v["end_point_detected"]),
                )
            )
            if str(v["program_state"]) != ProgramState.RUNNING.value:
                return ThawRecord(tuple(samples), await self.result())
            if self.clock.now() >= deadline:
                raise ConditionTimeout(self.name, "thaw program done", within)
            await self.clock.sleep_until(min(deadline, self.clock.now() + every))

    # -- crash recovery -------------------------------------------------------------------

    async def recover(self, method: str, args: Mapping[str, Value]) -> Recovered | None:
        """Did ``method(**args)``, sent before a supervisor crash, take effect? (device reads only).

        - ``twin_load_bag``: a bag of that fill on the plate: done; no bag: not
          done; a bag of another fill: CannotTell.
        - ``twin_unload_bag``: no bag: done, with the sample sensor's reading
          (the twin's sensor keeps the last bag's temperature); a bag: not done.
        - ``start`` (returns at once): a thaw running, or an end point or completion
          on the bag on the plate (both flags are cleared when a bag is placed):
          done; no bag, a program never run, or a Complete left by the previous
          bag: not done; a Stopped or Aborted run without an end point: CannotTell
          (this start's or the previous bag's).
        - :attr:`resendable` methods: not done (send again); others: CannotTell.
        """
        if method == "twin_load_bag":
            return await self._recover_load(args.get("volume_ml"))
        if method == "twin_unload_bag":
            values = await self.read(["bag_loaded", "sample_temperature"])
            if bool(values["bag_loaded"]):
                return None
            return Recovered(float(values["sample_temperature"]))
        if method == "start":
            return await self._recover_start(str(args.get("program", STANDARD_PROGRAM)))
        return await super().recover(method, args)

    async def _recover_load(self, volume_ml: Value | None) -> Recovered | None:
        if not await self.bag_loaded():
            return None
        if "fill_volume_ml" not in self.transport.profile.signals:
            return Recovered(None)  # a bag is on the plate; the profile cannot say its fill
        fill = float(await self.get("fill_volume_ml"))
        if isinstance(volume_ml, int | float) and math.isclose(
            fill, float(volume_ml), rel_tol=1e-5, abs_tol=1e-3
        ):
            return Recovered(None)
        raise CannotTell(
            f"{self.name}: a bag of {fill:g} mL is on the plate, not the {volume_ml!r} mL this "
            "load placed: another bag"
        )

    async def _recover_start(self, program: str) -> Recovered | None:
        if program not in PROGRAMS:
            return None  # refused unsent: sending it again is as safe
        v = await self.read(
            [
                "bag_loaded",
                "program_state",
                "step_number",
                "step_name",
                "end_point_detected",
                "thaw_complete",
                "alarm",
            ]
        )
        if not bool(v["bag_loaded"]):
            return None  # the device refuses a start with no bag, as it did
        state = self.as_program_state(v["program_state"])
        if state is ProgramState.RUNNING:
            return Recovered(None)
        # Placing a bag clears both flags, so either one set is a thaw of the bag now
        # on the plate; with the bag just placed, that thaw is this start's.
        if bool(v["end_point_detected"]) or bool(v["thaw_complete"]):
            return Recovered(None)
        if state is ProgramState.COMPLETE or int(v["step_number"]) == 0:
            # Complete needs the end point, which this bag has not had: the previous
            # bag's run. Step 0: no program has run since power-on.
            return None
        raise CannotTell(
            f"{self.name}: the program reads {state.value} (step {v['step_name'] or '-'}, alarm "
            f"{v['alarm'] or 'none'}) with no end point on the bag on the plate: either this "
            "start ran and was stopped or aborted, or that is the previous run and this start "
            "never landed"
        )

    async def safe_state(self, action: SafeAction) -> None:
        """Leave a thaw where it does least harm to the product.

        HOLD sends nothing: a running thaw goes on to its end point, because a
        half-thawed bag is worse than a finished one (it can neither go back to
        storage nor be used), and the device's own end-point detection protects
        the product: at the end point it stops heating and holds the plate at
        4 °C, and it aborts by itself on overshoot. An idle device stays idle.

        ABORT aborts the program (LADS Abort): heating stops at once and the
        plate is pulled to its 4 °C hold.
        """
        if action is SafeAction.HOLD:
            log.info("thaw hold: program left to reach its end point", device=self.name)
            return
        await self.command("abort")
        log.warning("thaw aborted for safe state", device=self.name)


def _check(name: str, value: float, limits: tuple[float, float], unit: str) -> None:
    low, high = limits
    if isinstance(value, bool) or not low <= value <= high:  # also refuses NaN
        raise OutOfRangeError(f"{name}: {value!r} {unit} is outside [{low:g}, {high:g}] {unit}")
