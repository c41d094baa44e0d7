"""Controlled-rate freezer (VIA Freeze class): multi-segment chamber profiles, one bag.

The freezer runs its own program: a list of segments, each ramping the chamber
at a rate to a target and holding it (domain.md 1.4). The built-in
``standard_bag`` profile cools the bag at -1 °C/min and compensates the
nucleation exotherm with a fast chamber drop and a warm back (its segments 4
and 5), so the *sample* keeps cooling at about -1 °C/min through freezing.
The program is the device's, shaped like an OPC UA LADS ActiveProgram; a
segment is its step.

A custom profile is defined atomically on the device: :meth:`Freezer.define_profile`
writes the segments into the device's draft and then commits the draft whole
(``commit_profile``), so a definition that fails part way leaves the loaded
profile as it was, complete, and :meth:`Freezer.start` can never run a
truncated one.

The door is physical and interlocked: the device refuses to start with the
door open, and opening it mid-run aborts the run. This driver checks the door
before it sends a start and says so. Nothing here opens or closes the door or
places the bag: people do that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import structlog

from drivers.base import (
    PROGRAM_SIGNALS,
    CannotTell,
    DeviceStatus,
    Driver,
    Program,
    ProgramState,
    Recovered,
    SafeAction,
)
from flexctl.errors import (
    ConditionTimeout,
    DeviceBusyError,
    FlexctlError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.profile import Value

log = structlog.get_logger("flexctl.driver.freezer")

STANDARD_PROFILE = "standard_bag"
#: What the device calls the profile define_profile loads.
CUSTOM_PROFILE = "custom"
#: Profiles built into the device (load them by name; "custom" is what define_profile makes).
BUILT_IN_PROFILES: tuple[str, ...] = (STANDARD_PROFILE,)
#: Device envelope of one segment (VIA Freeze class; simulators/models/freezer_profile.py).
RATE_LIMIT_C_PER_MIN = 50.0
HOLD_LIMITS_MIN = (0.0, 600.0)
MAX_SEGMENTS = 20
#: A sample warming by more than this between two records is the nucleation exotherm.
EXOTHERM_RISE_C = 1.0

_RECORD_SIGNALS = (
    "program_state",
    "segment",
    "runtime_s",
    "chamber_temperature",
    "chamber_sp",
    "sample_temperature",
)

#: What recovery reads of a start: the program, the loaded profile, the chamber. Not
#: step_name: a serial reply cannot carry a custom profile's ("segment N").
_RECOVER_SIGNALS = (
    "program_state",
    "step_number",
    "runtime_s",
    "profile_name",
    "segment",
    "segment_count",
    "alarm",
    "chamber_temperature",
    "chamber_sp",
)


@dataclass(frozen=True)
class Segment:
    """One profile segment: ramp the chamber at ``rate_c_per_min`` to ``target_c``, then hold.

    The rate is a speed (°C/min; its sign is ignored, the target gives the
    direction); 0 steps the setpoint at once. ``hold_min`` is held at the target.
    """

    rate_c_per_min: float
    target_c: float
    hold_min: float = 0.0


@dataclass(frozen=True)
class FreezerTemperatures:
    """Chamber and sample, read together."""

    chamber_c: float
    chamber_sp_c: float
    sample_c: float
    sample_rate_c_per_min: float


@dataclass(frozen=True)
class FreezerRun:
    """The run state: the LADS program (a segment is a step) and the loaded profile."""

    program: Program
    profile_name: str
    segment: int
    segment_count: int
    door_closed: bool
    status: DeviceStatus


@dataclass(frozen=True)
class FreezeSample:
    """One point of a freeze record: chamber against sample at a program runtime."""

    runtime_s: float
    segment: int
    chamber_c: float
    chamber_sp_c: float
    sample_c: float


@dataclass(frozen=True)
class FreezeRecord:
    """Chamber vs sample over a run, as the driver saw it, and how the run ended."""

    samples: tuple[FreezeSample, ...]
    state: ProgramState

    def rates(self) -> list[tuple[FreezeSample, FreezeSample, float]]:
        """(before, after, °C/min): the sample's rate between neighbours in the same segment."""
        out: list[tuple[FreezeSample, FreezeSample, float]] = []
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            dt_min = (after.runtime_s - before.runtime_s) / 60.0
            if after.segment == before.segment and dt_min > 0:
                out.append((before, after, (after.sample_c - before.sample_c) / dt_min))
        return out

    def nucleation(self) -> FreezeSample | None:
        """The first point after the exotherm (the sample warmed while freezing), if seen."""
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            if after.sample_c - before.sample_c > EXOTHERM_RISE_C and after.sample_c < 0.0:
                return after
        return None

    @property
    def runtime_s(self) -> float:
        return self.samples[-1].runtime_s if self.samples else 0.0


