"""What every instrument driver shares: named signals over a transport, in device terms.

A driver never knows which transport it talks through; its profile binds each
signal and command name to an address. Like frappy (SECoP) devices, drivers
expose a value, a target and a status (idle, busy, warn, error); long
operations have a program state shaped like OPC UA LADS (Stopped, Running,
Complete, Aborted, with the current step and runtime).

Limits come from the profile and are checked before anything is sent. Waiting
is done in process time on the injected clock, so the same driver code runs in
seconds under a virtual clock and in hours on hardware.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from flexctl.clock import Clock
from flexctl.errors import (
    ConditionTimeout,
    ConfigurationError,
    FlexctlError,
    OutOfRangeError,
    ProtocolError,
    Where,
)
from flexctl.profile import Profile, Value
from flexctl.transports.base import ConnectionState, Transport


class DeviceStatus(StrEnum):
    """frappy/SECoP-style status."""

    IDLE = "idle"
    BUSY = "busy"
    WARN = "warn"
    ERROR = "error"


class ProgramState(StrEnum):
    """The LADS FunctionalStateMachine states a device program reports."""

    STOPPED = "stopped"
    RUNNING = "running"
    COMPLETE = "complete"
    ABORTED = "aborted"


class SafeAction(StrEnum):
    """Why a device is asked into its safe state: the batch holds or aborts."""

    HOLD = "hold"
    ABORT = "abort"


@dataclass(frozen=True)
class Recovered:
    """A command sent before a crash took effect: what the command would have returned."""

    result: Any = None


class CannotTell(FlexctlError):
    """The device state does not show whether a command sent before a crash took effect."""


@dataclass(frozen=True)
class Program:
    """The LADS ActiveProgram view: state, current step and runtime."""

    state: ProgramState
    step_name: str
    step_number: int
    runtime_s: float


@dataclass(frozen=True)
class Reading:
    """A controlled quantity: what it is, what it is asked to be, how it is doing."""

    value: Value
    target: Value | None
    status: DeviceStatus


PROGRAM_SIGNALS = ("program_state", "step_name", "step_number", "runtime_s")
#: Signals the driver turns into its own enums: the profile must give them an enum.
ENUM_SIGNALS: Mapping[str, type[StrEnum]] = {
    "status": DeviceStatus,
    "program_state": ProgramState,
}


class Driver(ABC):
    """Device semantics over a transport; subclasses name what their profile must bind."""

    kind: ClassVar[str]
    #: Signals and commands the profile must bind for this driver to work.
    required_signals: ClassVar[tuple[str, ...]] = ()
    required_commands: ClassVar[tuple[str, ...]] = ()
    #: Process value -> its setpoint signal, for :meth:`reading` and :meth:`set_and_wait`.
    targets: ClassVar[Mapping[str, str]] = {}
    #: Method -> argument -> the signal whose profile limits bound it, so a
    #: procedure's literal arguments are checked before a batch starts.
    argument_limits: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    #: Methods whose second sending does what one does (see :meth:`recover`).
    resendable: ClassVar[frozenset[str]] = frozenset()
    #: Process values the historian keeps (those the profile binds), read with
    #: the interlock monitor's check of the device, at most every ``trend_period``
    #: process seconds (a slow process needs fewer points).
    trends: ClassVar[tuple[str, ...]] = ()
    trend_period: ClassVar[float] = 60.0

    def __init__(self, name: str, transport: Transport, clock: Clock) -> None:
        self.name = name
        self.transport = transport
        self.clock = clock
        self.check_profile(transport.profile)

    @classmethod
    def check_profile(cls, profile: Profile, where: Where | None = None) -> None:
        """Refuse a profile this driver cannot work with (ConfigurationError).

        ``where`` is the place to blame for missing signals (default: the
        profile; a line file names the device entry that chose the profile).
        """
        missing = [s for s in cls.required_signals if s not in profile.signals]
        missing += [f"{c}()" for c in cls.required_commands if c not in profile.commands]
        if missing:
            raise ConfigurationError(
                where or profile.where,
                f"profile {profile.name} cannot drive a {cls.kind}: it lacks {', '.join(missing)}",
            )
        # The driver turns these signals into its own enums; a profile that gives
        # no enum, or spells the names differently, would fail at run time, so it
        # fails here instead.
        for signal, members in ENUM_SIGNALS.items():
            spec = profile.signals.get(signal)
            if spec is None:
                continue
            known = [m.value for m in members]
            if spec.enum is None:
                raise ConfigurationError(
                    spec.where,
                    f"signal {signal}: needs an enum naming its values on the wire, "
                    f"from {', '.join(known)} (for example enum: [{', '.join(known)}])",
                )
            unknown = sorted(set(spec.enum) - set(known))
            if unknown:
                raise ConfigurationError(
                    spec.where,
                    f"signal {signal}: enum names {', '.join(unknown)} are not among "
                    f"{', '.join(sorted(known))}",
                )

    # -- link ---------------------------------------------------------------------

    async def connect(self) -> None:
        await self.transport.connect()

    async def close(self) -> None:
        await self.transport.close()

    @property
    def source(self) -> str:
        return self.transport.source

    async def link_up(self, within: float) -> bool:
        """Wait up to ``within`` process seconds for the link; True once it is up.

        For recovery after a lost reply: the transport reconnects by itself in
        the background, and this waits for it on the clock, not the wall.
        """
        transport = self.transport
        if self._link_is_up():
            return True
        loop = asyncio.get_running_loop()
        link = loop.create_task(transport.wait_connected(), name=f"{self.name}-link-up")
        timer = loop.create_task(self.clock.sleep(within), name=f"{self.name}-link-wait")
        try:
            await asyncio.wait((link, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (link, timer):
                task.cancel()
            await asyncio.gather(link, timer, return_exceptions=True)
        return self._link_is_up()

    def _link_is_up(self) -> bool:
        return self.transport.state is ConnectionState.CONNECTED

    # -- signals and commands -----------------------------------------------------

    async def read(self, names: Sequence[str]) -> dict[str, Value]:
        """Read several signals in one batched request where the protocol allows."""
        values = await self.transport.read([self.transport.signal(n) for n in names])
        return dict(zip(names, values, strict=True))

    async def get(self, name: str) -> Value:
        return await self.transport.read_one(self.transport.signal(name))

    async def set(self, name: str, value: Value) -> None:
        """Write a setpoint; a value outside the profile's limits is refused unsent."""
        address = self.transport.signal(name)
        address.spec.check_limits(value)
        await self.transport.write(address, value)

    async def command(self, name: str, *args: Value) -> list[Value]:
        return await self.transport.call(self.transport.command(name), list(args))

    def limits(self, name: str) -> tuple[float, float] | None:
        return self.transport.profile.signal(name).limits

    def check_limits(self, name: str, value: Value) -> None:
        """Refuse a command argument outside the limits the profile gives the signal ``name``."""
        self.transport.profile.signal(name).check_limits(value)

    # -- waiting in process time ----------------------------------------------------

    async def wait_until(
        self,
        signals: Sequence[str],
        condition: Callable[[dict[str, Value]], bool],
        *,
        within: float,
        poll: float,
        what: str,
    ) -> dict[str, Value]:
        """Poll ``signals`` every ``poll`` s until ``condition`` holds.

        ``within`` and ``poll`` are process seconds (the clock's, not the
        loop's); ConditionTimeout when ``within`` passes first.
        """
        if poll <= 0 or within < 0:
            raise OutOfRangeError(f"{what}: poll must be > 0 and within >= 0")
        deadline = self.clock.now() + within
        while True:
            values = await self.read(signals)
            if condition(values):
                return values
            if self.clock.now() >= deadline:
                raise ConditionTimeout(self.name, what, within)
            await self.clock.sleep_until(min(deadline, self.clock.now() + poll))

    async def set_and_wait(
        self,
        setpoint: str,
        value: float,
        *,
        readback: str,
        tolerance: float | None = None,
        within: float,
        poll: float = 10.0,
    ) -> Value:
        """Write ``setpoint`` and wait until ``readback`` is within tolerance of it."""
        band = tolerance if tolerance is not None else self._tolerance(setpoint, readback)
        await self.set(setpoint, value)

        def settled(values: dict[str, Value]) -> bool:
            current = values[readback]
            return isinstance(current, int | float) and abs(float(current) - value) <= band

        values = await self.wait_until(
            [readback],
            settled,
            within=within,
            poll=poll,
            what=f"{readback} within {band:g} of {value:g}",
        )
        return values[readback]

    def _tolerance(self, setpoint: str, readback: str) -> float:
        for name in (readback, setpoint):
            tolerance = self.transport.profile.signal(name).tolerance
            if tolerance is not None:
                return tolerance
        raise ConfigurationError(
            self.transport.profile.where,
            f"no tolerance for {readback}: give one in the call or as 'tolerance' in the profile",
        )

    # -- state ----------------------------------------------------------------------

    def as_status(self, value: Value) -> DeviceStatus:
        """A ``status`` value read from the device; ProtocolError if it is none of ours."""
        try:
            return DeviceStatus(str(value))
        except ValueError:
            raise ProtocolError(
                self.name,
                f"status: the device reports {value!r}, not one of "
                f"{', '.join(m.value for m in DeviceStatus)}",
            ) from None

    def as_program_state(self, value: Value) -> ProgramState:
        """A ``program_state`` value read from the device; ProtocolError if it is none of ours."""
        try:
            return ProgramState(str(value))
        except ValueError:
            raise ProtocolError(
                self.name,
                f"program_state: the device reports {value!r}, not one of "
                f"{', '.join(m.value for m in ProgramState)}",
            ) from None

    async def status(self) -> DeviceStatus:
        return self.as_status(await self.get("status"))

    async def alarm(self) -> str:
        """The device's own alarm code, "" when none."""
        return str(await self.get("alarm"))

    async def reading(self, name: str) -> Reading:
        """Value, target and status of one controlled quantity, in one batched read."""
        names = [name, "status"]
        target = self.targets.get(name)
        if target is not None:
            names.append(target)
        values = await self.read(names)
        return Reading(
            value=values[name],
            target=None if target is None else values[target],
            status=self.as_status(values["status"]),
        )

    async def program(self) -> Program:
        """The device's program (LADS ActiveProgram): state, step and runtime, in one read."""
        return self.as_program(await self.read(PROGRAM_SIGNALS))

    def as_program(self, values: Mapping[str, Value]) -> Program:
        """A :class:`Program` from the values of :data:`PROGRAM_SIGNALS`."""
        return Program(
            state=self.as_program_state(values["program_state"]),
            step_name=str(values["step_name"]),
            step_number=int(values["step_number"]),
            runtime_s=float(values["runtime_s"]),
        )

    async def wait_program_done(self, *, within: float, poll: float = 30.0) -> ProgramState:
        """Wait until the running program is Complete or Aborted; returns which."""
        done = {ProgramState.COMPLETE.value, ProgramState.ABORTED.value}
        values = await self.wait_until(
            ["program_state"],
            lambda v: str(v["program_state"]) in done,
            within=within,
            poll=poll,
            what="program complete",
        )
        return self.as_program_state(values["program_state"])

    @abstractmethod
    async def safe_state(self, action: SafeAction) -> None:
        """Put the device where a held or aborted batch leaves it safely."""

    async def recover(self, method: str, args: Mapping[str, Value]) -> Recovered | None:
        """After a supervisor crash: did ``method(**args)``, sent just before it, take effect?

        Reads the device (never sends the command) and returns :class:`Recovered`
        with what the method would have returned when the device shows it took
        effect (waiting, as the method would, for what it waits for), or None
        when the device shows it did not, so sending it again is safe. Raises
        :class:`CannotTell` when the device state cannot say: a person decides.

        The default: a method in :attr:`resendable` (one whose second sending
        does what one does: a setpoint, a start or stop that is already so) is
        None; any other method cannot tell.
        """
        if method in self.resendable:
            return None
        raise CannotTell(f"{self.name}: the device state does not show whether {method} ran")

    def describe(self) -> dict[str, Any]:
        """Signals and commands with units and limits, for validation and the console."""
        profile = self.transport.profile
        return {
            "name": self.name,
            "kind": self.kind,
            "profile": profile.name,
            "source": self.source,
            "signals": {
                name: {
                    "type": spec.type,
                    "unit": spec.unit,
                    "writable": spec.writable,
                    "limits": list(spec.limits) if spec.limits else None,
                    "enum": list(spec.enum) if spec.enum else None,
                }
                for name, spec in profile.signals.items()
            },
            "commands": {
                name: {"args": list(spec.args)} for name, spec in profile.commands.items()
            },
        }
