"""Rocking-bag bioreactor (Xuri W25 class): the culture in device terms.

Temperature and headspace CO2 are controlled quantities with setpoints; the
rocker (rate, angle) gives the bag its oxygen transfer; perfusion feeds fresh
medium through the bag and draws the same flow through the cell-retention
filter. The culture itself is seeded, fed, sampled and finally harvested.

The culture is the device's program, shaped like a LADS ActiveProgram and kept
by the device (``program_state``, ``step_name``, ``step_number``, ``runtime_s``):
Running from seeding (step 1 "batch", step 2 "perfusion" while the pumps run,
runtime = culture age), Complete after :meth:`harvest` and Aborted after the
device's ``abort`` (:meth:`Bioreactor.abort`, ``safe_state(ABORT)``). This
driver keeps no state of its own, so a restarted supervisor reads the same.

The harvest is the product: the device keeps the figures of the last harvest
(``harvest_count``, ``harvest_cells``, ``harvest_volume_ml``,
``harvest_viability``). When a harvest's reply is lost (a timeout, a dropped
link, a damaged frame), :meth:`Bioreactor.harvest` waits for the link and reads
them back, so the figures reach the batch record whatever the wire did; a
harvest of a bag already harvested raises :class:`AlreadyHarvested` with them.

Every setpoint and command argument is checked against the profile's limits
(or, where no signal carries them, the device envelope below) before anything
is sent; a refused value raises :class:`~flexctl.errors.OutOfRangeError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from drivers.base import (
    PROGRAM_SIGNALS,
    CannotTell,
    DeviceStatus,
    Driver,
    Recovered,
    SafeAction,
)
from flexctl.errors import DeviceBusyError, FlexctlError, OutOfRangeError, ProtocolError
from flexctl.profile import Value

log = structlog.get_logger("flexctl.driver.bioreactor")

#: Sample volume the device takes (mL), [V] cell-counter sample port.
SAMPLE_LIMITS_ML = (0.1, 50.0)
#: Viability of an inoculum (%); the device refuses 0.
VIABILITY_LIMITS_PCT = (1.0, 100.0)
#: Highest inoculum density the device accepts (viable cells/mL).
MAX_SEED_DENSITY_PER_ML = 1e8

#: Signals read for the culture snapshot: one batched request (one Modbus block).
CULTURE_SIGNALS = (
    "temperature",
    "do",
    "ph",
    "co2",
    "rock_rate",
    "volume",
    "perfusion_rate",
    "culture_day",
    "status",
    "alarm",
)
#: The last harvest as the device keeps it, read together.
HARVEST_SIGNALS = ("harvest_count", "harvest_cells", "harvest_volume_ml", "harvest_viability")
#: Process seconds :meth:`Bioreactor.harvest` waits for a lost link before it gives up
#: reading the figures back (they stay on the device: :meth:`Bioreactor.last_harvest`).
RECOVER_WITHIN_S = 120.0

#: How far the bag's volume may read from a seed's volume and still be that seed's
#: culture (a fraction of it): the load cell's noise is well under 1 mL.
SEED_VOLUME_TOLERANCE = 0.02

#: The culture program's steps (as the device numbers and names them).
STEP_BATCH = (1, "batch")
STEP_PERFUSION = (2, "perfusion")
STEP_HARVEST = (3, "harvest")

SAFE_STATE = {
    SafeAction.HOLD.value: (
        "perfusion paused (rate setpoint kept); temperature, CO2 and rocking left running "
        "so the culture stays warm, gassed and oxygenated"
    ),
    SafeAction.ABORT.value: (
        "the device's abort: perfusion and rocking stopped, temperature and CO2 control "
        "left on so the cells stay warm until a person decides; the culture reads Aborted"
    ),
}


@dataclass(frozen=True)
class CultureState:
    """The key process values, read together in one request."""

    temperature_c: float
    do_pct: float
    ph: float
    co2_pct: float
    rock_rate_rpm: float
    volume_ml: float
    perfusion_rate_ml_per_day: float
    culture_day: float
    status: DeviceStatus
    alarms: tuple[str, ...]


@dataclass(frozen=True)
class Metabolites:
    """Glucose, lactate and ammonia in the culture."""

    glucose_g_per_l: float
    lactate_g_per_l: float
    ammonia_mm: float


@dataclass(frozen=True)
class Sample:
    """A cell count of a sample drawn from the bag."""

    vcd_per_ml: float
    viability_pct: float
    volume_ml: float


@dataclass(frozen=True)
class Harvest:
    """What the bag held when it was drained: the product handed on.

    ``number`` is the device's harvest count for this harvest; ``recovered``
    says the figures were read back from the device after the harvest's own
    reply was lost.
    """

    viable_cells: float
    volume_ml: float
    viability_pct: float
    number: int = 0
    recovered: bool = False

    @property
    def vcd_per_ml(self) -> float:
        return self.viable_cells / self.volume_ml if self.volume_ml > 0 else 0.0


class AlreadyHarvested(DeviceBusyError):
    """A harvest of a bag that is empty because it was harvested; carries that harvest."""

    def __init__(self, device: str, harvest: Harvest) -> None:
        self.device = device
        self.harvest = harvest
        super().__init__(
            f"{device}: the bag is empty: it was already harvested (harvest {harvest.number}: "
            f"{harvest.viable_cells:.4g} viable cells in {harvest.volume_ml:.1f} mL, "
            f"{harvest.viability_pct:.1f} % viable); nothing was sent"
        )


class Bioreactor(Driver):
    """A rocking-bag bioreactor; see the module docstring."""

    kind = "bioreactor"
    trends = (
        "temperature",
        "do",
        "ph",
        "volume",
        "perfusion_rate",
        "sample_vcd",
        "sample_viability",
    )
    trend_period = 300.0  # a culture of days: a point every 5 min
    argument_limits: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "set_temperature": {"celsius": "temperature_sp"},
        "set_co2": {"percent": "co2_sp"},
        "set_rocking": {"rate_rpm": "rock_rate_sp", "angle_deg": "rock_angle_sp"},
        "start_perfusion": {"rate_ml_per_day": "perfusion_rate_sp"},
        "set_perfusion_rate": {"rate_ml_per_day": "perfusion_rate_sp"},
        "perfuse": {"rate_ml_per_day": "perfusion_rate_sp"},
        "seed": {"volume_ml": "volume"},
    }
    required_signals: ClassVar[tuple[str, ...]] = (
        "temperature",
        "temperature_sp",
        "do",
        "ph",
        "co2",
        "co2_sp",
        "rock_rate",
        "rock_rate_sp",
        "rock_angle",
        "rock_angle_sp",
        "rocking",
        "perfusing",
        "volume",
        "perfusion_rate",
        "perfusion_rate_sp",
        "glucose",
        "lactate",
        "ammonia",
        "culture_day",
        "status",
        "alarm",
        *PROGRAM_SIGNALS,
        *HARVEST_SIGNALS,
    )
    required_commands: ClassVar[tuple[str, ...]] = (
        "seed",
        "start_rocking",
        "stop_rocking",
        "start_perfusion",
        "stop_perfusion",
        "feed",
        "sample",
        "harvest",
        "abort",
    )
    targets: ClassVar[Mapping[str, str]] = {
        "temperature": "temperature_sp",
        "co2": "co2_sp",
        "rock_rate": "rock_rate_sp",
        "rock_angle": "rock_angle_sp",
        "perfusion_rate": "perfusion_rate_sp",
    }
    #: Setpoints, stops, the device's idempotent abort, perfuse (it brings the
    #: pumps to a rate from whatever state it reads) and reads. ``sample`` too:
    #: a second sending draws another sample (1 mL in a batch, from a culture of
    #: at least 300 mL) and returns a fresh count of the same culture, which is
    #: what the step asks for; the lost count cannot be read back (the device's
    #: ``sample_*`` tags do not say which sample they are).
    resendable: ClassVar[frozenset[str]] = frozenset(
        {
            "set_temperature",
            "set_co2",
            "set_rocking",
            "set_perfusion_rate",
            "stop_rocking",
            "stop_perfusion",
            "perfuse",
            "abort",
            "sample",
            "culture",
            "metabolites",
            "alarms",
            "last_harvest",
            "status",
            "alarm",
            "reading",
            "program",
            "wait_program_done",
        }
    )

    # -- culture ------------------------------------------------------------------

    async def seed(
        self, viable_cells: float, volume_ml: float, viability_pct: float = 95.0
    ) -> None:
        """Inoculate the empty bag with ``viable_cells`` in ``volume_ml`` of medium."""
        self.check_limits("volume", volume_ml)
        _check_range("viability_pct", viability_pct, VIABILITY_LIMITS_PCT, "%")
        cells = _finite("viable_cells", viable_cells)
        if not 0 < cells <= MAX_SEED_DENSITY_PER_ML * volume_ml:
            raise OutOfRangeError(
                f"viable_cells: {cells:g} must be > 0 and at most "
                f"{MAX_SEED_DENSITY_PER_ML:g}/mL in {volume_ml:g} mL"
            )
        await self.command("seed", cells, float(volume_ml), float(viability_pct))

    async def feed(self, volume_ml: float) -> None:
        """Add a bolus of fresh medium; refused unsent if the bag would pass its working volume.

        The bolus is checked first, then the volume in the bag is read: a feed
        that would take the culture above the profile's upper ``volume`` limit
        raises OutOfRangeError and no feed is sent.
        """
        limits = self.limits("volume")
        high = limits[1] if limits is not None else math.inf
        volume = _finite("volume_ml", volume_ml)
        if not 0 < volume <= high:
            raise OutOfRangeError(f"volume_ml: feed of {volume:g} mL outside (0, {high:g}] mL")
        if limits is not None:
            held = _float(await self.get("volume"))
            if held + volume > high:
                raise OutOfRangeError(
                    f"volume_ml: feed of {volume:g} mL onto the {held:.1f} mL in the bag would "
                    f"make {held + volume:.1f} mL, above the {high:g} mL working volume"
                )
        await self.command("feed", volume)

    async def sample(self, volume_ml: float = 1.0) -> Sample:
        """Draw ``volume_ml`` and count it: viable cell density and viability."""
        volume = _check_range("volume_ml", volume_ml, SAMPLE_LIMITS_ML, "mL")
        vcd, viability = await self._results("sample", 2, volume)
        return Sample(vcd_per_ml=vcd, viability_pct=viability, volume_ml=volume)

    async def harvest(self, *, recover_within: float = RECOVER_WITHIN_S) -> Harvest:
        """Drain the bag (rocker and perfusion must be stopped); ends the culture program.

        An empty bag is refused unsent: :class:`AlreadyHarvested` (with that
        harvest's figures) when it was harvested, DeviceBusyError otherwise.
        When the reply is lost (timeout, dropped link, damaged frame) the
        harvest may have drained the bag: this waits up to ``recover_within``
        process seconds for the link, reads the device's ``harvest_*`` tags and
        returns them (``recovered=True``) if the harvest landed; if it did not,
        the original error is raised, noting that the bag is untouched.
        """
        before = await self.read(("volume", *HARVEST_SIGNALS))
        count = _whole(before["harvest_count"])
        if _float(before["volume"]) <= 0:
            if count > 0:
                raise AlreadyHarvested(self.name, self._harvest_from(before))
            raise DeviceBusyError(f"{self.name}: the bag is empty: nothing to harvest")
        try:
            cells, volume, viability = await self._results("harvest", 3)
        except (DeviceBusyError, OutOfRangeError):
            raise  # the device refused: the bag is as it was
        except FlexctlError as exc:
            return await self._recover_harvest(count, exc, recover_within)
        return Harvest(cells, volume, viability, number=count + 1)

    async def last_harvest(self) -> Harvest | None:
        """The last harvest as the device keeps it; None if it has harvested nothing yet."""
        values = await self.read(HARVEST_SIGNALS)
        if _whole(values["harvest_count"]) == 0:
            return None
        return self._harvest_from(values)

    async def _recover_harvest(self, before: int, error: FlexctlError, within: float) -> Harvest:
        """After a harvest without a (good) reply: did it land? Its figures if so."""
        if not await self.link_up(within):
            error.add_note(
                f"{self.name}: the harvest may have drained the bag and the link is still down "
                f"after {within:g} s; the device keeps the figures: call last_harvest() once it "
                "is back"
            )
            raise error
        try:
            values = await self.read(("volume", *HARVEST_SIGNALS))
        except FlexctlError as exc:
            error.add_note(
                f"{self.name}: the harvest may have drained the bag, and reading it back failed "
                f"({type(exc).__name__}: {exc}); the device keeps the figures: call "
                "last_harvest()"
            )
            raise error from exc
        count = _whole(values["harvest_count"])
        if count > before:
            harvest = self._harvest_from(values, recovered=True)
            log.warning(
                "harvest reply lost; figures read back from the device",
                device=self.name,
                error=str(error),
                harvest=harvest.number,
                viable_cells=harvest.viable_cells,
                volume_ml=harvest.volume_ml,
                viability_pct=harvest.viability_pct,
            )
            return harvest
        error.add_note(
            f"{self.name}: the harvest did not happen (harvest count still {count}, "
            f"{_float(values['volume']):.1f} mL in the bag): it is safe to harvest again"
        )
        raise error

    def _harvest_from(self, values: dict[str, Value], *, recovered: bool = False) -> Harvest:
        return Harvest(
            viable_cells=_float(values["harvest_cells"]),
            volume_ml=_float(values["harvest_volume_ml"]),
            viability_pct=_float(values["harvest_viability"]),
            number=_whole(values["harvest_count"]),
            recovered=recovered,
        )

    async def culture(self) -> CultureState:
        """Temperature, DO, pH, CO2, rocking, volume, perfusion, age, status, alarms."""
        v = await self.read(CULTURE_SIGNALS)
        return CultureState(
            temperature_c=_float(v["temperature"]),
            do_pct=_float(v["do"]),
            ph=_float(v["ph"]),
            co2_pct=_float(v["co2"]),
            rock_rate_rpm=_float(v["rock_rate"]),
            volume_ml=_float(v["volume"]),
            perfusion_rate_ml_per_day=_float(v["perfusion_rate"]),
            culture_day=_float(v["culture_day"]),
            status=self.as_status(v["status"]),
            alarms=_alarms(v["alarm"]),
        )

    async def metabolites(self) -> Metabolites:
        """Glucose, lactate and ammonia, in one read."""
        v = await self.read(("glucose", "lactate", "ammonia"))
        return Metabolites(
            glucose_g_per_l=_float(v["glucose"]),
            lactate_g_per_l=_float(v["lactate"]),
            ammonia_mm=_float(v["ammonia"]),
        )

    async def alarms(self) -> tuple[str, ...]:
        """Active alarm names (OVERFILL, TEMP_DEVIATION, DO_LOW ...); empty when none."""
        return _alarms(await self.get("alarm"))

    # -- controlled quantities ------------------------------------------------------

    async def set_temperature(
        self,
        celsius: float,
        *,
        within: float | None = None,
        tolerance: float | None = None,
        poll: float = 60.0,
    ) -> None:
        """Set the culture temperature; with ``within`` (process s), wait until it is there."""
        if within is None:
            await self.set("temperature_sp", celsius)
        else:
            await self.set_and_wait(
                "temperature_sp",
                celsius,
                readback="temperature",
                tolerance=tolerance,
                within=within,
                poll=poll,
            )

    async def set_co2(
        self,
        percent: float,
        *,
        within: float | None = None,
        tolerance: float | None = None,
        poll: float = 60.0,
    ) -> None:
        """Set the headspace CO2; with ``within`` (process s), wait until it is there."""
        if within is None:
            await self.set("co2_sp", percent)
        else:
            await self.set_and_wait(
                "co2_sp", percent, readback="co2", tolerance=tolerance, within=within, poll=poll
            )

    async def set_rocking(
        self,
        rate_rpm: float,
        angle_deg: float,
        *,
        within: float | None = None,
        tolerance: float | None = None,
        poll: float = 10.0,
    ) -> None:
        """Set rock rate and angle (both checked before either is sent).

        With ``within`` (process s), wait until the rocker runs at them; a
        stopped rocker never gets there (ConditionTimeout).
        """
        self.check_limits("rock_rate_sp", rate_rpm)
        self.check_limits("rock_angle_sp", angle_deg)
        await self.set("rock_rate_sp", rate_rpm)
        await self.set("rock_angle_sp", angle_deg)
        if within is None:
            return
        rate_band = (
            tolerance if tolerance is not None else self._tolerance("rock_rate_sp", "rock_rate")
        )
        angle_band = (
            tolerance if tolerance is not None else self._tolerance("rock_angle_sp", "rock_angle")
        )

        def at_speed(v: dict[str, Value]) -> bool:
            return (
                v["rocking"] is True
                and abs(_float(v["rock_rate"]) - rate_rpm) <= rate_band
                and abs(_float(v["rock_angle"]) - angle_deg) <= angle_band
            )

        await self.wait_until(
            ["rocking", "rock_rate", "rock_angle"],
            at_speed,
            within=within,
            poll=poll,
            what=f"rocking at {rate_rpm:g} rpm / {angle_deg:g} deg",
        )

    async def start_rocking(self) -> None:
        """Start the rocker at its rate and angle setpoints (DeviceBusyError if it runs)."""
        await self.command("start_rocking")

    async def stop_rocking(self) -> None:
        """Stop the rocker (no-op if stopped)."""
        await self.command("stop_rocking")

    async def start_perfusion(self, rate_ml_per_day: float) -> None:
        """Start the perfusion pumps at ``rate_ml_per_day`` (DeviceBusyError if they run)."""
        self.check_limits("perfusion_rate_sp", rate_ml_per_day)
        await self.command("start_perfusion", float(rate_ml_per_day))

    async def set_perfusion_rate(self, rate_ml_per_day: float) -> None:
        """Change the perfusion rate setpoint (takes effect at once if the pumps run)."""
        await self.set("perfusion_rate_sp", rate_ml_per_day)

    async def stop_perfusion(self) -> None:
        """Stop the perfusion pumps (no-op if stopped); the rate setpoint is kept."""
        await self.command("stop_perfusion")

    async def perfuse(self, rate_ml_per_day: float) -> None:
        """Bring perfusion to a rule's rate: start, change or (at 0) stop the pumps."""
        self.check_limits("perfusion_rate_sp", rate_ml_per_day)
        running = await self.get("perfusing") is True
        if rate_ml_per_day <= 0:
            if running:
                await self.stop_perfusion()
        elif running:
            await self.set_perfusion_rate(rate_ml_per_day)
        else:
            await self.start_perfusion(rate_ml_per_day)

    # -- program and safe state -----------------------------------------------------

    async def abort(self) -> None:
        """Abort the culture on the device, in one command.

        The device stops perfusion and rocking (no pump or motor runs
        unattended), leaves temperature and CO2 control on, and marks a running
        culture Aborted. One command, so it cannot be half applied: if it
        fails, the error propagates and nothing is marked.
        """
        await self.command("abort")

    async def safe_state(self, action: SafeAction) -> None:
        """Leave the culture safe when the batch holds or aborts.

        HOLD pauses perfusion (the rate setpoint is kept, so a restart resumes
        it) and changes nothing else: temperature and CO2 stay controlled and
        the rocker keeps running, because a held culture must stay alive and
        rocking is its only oxygen supply. ABORT is the device's own
        :meth:`abort`: perfusion and rocking stop, temperature and CO2 control
        stay on so the cells stay warm until a person decides, and the culture
        reads Aborted; if the command fails, its error propagates.
        """
        if action is SafeAction.HOLD:
            await self.stop_perfusion()
            return
        await self.abort()

    # -- crash recovery ---------------------------------------------------------------

    async def recover(self, method: str, args: Mapping[str, Value]) -> Recovered | None:
        """Did ``method(**args)``, sent before a supervisor crash, take effect? (device reads only).

        - ``seed``: a culture in the bag of the seed's volume: done; an empty bag:
          not done; a culture of another volume: CannotTell.
        - ``harvest``: an empty bag with a harvest on record: done, with that
          harvest's figures; a bag with culture in it: not done.
        - ``start_rocking`` (refused by the device while it rocks): rocking: done.
        - ``start_perfusion`` (refused while perfusing): perfusing at the rate
          asked: done; not perfusing, or at another rate: not done.
        - :attr:`resendable` methods: not done (send again); others: CannotTell.
        """
        if method == "seed":
            return await self._recover_seed(_number(self.name, args, "volume_ml"))
        if method == "harvest":
            return await self._recover_lost_harvest()
        if method == "start_rocking":
            return Recovered(None) if await self.get("rocking") is True else None
        if method == "start_perfusion":
            rate = _number(self.name, args, "rate_ml_per_day")
            return await self._recover_start_perfusion(rate)
        return await super().recover(method, args)

    async def _recover_seed(self, volume_ml: float) -> Recovered | None:
        values = await self.read(("volume", "culture_day", "program_state"))
        volume = _float(values["volume"])
        if volume <= 0:
            return None  # an empty bag: the seed did not land
        # The device refuses a seed into a bag that is not empty, so a culture of
        # this volume is this seed's; one of another volume was there before it.
        if abs(volume - volume_ml) <= SEED_VOLUME_TOLERANCE * volume_ml:
            return Recovered(None)
        raise CannotTell(
            f"{self.name}: the bag holds {volume:.1f} mL of culture (day "
            f"{_float(values['culture_day']):.2f}, program {values['program_state']}), not the "
            f"{volume_ml:g} mL the seed asked for: either a culture was in the bag before "
            "(and the device refused the seed) or this seed's culture has been fed, sampled "
            "or perfused since"
        )

    async def _recover_lost_harvest(self) -> Recovered | None:
        values = await self.read(("volume", *HARVEST_SIGNALS))
        if _float(values["volume"]) > 0:
            return None  # culture still in the bag: it was not drained
        if _whole(values["harvest_count"]) == 0:
            return None  # empty and never harvested: the device refuses it as before
        # Only a harvest empties a bag (a sample may not drain it), so an empty bag
        # with a harvest on record was drained by it; the device keeps its figures.
        # (If the bag was already empty when the harvest was sent, the method
        # would have raised AlreadyHarvested with these same figures.)
        harvest = self._harvest_from(values, recovered=True)
        log.warning(
            "harvest sent before a restart; figures read back from the device",
            device=self.name,
            harvest=harvest.number,
            viable_cells=harvest.viable_cells,
            volume_ml=harvest.volume_ml,
            viability_pct=harvest.viability_pct,
        )
        return Recovered(harvest)

    async def _recover_start_perfusion(self, rate_ml_per_day: float) -> Recovered | None:
        values = await self.read(("perfusing", "perfusion_rate_sp"))
        if values["perfusing"] is not True:
            return None
        # start_perfusion writes the rate it is given; another rate means the pumps
        # ran before it and the device refused it (as it would again).
        rate = _float(values["perfusion_rate_sp"])
        if math.isclose(rate, rate_ml_per_day, rel_tol=1e-6, abs_tol=1e-3):
            return Recovered(None)
        return None

    def describe(self) -> dict[str, Any]:
        """Signals, commands and what hold and abort do to this device."""
        description = super().describe()
        description["safe_state"] = dict(SAFE_STATE)
        description["program_steps"] = [
            {"number": number, "name": name}
            for number, name in (STEP_BATCH, STEP_PERFUSION, STEP_HARVEST)
        ]
        return description

    # -- helpers ----------------------------------------------------------------------

    async def _results(self, name: str, count: int, *args: Value) -> list[float]:
        results = await self.command(name, *args)
        if len(results) != count:
            raise ProtocolError(self.name, f"{name}: {len(results)} result(s), expected {count}")
        return [_float(r) for r in results]


def _float(value: Value) -> float:
    return float(value)


def _whole(value: Value) -> int:
    return int(value)


def _number(device: str, args: Mapping[str, Value], name: str) -> float:
    """A number argument of a journaled call; CannotTell when it is missing or not one."""
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CannotTell(f"{device}: the journaled call gives no number {name} (got {value!r})")
    return float(value)


def _alarms(value: Value) -> tuple[str, ...]:
    return tuple(a for a in str(value).split(",") if a)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRangeError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise OutOfRangeError(f"{name}: {number} is not a finite number")
    return number


def _check_range(name: str, value: float, limits: tuple[float, float], unit: str) -> float:
    number = _finite(name, value)
    low, high = limits
    if not low <= number <= high:
        raise OutOfRangeError(
            f"{name}: {number:g} {unit} is outside the limits [{low:g}, {high:g}] {unit}"
        )
    return number