class Freezer(Driver):
    """A controlled-rate freezer: profiles, temperatures, run state, door interlock."""

    kind = "freezer"
    trends = ("chamber_temperature", "sample_temperature", "sample_rate")
    argument_limits: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "set_chamber": {"target_c": "chamber_sp"},
        "set_chamber_and_wait": {"target_c": "chamber_sp"},
    }
    required_signals: ClassVar[tuple[str, ...]] = (
        "chamber_temperature",
        "chamber_sp",
        "sample_temperature",
        "sample_rate",
        "door_closed",
        "profile_name",
        "segment",
        "segment_count",
        "status",
        "alarm",
        *PROGRAM_SIGNALS,
    )
    required_commands: ClassVar[tuple[str, ...]] = (
        "load_profile",
        "set_segment",
        "commit_profile",
        "start_program",
        "stop_program",
        "abort",
    )
    targets = {"chamber_temperature": "chamber_sp"}
    #: The idle setpoint, stop and abort (no effect unless a program runs), reads,
    #: waits, and define_profile: it rewrites the draft from segment 1 and commits
    #: it whole, so a second definition loads the same profile.
    resendable: ClassVar[frozenset[str]] = frozenset(
        {
            "set_chamber",
            "set_chamber_and_wait",
            "define_profile",
            "stop",
            "abort",
            "temperatures",
            "door_closed",
            "run_state",
            "wait_done",
            "follow_run",
            "status",
            "alarm",
            "reading",
            "program",
            "wait_program_done",
        }
    )

    # -- readings -------------------------------------------------------------------

    async def temperatures(self) -> FreezerTemperatures:
        """Chamber (value and setpoint) and sample (value and rate over the last minute)."""
        v = await self.read(
            ["chamber_temperature", "chamber_sp", "sample_temperature", "sample_rate"]
        )
        return FreezerTemperatures(
            chamber_c=float(v["chamber_temperature"]),
            chamber_sp_c=float(v["chamber_sp"]),
            sample_c=float(v["sample_temperature"]),
            sample_rate_c_per_min=float(v["sample_rate"]),
        )

    async def door_closed(self) -> bool:
        return bool(await self.get("door_closed"))

    async def run_state(self) -> FreezerRun:
        """Program state, segment (as the LADS step) and profile, in one batched read."""
        names = [*PROGRAM_SIGNALS, "profile_name", "segment", "segment_count", "door_closed"]
        v = await self.read([*names, "status"])
        return FreezerRun(
            program=self.as_program(v),
            profile_name=str(v["profile_name"]),
            segment=int(v["segment"]),
            segment_count=int(v["segment_count"]),
            door_closed=bool(v["door_closed"]),
            status=self.as_status(v["status"]),
        )

    # -- chamber setpoint (idle only) -------------------------------------------------

    async def set_chamber(self, target_c: float) -> None:
        """Set the idle chamber setpoint; refused unsent outside the envelope, busy in a run."""
        await self.set("chamber_sp", target_c)

    async def set_chamber_and_wait(
        self, target_c: float, *, within: float, tolerance: float | None = None, poll: float = 10.0
    ) -> float:
        """Set the idle chamber setpoint and wait until the chamber is within tolerance."""
        value = await self.set_and_wait(
            "chamber_sp",
            target_c,
            readback="chamber_temperature",
            tolerance=tolerance,
            within=within,
            poll=poll,
        )
        return float(value)

    # -- profiles and the program -----------------------------------------------------

    async def run_profile(self, name: str = STANDARD_PROFILE) -> None:
        """Load a built-in profile and start it (the door interlock is checked first)."""
        if name not in BUILT_IN_PROFILES:
            raise OutOfRangeError(
                f"{self.name}: unknown profile {name!r} (built in: {', '.join(BUILT_IN_PROFILES)})"
            )
        await self._check_can_start()
        await self.command("load_profile", name)
        await self.command("start_program")
        log.info("freezer profile started", device=self.name, profile=name)

    async def define_profile(self, segments: Sequence[Segment]) -> int:
        """Define a custom profile atomically; all segments are checked before any is sent.

        The segments go into the device's draft one by one, then the draft is
        committed whole. If anything fails on the way, the error propagates and
        the device keeps the profile it had loaded (a draft is never run).
        Returns the segment count of the loaded profile. Start it with :meth:`start`.
        """
        if not 1 <= len(segments) <= MAX_SEGMENTS:
            raise OutOfRangeError(
                f"{self.name}: a profile has 1 to {MAX_SEGMENTS} segments, got {len(segments)}"
            )
        for number, segment in enumerate(segments, start=1):
            self._check_segment(number, segment)
        expected = len(segments)
        try:
            for number, segment in enumerate(segments, start=1):
                result = await self.command(
                    "set_segment",
                    number,
                    abs(float(segment.rate_c_per_min)),
                    float(segment.target_c),
                    float(segment.hold_min),
                )
                drafted = _count(result, self.name)
                if drafted != number:
                    raise ProtocolError(
                        self.name,
                        f"set_segment {number}: the device's draft holds {drafted} segments",
                    )
            await self.command("commit_profile", expected)
        except FlexctlError as exc:
            exc.add_note(
                f"{self.name}: the custom profile was not committed (or its commit is "
                "unconfirmed); the device runs only a whole profile: the one it had, or this one"
            )
            raise
        v = await self.read(["segment_count", "profile_name"])
        count = int(v["segment_count"])
        if count != expected or str(v["profile_name"]) != CUSTOM_PROFILE:
            raise ProtocolError(
                self.name,
                f"profile committed with {expected} segments, device reports "
                f"{v['profile_name']} with {count}",
            )
        return count

    async def start(self) -> None:
        """Start the loaded profile (the door interlock is checked first)."""
        await self._check_can_start()
        await self.command("start_program")
        log.info("freezer program started", device=self.name)

    async def stop(self) -> None:
        """Stop a run (LADS Stop); the chamber holds its present setpoint."""
        await self.command("stop_program")

    async def abort(self) -> None:
        """Abort a run (LADS Abort); the chamber holds its present setpoint."""
        await self.command("abort")

    async def wait_done(self, *, within: float, poll: float = 60.0) -> ProgramState:
        """Wait until the program is no longer running; returns its final state.

        ``complete`` when the profile ran to its end, ``aborted`` (door opened,
        abort) or ``stopped``. ConditionTimeout when ``within`` passes first.
        """
        values = await self.wait_until(
            ["program_state"],
            lambda v: str(v["program_state"]) != ProgramState.RUNNING.value,
            within=within,
            poll=poll,
            what="freeze program done",
        )
        return self.as_program_state(values["program_state"])

    async def follow_run(self, *, within: float, every: float = 30.0) -> FreezeRecord:
        """Record chamber vs sample every ``every`` s until the program ends.

        Returns the record with the final state; ConditionTimeout when the run
        is still going after ``within`` s.
        """
        if every <= 0 or within < 0:
            raise OutOfRangeError(f"{self.name}: every must be > 0 and within >= 0")
        deadline = self.clock.now() + within
        samples: list[FreezeSample] = []
        while True:
            v = await self.read(_RECORD_SIGNALS)
            samples.append(
                FreezeSample(
                    runtime_s=float(v["runtime_s"]),
                    segment=int(v["segment"]),
                    chamber_c=float(v["chamber_temperature"]),
                    chamber_sp_c=float(v["chamber_sp"]),
                    sample_c=float(v["sample_temperature"]),
                )
            )
            state = self.as_program_state(v["program_state"])
            if state is not ProgramState.RUNNING:
                return FreezeRecord(tuple(samples), state)
            if self.clock.now() >= deadline:
                raise ConditionTimeout(self.name, "freeze program done", within)
            await self.clock.sleep_until(min(deadline, self.clock.now() + every))

    async def safe_state(self, action: SafeAction) -> None:
        """Leave a freeze where it does least harm to the product.

        HOLD sends nothing: a running freeze program is NOT interrupted, because
        stopping mid-freeze destroys the product (a bag left part-frozen, or held
        near its nucleation point, loses its cells); the freezer's own program is
        its safe path, and it ends holding the product cold. An idle chamber keeps
        its setpoint.

        ABORT aborts the program (LADS Abort). The chamber then holds the
        setpoint it had at that moment; the product stays there until a person
        moves it (to LN2 vapour) or a new program is started.
        """
        if action is SafeAction.HOLD:
            log.info("freezer hold: program left running", device=self.name)
            return
        await self.command("abort")
        log.warning("freezer aborted for safe state", device=self.name)

    # -- crash recovery -------------------------------------------------------------------

    async def recover(self, method: str, args: Mapping[str, Value]) -> Recovered | None:
        """Did ``method(**args)``, sent before a supervisor crash, take effect? (device reads only).

        ``run_profile(name)`` and ``start()`` return once the program starts:

        - running (with ``name`` loaded): done. A program runs only when started,
          and neither method sends a start while one runs.
        - ``name`` not loaded (run_profile): its load, and so its start, did not
          land: not done. No program run since power-on (step 0): not done.
        - Complete, Stopped or Aborted: CannotTell. The device keeps the last run's
          end until the next start, so this start's end and the previous run's look
          alike: a person tells them apart (the chamber's temperature, the time).

        :attr:`resendable` methods: not done (send again); others: CannotTell.
        """
        if method == "run_profile":
            return await self._recover_start(str(args.get("name", STANDARD_PROFILE)))
        if method == "start":
            return await self._recover_start(None)
        return await super().recover(method, args)

    async def _recover_start(self, profile: str | None) -> Recovered | None:
        if profile is not None and profile not in BUILT_IN_PROFILES:
            return None  # refused unsent: sending it again is as safe
        v = await self.read(_RECOVER_SIGNALS)
        state = self.as_program_state(v["program_state"])
        if profile is not None and str(v["profile_name"]) != profile:
            return None  # load_profile, sent first, did not land: nor did the start
        if state is ProgramState.RUNNING:
            return Recovered(None)
        if int(v["step_number"]) == 0:
            return None  # no program has run since power-on
        raise CannotTell(
            f"{self.name}: the program reads {state.value} (profile "
            f"{v['profile_name']}, segment {v['segment']} of {v['segment_count']}, runtime "
            f"{float(v['runtime_s']):.0f} s, alarm {v['alarm'] or 'none'}; chamber "
            f"{float(v['chamber_temperature']):.1f} °C, setpoint {float(v['chamber_sp']):g} °C): "
            "either this start ran to that end or it is the previous run's and this start "
            "never landed; the device does not say which"
        )

    # -- checks -----------------------------------------------------------------------

    async def _check_can_start(self) -> None:
        """The interlocks the device enforces, checked first so the refusal says why."""
        v = await self.read(["door_closed", "program_state"])
        if not bool(v["door_closed"]):
            raise DeviceBusyError(
                f"{self.name}: door interlock: the door is open, so the freezer will not "
                "start; close the door first"
            )
        if str(v["program_state"]) == ProgramState.RUNNING.value:
            raise DeviceBusyError(f"{self.name}: a freeze program is already running")

    def _check_segment(self, number: int, segment: Segment) -> None:
        what = f"{self.name}: segment {number}"
        rate = segment.rate_c_per_min
        if not abs(rate) <= RATE_LIMIT_C_PER_MIN:  # also refuses NaN
            raise OutOfRangeError(
                f"{what}: rate {rate:g} °C/min outside [0, {RATE_LIMIT_C_PER_MIN:g}] (a speed)"
            )
        try:
            self.check_limits("chamber_sp", segment.target_c)
        except OutOfRangeError as exc:
            raise OutOfRangeError(f"{what}: target: {exc}") from None
        low, high = HOLD_LIMITS_MIN
        if not low <= segment.hold_min <= high:
            raise OutOfRangeError(
                f"{what}: hold {segment.hold_min:g} min outside [{low:g}, {high:g}] min"
            )


def _count(result: list[Value], device: str) -> int:
    if len(result) != 1 or isinstance(result[0], bool) or not isinstance(result[0], int | float):
        raise ProtocolError(device, f"set_segment: expected the segment count, got {result!r}")
    return int(result[0])
