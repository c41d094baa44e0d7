"""The step executor: runs one batch of a procedure on a line's drivers, in process time.

:class:`Batch` is what a batch is (id, procedure, parameter values, its ISA-88
state machine); :class:`Executor` runs it on a mapping of device name to
:class:`~drivers.base.Driver`, with time from the injected clock and
everything written to a :class:`~flexctl.record.journal.Journal`.

How it runs:

- ``run(actor=...)`` starts the batch (Idle -> Running) and runs the unit
  procedures in order and their steps in order; after the last one,
  Running -> Complete. It returns once the batch is Complete, Stopped or
  Aborted; in Held (and Paused) it waits for a person.
- The rules of a unit procedure run beside its steps: at the start of the unit
  procedure and then every ``every`` of process time, if ``when`` holds, their
  command is called. They keep running while the batch pauses, stop on hold,
  stop or abort, and end with their unit procedure.
- Pause takes effect at a step boundary (Pausing -> Paused when the current
  step ends). Stop ends the batch after the current step.
- Hold and Abort interrupt the running step at a safe point: a wait (a
  ``wait`` step, a ``wait_until`` poll interval, a prompt) is interrupted at
  once; a device request or driver command in flight is allowed to finish
  (I/O is never cancelled mid-request). Then every driver's
  ``safe_state(HOLD)`` (or ``ABORT``) is called; a failure is journaled as a
  deviation, and the others are still called; Held's reason names the
  devices whose hold safe state failed. A Stop or Abort that arrives while
  Holding (before the hold safe states ran) still runs them first. A device
  command is never sent once Hold or Abort has come, even if its arguments
  were being read then.
- Restart (by a person, never by ``system``) re-reads every device (waiting
  for a lost link to come back; alarms; every band signal, re-holding if one
  is still outside its band), then calls ``safe_state(HOLD)`` again on the
  devices where it failed and refuses the restart (holds again, naming them)
  if it still fails; then it re-runs the interrupted step from its start.
  A failure of the restart check itself (any exception) holds again.
- A step's device command whose reply was lost (CommunicationTimeout or
  NotConnectedError from the command itself: it may have acted) has an
  unknown outcome and is never re-sent by itself: a plain Restart journals
  the deviation "outcome of <step> unknown: a person must decide" and holds
  again. The person restarts with ``command(Restart, resolve="resend")``
  (send it again) or ``resolve="done"`` (it took effect; the step ends
  without sending it and with no result fields); the decision is journaled
  with the person as actor.
- Interlocks hold the batch by themselves (actor ``system``): a device that
  stops answering (a read fails with NotConnectedError or
  CommunicationTimeout, or its link leaves CONNECTED), a value out of its band
  for longer than its delay, or an interlocking device alarm. A monitor task
  polls every device every ``monitor_period`` of process time while the batch
  is Running, Pausing or Paused.
- A step that fails (the device refuses, an expression cannot be evaluated,
  a prompt is declined) is a deviation: the batch holds and a person decides.
- Fail safe: an unexpected exception from a driver in the monitor, or the
  monitor ending while the batch is not final, holds the batch. A journal
  entry that cannot be written is logged (critical) and holds the batch; the
  safety action (hold, interrupting the workers) always comes before the
  journal entry that records it.

Nothing here sleeps on the event loop or reads the wall clock: process time
comes from the clock only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import math
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import structlog

from drivers.base import CannotTell, DeviceStatus, Driver, SafeAction
from flexctl.clock import Clock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    FlexctlError,
    NotConnectedError,
    Where,
)
from flexctl.procedure.loader import check_parameter_value
from flexctl.procedure.model import (
    Argument,
    BandInterlock,
    Call,
    CommandStep,
    Expr,
    InterlockSpec,
    Literal,
    OnTimeout,
    Procedure,
    ProcedureError,
    PromptStep,
    RecordStep,
    Rule,
    SetStep,
    Step,
    UnitProcedure,
    WaitStep,
    WaitUntilStep,
)
from flexctl.procedure.validate import NOT_COMMANDS, parse_parameter_values
from flexctl.profile import Value
from flexctl.record.journal import SYSTEM, EntryKind, Journal, JournalEntry, jsonable
from flexctl.record.signed import prompt_signature_hash
from flexctl.record.store import Sample
from flexctl.supervisor.alarm_defs import AlarmDefinition
from flexctl.supervisor.alarm_states import AlarmEvent, AlarmTransition
from flexctl.supervisor.alarms import AlarmMonitor
from flexctl.supervisor.batch_state import (
    FINAL,
    BatchCommand,
    BatchState,
    BatchStateMachine,
    IllegalCommand,
    Transition,
    UnknownCommand,
)
from flexctl.supervisor.interlocks import AlarmInterlock, Interlock, parse_alarms
from flexctl.supervisor.prompts import PromptDeclined, Prompter, PromptRequest, check_answer
from flexctl.supervisor.resumption import Resumption
from flexctl.transports.base import ConnectionState

__all__ = [
    "HOLDABLE",
    "MONITORED",
    "Batch",
    "CommandRefused",
    "Executor",
]

T = TypeVar("T")

S = BatchState
C = BatchCommand

#: States a system hold can be given in (the state machine's Hold rows).
HOLDABLE: Final = frozenset({S.Running, S.Pausing, S.Paused, S.Restarting})
#: States in which the monitor polls the devices (in Stopping a trip is journaled only).
MONITORED: Final = frozenset({S.Running, S.Pausing, S.Paused, S.Stopping})
#: A person's decisions, at Restart, on a step command of unknown outcome.
RESOLVE: Final = ("resend", "done")
#: What a device that stops answering raises.
LOST: Final = (NotConnectedError, CommunicationTimeout)

log = structlog.get_logger("flexctl.supervisor.executor")


class SampleSink(Protocol):
    """Where the monitor's trend values go (:class:`flexctl.record.historian.Historian`)."""

    def extend(self, samples: Iterable[Sample]) -> None: ...


class CommandRefused(FlexctlError):
    """A batch command the executor refuses whatever the state (a restart by ``system``)."""


@dataclass
class Batch:
    """One batch: its id, the procedure, this batch's parameter values and its state."""

    batch_id: str
    procedure: Procedure
    parameters: Mapping[str, Literal]
    machine: BatchStateMachine = field(default_factory=BatchStateMachine)

    def __post_init__(self) -> None:
        if not self.batch_id.strip():
            raise ValueError("a batch needs an id")
        self.parameters = _complete_parameters(self.procedure, self.parameters)

    @classmethod
    def create(cls, batch_id: str, procedure: Procedure, params: Sequence[str] = ()) -> Batch:
        """A batch with ``name=value`` parameters (defaults for the rest); ProcedureError."""
        return cls(batch_id, procedure, parse_parameter_values(procedure, params))

    @property
    def state(self) -> BatchState:
        return self.machine.state


def _complete_parameters(procedure: Procedure, given: Mapping[str, Literal]) -> dict[str, Literal]:
    problems: list[ConfigurationError] = []
    values: dict[str, Literal] = {}
    for name in given:
        if name not in procedure.parameters:
            problems.append(
                ConfigurationError(procedure.where, f"unknown parameter {name!r} for this batch")
            )
    for name, param in procedure.parameters.items():
        value = given.get(name, param.default)
        if value is None:
            problems.append(ConfigurationError(param.where, f"parameter {name} has no value"))
            continue
        why = check_parameter_value(param, value)
        if why is not None:
            problems.append(ConfigurationError(param.where, f"parameter {name}: {why}"))
            continue
        values[name] = value
    if problems:
        raise ProcedureError(problems)
    return values


class _Interrupted(Exception):
    """Raised in a worker at a safe point once it has been interrupted."""


class _Worker:
    """A task that is interrupted only at its safe points.

    A safe point is an await the worker marks with :meth:`safe` (a sleep on
    the clock, a prompt). :meth:`interrupt` cancels the task if it sits at one;
    otherwise (a device request in flight) it only leaves a note, and the
    worker stops at its next safe point or :meth:`checkpoint`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.task: asyncio.Task[Any] | None = None
        self.reason: str | None = None
        self.halted = False  # interrupted by Hold or Abort: nothing more goes to a device
        self._safe = False
        self._cancelled = False

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=self.name)
        self.task = task
        return task

    def checkpoint(self) -> None:
        if self.reason is not None:
            raise _Interrupted(self.reason)

    def before_send(self) -> None:
        """Right before a device command: stop if Hold or Abort came meanwhile."""
        if self.halted:
            raise _Interrupted(self.reason or "halted")

    async def safe(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.reason is not None:
            coro.close()
            raise _Interrupted(self.reason)
        self._safe = True
        try:
            return await coro
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._cancelled and task is not None:
                self._cancelled = False
                if task.uncancel() == 0:
                    raise _Interrupted(self.reason or "interrupted") from None
            raise
        finally:
            self._safe = False

    def interrupt(self, reason: str, *, halt: bool = False) -> None:
        if self.reason is None:
            self.reason = reason
        self.halted = self.halted or halt
        task = self.task
        if (
            self._safe
            and not self._cancelled
            and task is not None
            and not task.done()
            and task is not asyncio.current_task()
        ):
            self._cancelled = True
            task.cancel()

    async def stop(self, reason: str) -> None:
        """Interrupt at a safe point and wait until the task has ended."""
        self.interrupt(reason)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def kill(self) -> None:
        """Cancel now, wherever the task is (run() itself is being cancelled)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class _StepFailed(Exception):
    """A step ended without its result; the batch has been held or aborted already."""


@dataclass(frozen=True)
class _Unknown:
    """A step's device command that may or may not have reached the device."""

    unit_procedure: str
    step: str
    device: str
    method: str
    error: str


@dataclass
class _BandWatch:
    interlock: Interlock
    scope: str | None = None  # the unit procedure it is armed in; None: the whole batch
    out_since: float | None = None


@dataclass(frozen=True)
class _AlarmWatch:
    interlock: AlarmInterlock
    scope: str | None = None


def _armed_from(procedure: Procedure) -> tuple[list[_BandWatch], list[_AlarmWatch]]:
    """The procedure's interlocks, each with the unit procedure that arms it."""
    bands: list[_BandWatch] = []
    alarms: list[_AlarmWatch] = []
    scoped: list[tuple[str | None, InterlockSpec]] = [(None, i) for i in procedure.interlocks]
    for unit in procedure.unit_procedures:
        scoped += [(unit.name, i) for i in unit.interlocks]
    for scope, spec in scoped:
        if isinstance(spec, BandInterlock):
            band = Interlock(
                signal=str(spec.target),
                low=spec.low,
                high=spec.high,
                delay=spec.delay.seconds if spec.delay is not None else 0.0,
                name=spec.name,
            )
            bands.append(_BandWatch(band, scope))
        else:
            alarms.append(_AlarmWatch(AlarmInterlock(spec.device, frozenset(spec.codes)), scope))
    return bands, alarms


class Executor:
    """Runs one :class:`Batch` on ``drivers``; see the module docstring.

    Args:
        batch: the batch to run (its state machine starts Idle).
        drivers: device name -> connected driver, for every device the
            procedure and the interlocks name.
        clock: the process clock.
        journal: where every entry goes.
        prompter: who answers prompt steps (required if the procedure has any).
        interlocks: band and alarm interlocks armed for the whole batch, beside
            those the procedure arms.
        monitor_period: process seconds between two checks of a device the
            running unit procedure uses (or a batch-wide interlock watches).
        idle_period: the same for the other devices (default 15 monitor periods).
        link_wait: process seconds a restart waits for a lost link to come back.
        prompt_attempts: how often a prompt is asked before a wrong answer
            holds the batch.
        historian: takes each checked device's trend values (``Driver.trends``).
        sample_period: process seconds between two historian samples of a device
            (default: its driver's ``trend_period``; never faster than its checks).
        limit_alarms: ISA-18.2 limit alarms beside the procedure's own (``alarms:``),
            e.g. a line's per-device ones; read with the monitor's checks.
    """

    def __init__(
        self,
        batch: Batch,
        drivers: Mapping[str, Driver],
        *,
        clock: Clock,
        journal: Journal,
        prompter: Prompter | None = None,
        interlocks: Sequence[Interlock | AlarmInterlock] = (),
        monitor_period: float = 60.0,
        idle_period: float | None = None,
        link_wait: float = 120.0,
        prompt_attempts: int = 3,
        historian: SampleSink | None = None,
        limit_alarms: Sequence[AlarmDefinition] = (),
        sample_period: float | None = None,
    ) -> None:
        if idle_period is None:
            idle_period = 15 * monitor_period
        if (
            not 0 < monitor_period <= idle_period
            or not link_wait >= 0
            or prompt_attempts < 1
            or (sample_period is not None and not sample_period > 0)
        ):
            raise ValueError(
                "0 < monitor_period <= idle_period, link_wait >= 0, prompt_attempts >= 1 "
                "and sample_period > 0"
            )
        self.batch = batch
        self.procedure = batch.procedure
        self.machine = batch.machine
        self.drivers = dict(drivers)
        self.clock = clock
        self.journal = journal
        self.prompter = prompter
        bands, alarms = _armed_from(self.procedure)
        self._watches = [_BandWatch(i) for i in interlocks if isinstance(i, Interlock)] + bands
        self._alarm_watches = [
            _AlarmWatch(i) for i in interlocks if isinstance(i, AlarmInterlock)
        ] + alarms
        self.monitor_period = float(monitor_period)
        self.idle_period = float(idle_period)
        self.historian = historian
        self.sample_period = sample_period
        self._sampled_at: dict[str, float] = {}  # process time of each device's last sample
        self._historian_failing = False  # an outage is journaled once, and its end
        #: the ISA-18.2 limit alarms (the procedure's and those given), and per device
        #: the signals they watch, read with each monitor check of the device
        self.alarms = AlarmMonitor([*self.procedure.alarms, *limit_alarms])
        self._alarm_signals = _signals_by_device(self.alarms.definitions)
        # device -> the trend signals its profile binds (see Driver.trends)
        self._trends = {
            name: tuple(t for t in driver.trends if _has_signal(driver, t))
            for name, driver in self.drivers.items()
        }
        self.link_wait = float(link_wait)
        self.prompt_attempts = prompt_attempts
        self.results: dict[str, dict[str, Value]] = {}
        self._log = log.bind(batch=batch.batch_id)
        self._check_devices()
        # Devices a unit procedure uses are checked every monitor_period while it
        # runs; the others (idle, holding no product) every idle_period.
        self._batch_devices = frozenset(d for _, d in self._devices_named(()))
        self._unit_devices = {
            u.name: frozenset(d for _, d in self._devices_named((u,)))
            for u in self.procedure.unit_procedures
        }
        self._polled_at: dict[str, float] = {}  # process time of each device's last check
        self._alarms: dict[str, tuple[str, ...]] = {}
        self._tripped: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._unit: UnitProcedure | None = None
        self._step_worker: _Worker | None = None
        self._restart_worker: _Worker | None = None
        self._rules: list[_Worker] = []
        self._monitor: _Worker | None = None
        self._waiters: list[asyncio.Event] = []
        self._running = False
        self._closing = False
        self._hold_owed = False  # entered Holding; the hold safe states have not run yet
        self._unsafe: set[str] = set()  # devices whose hold safe state failed
        self._unknown: _Unknown | None = None  # a step command whose outcome is unknown
        self._done_by_decision: str | None = None  # step a person declared done at restart
        self._resumed: Resumption | None = None  # until the interrupted step is reached
        self._wait_began: dict[str, float] = {}  # a resumed wait step's original start
        # For the life of the executor, so a Reset after the run is journaled too.
        self.machine.on_change(self._on_transition)

    # -- checks at construction -----------------------------------------------------

    def _check_devices(self) -> None:
        missing: dict[str, Where] = {}
        for where, device in self._devices_named():
            if device not in self.drivers:
                missing.setdefault(device, where)
        for device, where in missing.items():
            raise ConfigurationError(
                where,
                f"device {device!r} has no driver in this run "
                f"(drivers: {', '.join(sorted(self.drivers)) or 'none'})",
            )
        if self.prompter is None:
            for step in self.procedure.steps():
                if isinstance(step, PromptStep):
                    raise ConfigurationError(
                        step.where, f"step {step.id} asks a person, but no prompter was given"
                    )

    def _devices_named(
        self, units: Sequence[UnitProcedure] | None = None
    ) -> list[tuple[Where, str]]:
        """Each device named by ``units`` (default: all) and the batch-wide interlocks."""
        step_ids = {s.id for s in self.procedure.steps()}
        found: list[tuple[Where, str]] = []

        def names(value: object) -> None:
            if not isinstance(value, Expr):
                return
            for name in sorted(value.names):
                head, dot, _ = name.partition(".")
                if dot and head not in step_ids:
                    found.append((value.where, head))

        def call(c: Call) -> None:
            found.append((c.target.device_where, c.target.device))
            for arg in c.args.values():
                names(arg.value)

        def interlock(spec: InterlockSpec) -> None:
            if isinstance(spec, BandInterlock):
                found.append((spec.target.device_where, spec.target.device))
            else:
                found.append((spec.device_where, spec.device))

        for unit in self.procedure.unit_procedures if units is None else units:
            for step in unit.steps:
                if isinstance(step, CommandStep):
                    call(step.call)
                elif isinstance(step, SetStep):
                    found.append((step.target.device_where, step.target.device))
                    names(step.value.value)
                elif isinstance(step, WaitUntilStep):
                    names(step.condition)
                elif isinstance(step, RecordStep):
                    names(step.expression)
                elif isinstance(step, PromptStep) and step.entry and step.entry.suggest:
                    names(step.entry.suggest.value)
            for rule in unit.rules:
                call(rule.call)
                names(rule.when)
            for spec in unit.interlocks:
                interlock(spec)
        for spec in self.procedure.interlocks:
            interlock(spec)
        if units is None or not units:  # batch-wide: the limit alarms' devices
            found += [(a.where, a.device) for a in self.alarms.definitions]
        where = Where("interlocks")
        found += [(where, w.interlock.device) for w in self._watches if w.scope is None]
        found += [(where, w.interlock.device) for w in self._alarm_watches if w.scope is None]
        return found

    # -- the state and person commands ------------------------------------------------

    @property
    def state(self) -> BatchState:
        return self.machine.state

    def command(
        self,
        cmd: BatchCommand | str,
        *,
        actor: str,
        reason: str = "",
        resolve: str | None = None,
    ) -> BatchState:
        """A person's batch command; returns the new state.

        ``resolve`` (Restart only) is the person's decision on a step command
        whose outcome is unknown: ``"resend"`` runs the step again (sends the
        command again), ``"done"`` takes it as done and goes on with the next
        step. It is journaled with the person as actor.

        Raises:
            CommandRefused: a restart by ``system`` (only a person restarts a
                held batch), no actor, or a ``resolve`` that is not valid
                (not a Restart, not "resend"/"done", nothing to resolve).
            IllegalCommand: the state does not accept ``cmd``.
            UnknownCommand: no such command.
        """
        try:
            command = BatchCommand(cmd)
        except ValueError:
            raise UnknownCommand(cmd) from None
        why = None
        if not actor.strip():
            why = "a batch command needs the person who gives it"
        elif command == C.Restart and actor == SYSTEM:
            why = "only a person restarts a held batch, never the system"
        elif resolve is not None:
            if command != C.Restart:
                why = "resolve is given with Restart only"
            elif resolve not in RESOLVE:
                why = f"resolve must be one of {', '.join(RESOLVE)}, not {resolve!r}"
            elif self._unknown is None:
                why = "no command of unknown outcome to resolve"
        if why is not None:
            self._write(
                EntryKind.BATCH_STATE,
                actor=actor or "?",
                command=str(command),
                refused=why,
                state=self.state.value,
            )
            raise CommandRefused(why)
        try:
            new = self.machine.command(command, actor=actor, reason=reason)
        except IllegalCommand as exc:
            self._write(
                EntryKind.BATCH_STATE,
                actor=actor,
                command=str(command),
                refused=str(exc),
                state=self.state.value,
            )
            raise
        if resolve is not None:
            self._resolve(resolve, actor=actor, reason=reason)
        return new

    def _resolve(self, decision: str, *, actor: str, reason: str) -> None:
        """A person's decision on a command of unknown outcome (the restart check runs later)."""
        unknown = self._unknown
        assert unknown is not None  # checked in command()
        self._unknown = None
        if decision == "done":
            self._done_by_decision = unknown.step
        self._write(
            EntryKind.DEVIATION,
            actor=actor,
            unit_procedure=unknown.unit_procedure,
            step=unknown.step,
            device=unknown.device,
            deviation="command outcome decided",
            decision=decision,
            method=unknown.method,
            error=unknown.error,
            reason=reason,
            message=(
                f"{actor} decided the outcome of {unknown.step}: "
                + ("send it again" if decision == "resend" else "it took effect; not re-sent")
            ),
        )

    async def wait_for(self, *states: BatchState) -> BatchState:
        """Wait until the batch is in one of ``states``; returns it."""
        while self.machine.state not in states:
            await self._next_change()
        return self.machine.state

    async def _next_change(self) -> None:
        event = asyncio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        finally:
            if event in self._waiters:
                self._waiters.remove(event)

    def _on_transition(self, transition: Transition) -> None:
        # The safety action first (interrupt, wake), the journal after: a write
        # that fails must never stop an interruption (``_write`` holds on failure).
        new = transition.new
        if new is S.Holding:
            self._hold_owed = True
        if new in (S.Holding, S.Aborting):
            why = f"batch {new.value}"
            for worker in (self._step_worker, self._restart_worker, *self._rules):
                if worker is not None:
                    worker.interrupt(why, halt=True)
        elif transition.old is S.Restarting and self._restart_worker is not None:
            self._restart_worker.interrupt(f"batch {new.value}")
        if new is S.Restarting:
            self._tripped.clear()
            for watch in self._watches:
                watch.out_since = None
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()
        self._write(
            EntryKind.BATCH_STATE,
            actor=transition.actor,
            old=transition.old.value,
            new=transition.new.value,
            command=str(transition.command),
            reason=transition.reason,
        )

    # -- running ----------------------------------------------------------------------

    async def run(self, *, actor: str, resume: Resumption | None = None) -> BatchState:
        """Start the batch as ``actor`` and run it to Complete, Stopped or Aborted.

        With ``resume`` (what :func:`~flexctl.supervisor.resumption.replay` read
        from the batch's journal after its supervisor died), the batch continues
        instead: its state is restored, finished steps are not run again, every
        device is re-read as at a restart (a failure holds), a command that was
        sent by the interrupted step without a journaled result is asked of its
        device (:meth:`~drivers.base.Driver.recover`: done, resend, or a person
        decides), and an interrupted ``wait`` keeps its deadline.
        """
        if self._running:
            raise RuntimeError("this executor is already running")
        if not actor.strip() or actor == SYSTEM:
            raise CommandRefused("a batch is started by a person")
        self._running = True
        unsubscribe: list[Callable[[], None]] = []
        for name, driver in self.drivers.items():
            transport = getattr(driver, "transport", None)
            if transport is not None:
                unsubscribe.append(transport.on_state(partial(self._on_link, name)))
        hard = True
        try:
            if resume is not None:
                await self._resume(resume, actor)
                state = await self._run_units()
                hard = False
                return state
            for name, value in self.batch.parameters.items():
                param = self.procedure.parameters[name]
                self._write(
                    EntryKind.PARAMETER,
                    actor=actor,
                    name=name,
                    value=value,
                    unit=param.unit,
                    type=param.type.value,
                    default=param.default == value,
                )
            self.machine.command(
                C.Start,
                actor=actor,
                reason=f"procedure {self.procedure.name} {self.procedure.version}",
            )
            self._start_monitor()
            state = await self._run_units()
            hard = False
            return state
        finally:
            try:
                await self._shutdown(hard=hard)
            finally:
                for undo in unsubscribe:
                    undo()
                self._running = False

    def _start_monitor(self) -> None:
        monitor = _Worker(f"flexctl-monitor-{self.batch.batch_id}")
        self._monitor = monitor
        monitor.start(self._monitor_loop(monitor)).add_done_callback(self._monitor_ended)

    async def _run_units(self) -> BatchState:
        for unit in self.procedure.unit_procedures:
            if not await self._run_unit(unit):
                break
        else:
            self._unit = None
            if await self._settle(None):
                self.machine.complete(reason="every unit procedure has run")
        return self.machine.state

    async def _resume(self, resume: Resumption, actor: str) -> None:
        """Restore the batch as its journal left it, then check every device (see run)."""
        if resume.state in FINAL or resume.state is S.Idle:
            raise CommandRefused(
                f"batch {self.batch.batch_id} is {resume.state.value}: nothing to resume"
            )
        self._unit = self._unit_of(resume.interrupted)
        self.results = {k: dict(v) for k, v in resume.results.items()}
        self._attempts = dict(resume.attempts)
        self._alarms = dict(resume.alarms)
        self._resumed = resume
        self.machine.restore(
            resume.state,
            actor=actor,
            reason=f"supervisor restarted; batch resumed from its journal "
            f"(last entry at process time {resume.last_time:g} s)",
        )
        # What the journal says a person still owes, or the devices do (after restore:
        # the restored transition must not decide these).
        if resume.unknown is not None:
            u = resume.unknown
            self._unknown = _Unknown(u.unit_procedure, u.step, u.device, u.method, u.error)
        self._done_by_decision = resume.done_by_decision
        self._hold_owed = resume.hold_owed
        self._unsafe = set(resume.unsafe)
        self._start_monitor()
        if self.machine.state in (S.Running, S.Pausing, S.Paused, S.Stopping):
            # As a restart: links, alarms, bands, owed safe states; a failure holds.
            await self._restart_check()

    def _unit_of(self, step_id: str | None) -> UnitProcedure | None:
        for unit in self.procedure.unit_procedures:
            if any(step.id == step_id for step in unit.steps):
                return unit
        return None

    async def _recovered(self, unit: UnitProcedure, step: Step) -> bool:
        """The interrupted step's command, sent before the crash: ask its device. True: done."""
        resumed = self._resumed
        if resumed is None or resumed.interrupted != step.id:
            return False
        self._resumed = None
        if resumed.finished is not None:  # its result was journaled just before the crash
            self.results[step.id] = dict(resumed.finished)
            self._write(
                EntryKind.STEP_END,
                unit_procedure=unit.name,
                step=step.id,
                result="done",
                reason="its result was journaled before the supervisor restarted",
                fields=dict(resumed.finished),
            )
            return True
        if isinstance(step, WaitStep) and resumed.interrupted_at is not None:
            self._wait_began[step.id] = resumed.interrupted_at  # it keeps its deadline
        sent = resumed.sent
        if sent is None or not isinstance(step, CommandStep):
            return False  # nothing in flight: the step runs again from its start
        where = {
            "unit_procedure": unit.name,
            "step": step.id,
            "device": sent.device,
            "method": sent.method,
        }
        # Asked as a step would be: a hold meanwhile interrupts the wait (it only reads).
        worker = _Worker(f"flexctl-recover-{step.id}")
        self._step_worker = worker
        try:
            recovered = await worker.start(
                worker.safe(self.drivers[sent.device].recover(sent.method, sent.args))
            )
        except (CannotTell, *LOST) as exc:  # the device cannot say: a person decides
            self._unknown = _Unknown(unit.name, step.id, sent.device, sent.method, str(exc))
            self._write(
                EntryKind.COMMAND_RESULT,
                **where,
                recovered="unknown",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            self._system_command(C.Hold, f"outcome of {step.id} unknown after the restart: {exc}")
            return False
        except _Interrupted as exc:  # held or aborted meanwhile; asked again at the restart
            self._resumed = resumed
            self._write(EntryKind.COMMAND_RESULT, **where, recovered="interrupted", reason=str(exc))
            return False
        except Exception as exc:  # known: it ran and failed (a program aborted ...), as a step
            self._write(
                EntryKind.COMMAND_RESULT,
                **where,
                recovered="failed",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            self._write(
                EntryKind.STEP_END,
                unit_procedure=unit.name,
                step=step.id,
                result="failed",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            self._failed(exc, unit_procedure=unit.name, step=step.id, device=sent.device)
            return False
        finally:
            if self._step_worker is worker:
                self._step_worker = None
        if recovered is None:
            self._write(EntryKind.COMMAND_RESULT, **where, recovered="not sent", resend=True)
            return False
        fields = _fields(recovered.result)
        self._write(
            EntryKind.COMMAND_RESULT, **where, recovered="done", result=jsonable(recovered.result)
        )
        self.results[step.id] = fields
        self._write(
            EntryKind.STEP_END,
            unit_procedure=unit.name,
            step=step.id,
            result="done",
            reason="the device shows the command sent before the restart took effect",
            fields=fields,
        )
        return True

    async def _shutdown(self, *, hard: bool) -> None:
        """End every worker; hard: cancel them all at once (run() is being cancelled).

        Every task is cancelled (or interrupted) before any is awaited, and the
        await is repeated if this task is cancelled again meanwhile, so no
        worker outlives run(); such a cancellation is re-raised at the end.
        """
        self._closing = True
        workers = [
            w
            for w in (self._step_worker, self._restart_worker, *self._rules, self._monitor)
            if w is not None
        ]
        tasks = [w.task for w in workers if w.task is not None]
        for worker in workers:
            if hard:
                if worker.task is not None and not worker.task.done():
                    worker.task.cancel()
            else:
                worker.interrupt("batch ended")
        cancelled = False
        try:
            while not all(t.done() for t in tasks):
                try:
                    await asyncio.gather(*tasks, return_exceptions=True)
                except asyncio.CancelledError:
                    cancelled = True  # gather has cancelled the workers; wait for them
        finally:
            self._rules = []
            self._monitor = None
            self._step_worker = None
            self._restart_worker = None
            self._closing = False
        if cancelled:
            raise asyncio.CancelledError

    async def _run_unit(self, unit: UnitProcedure) -> bool:
        """Run one unit procedure's steps; False when the batch ended meanwhile.

        Steps already done (a resumed batch) are not run again.
        """
        steps = [step for step in unit.steps if step.id not in self.results]
        if not steps:
            return True
        self._unit = unit
        self._arming(unit, "armed")
        index = 0
        while index < len(steps):
            if not await self._settle(unit):
                return False
            step = steps[index]
            if await self._recovered(unit, step):
                index += 1
            elif self.machine.state is S.Running and await self._run_step(unit, step):
                index += 1  # (not Running: the recovery held; settle first)
        await self._stop_rules(f"unit procedure {unit.name} ended")
        self._arming(unit, "disarmed")
        self._unit = None
        return True

    def _arming(self, unit: UnitProcedure, event: str) -> None:
        """Journal that ``unit``'s interlocks are armed or disarmed; a new arming starts afresh."""
        if not unit.interlocks:
            return
        for watch in self._watches:
            if watch.scope == unit.name:
                watch.out_since = None
        self._write(
            EntryKind.INTERLOCK,
            unit_procedure=unit.name,
            event=event,
            interlocks=[spec.name for spec in unit.interlocks],
        )

    async def _settle(self, unit: UnitProcedure | None) -> bool:
        """Carry out transient states until Running (True) or a final state (False)."""
        while True:
            state = self.machine.state
            if state is S.Running:
                if unit is not None:
                    self._start_rules(unit)
                return True
            if state in FINAL or state is S.Idle:
                return False
            if state is S.Pausing:
                self.machine.complete(reason="step boundary reached")
            elif state in (S.Paused, S.Held):
                await self._next_change()
            elif state is S.Holding:
                await self._stop_rules("batch Holding")
                if self.machine.state is S.Holding:
                    await self._owed_hold_states()
                if self.machine.state is S.Holding:
                    reason = "devices in their hold state"
                    if self._unsafe:
                        reason += (
                            f"; safe state FAILED for {', '.join(sorted(self._unsafe))}"
                            " (retried at restart)"
                        )
                    self.machine.complete(reason=reason)
            elif state is S.Restarting:
                ready = await self._restart_check()
                if self.machine.state is S.Restarting:
                    if ready:
                        self.machine.complete(reason="device state re-read")
                    else:  # never try again at once: a person decides
                        self._system_command(C.Hold, "restart check did not pass")
            elif state is S.Stopping:
                await self._stop_rules("batch Stopping")
                await self._owed_hold_states()  # Stop came while Holding
                if self.machine.state is S.Stopping:
                    self.machine.complete(reason="stopped after the current step")
            elif state is S.Aborting:
                await self._stop_rules("batch Aborting")
                await self._owed_hold_states()  # Abort came while Holding
                await self._safe_states(SafeAction.ABORT)
                if self.machine.state is S.Aborting:
                    self.machine.complete(reason="devices in their abort state")

    # -- steps ------------------------------------------------------------------------

    async def _run_step(self, unit: UnitProcedure, step: Step) -> bool:
        """Run ``step`` once; True when it ended with its result."""
        if self._done_by_decision == step.id:
            self._done_by_decision = None
            self.results[step.id] = {}
            self._write(
                EntryKind.STEP_END,
                unit_procedure=unit.name,
                step=step.id,
                result="done",
                reason="declared done by a person (command outcome was unknown); not re-sent",
                fields={},
            )
            return True
        attempt = self._attempts.get(step.id, 0) + 1
        self._attempts[step.id] = attempt
        worker = _Worker(f"flexctl-step-{step.id}")
        self._step_worker = worker
        try:
            done = await worker.start(self._step_body(unit, step, attempt, worker))
        finally:
            if self._step_worker is worker:
                self._step_worker = None
        if not done and self.machine.state in (S.Running, S.Pausing, S.Paused):
            # Whatever ended the step without its result must stop the procedure:
            # never run the step again at once (a lost device would spin here).
            self._system_command(C.Hold, f"step {step.id} ended without its result")
        return done

    async def _step_body(
        self, unit: UnitProcedure, step: Step, attempt: int, worker: _Worker
    ) -> bool:
        where = {"unit_procedure": unit.name, "step": step.id}
        self._write(
            EntryKind.STEP_START,
            **where,
            step_kind=step.kind,
            attempt=attempt,
            description=step.description,
        )
        try:
            fields = await self._execute(unit, step, worker)
        except _Interrupted as exc:
            self._write(EntryKind.STEP_END, **where, result="interrupted", reason=str(exc))
            return False
        except _StepFailed as exc:
            self._write(EntryKind.STEP_END, **where, result="failed", reason=str(exc))
            return False
        except Exception as exc:
            self._write(
                EntryKind.STEP_END,
                **where,
                result="failed",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            self._failed(exc, unit_procedure=unit.name, step=step.id, device=self._device_of(step))
            return False
        self.results[step.id] = fields
        if self._unknown is not None and self._unknown.step == step.id:
            self._unknown = None
        self._write(EntryKind.STEP_END, **where, result="done", fields=fields)
        return True

    async def _execute(self, unit: UnitProcedure, step: Step, worker: _Worker) -> dict[str, Value]:
        if isinstance(step, CommandStep):
            return await self._call(step.call, unit.name, step.id, worker)
        if isinstance(step, SetStep):
            return await self._set(step, unit.name, worker)
        if isinstance(step, WaitStep):
            began = self._wait_began.pop(step.id, self.clock.now())
            await worker.safe(self.clock.sleep_until(began + step.duration.seconds))
            return {"seconds": step.duration.seconds}
        if isinstance(step, WaitUntilStep):
            return await self._wait_until(step, unit.name, worker)
        if isinstance(step, RecordStep):
            value = await self._evaluate(step.expression)
            self._write(
                EntryKind.RECORD,
                unit_procedure=unit.name,
                step=step.id,
                device=self._device_of(step),
                expression=step.expression.text,
                value=value,
                unit=step.unit,
            )
            return {"value": value}
        if isinstance(step, PromptStep):
            return await self._prompt(step, unit.name, worker)
        raise TypeError(f"step {step.id}: unknown step kind {step.kind!r}")

    async def _call(self, call: Call, unit: str, step: str, worker: _Worker) -> dict[str, Value]:
        device = call.target.device
        method = call.target.member
        driver = self.drivers[device]
        args = {name: await self._value(arg) for name, arg in call.args.items()}
        if method.startswith("_") or method in NOT_COMMANDS:
            raise ConfigurationError(call.where, f"{call.target} is not a device command")
        function: Callable[..., Awaitable[object]] = getattr(driver, method)
        worker.before_send()  # a hold given while the arguments were read: do not send
        where = {"unit_procedure": unit, "step": step, "device": device, "method": method}
        self._write(EntryKind.COMMAND, **where, args=args)
        self._not_sent_if_interrupted(worker, where)
        try:
            result = await function(**args)
        except Exception as exc:
            self._note_unknown(exc, worker, unit=unit, step=step, device=device, method=method)
            self._write(
                EntryKind.COMMAND_RESULT, **where, error=str(exc), error_type=type(exc).__name__
            )
            raise
        fields = _fields(result)
        self._write(EntryKind.COMMAND_RESULT, **where, result=jsonable(result))
        return fields

    async def _set(self, step: SetStep, unit: str, worker: _Worker) -> dict[str, Value]:
        device, signal = step.target.device, step.target.member
        value = await self._value(step.value)
        worker.before_send()  # a hold given while the value was read: do not send
        where = {"unit_procedure": unit, "step": step.id, "device": device, "set": signal}
        self._write(EntryKind.COMMAND, **where, value=value)
        self._not_sent_if_interrupted(worker, where)
        try:
            await self.drivers[device].set(signal, value)
        except Exception as exc:
            self._note_unknown(
                exc, worker, unit=unit, step=step.id, device=device, method=f"set {signal}"
            )
            self._write(
                EntryKind.COMMAND_RESULT,
                unit_procedure=unit,
                step=step.id,
                device=device,
                set=signal,
                error=str(exc),
                error_type=type(exc).__name__,
            )
            raise
        self._write(
            EntryKind.COMMAND_RESULT,
            unit_procedure=unit,
            step=step.id,
            device=device,
            set=signal,
            ok=True,
        )
        return {"value": value}

    def _not_sent_if_interrupted(self, worker: _Worker, where: Mapping[str, str]) -> None:
        """Writing the COMMAND entry itself held the batch (journal failure): do not send."""
        if worker.halted:
            self._write(
                EntryKind.COMMAND_RESULT, **where, sent=False, error=f"not sent: {worker.reason}"
            )
            worker.before_send()

    def _note_unknown(
        self, exc: Exception, worker: _Worker, *, unit: str, step: str, device: str, method: str
    ) -> None:
        """A step's command lost its reply: it may have acted; a restart must not resend it."""
        if isinstance(exc, LOST) and worker is self._step_worker:
            self._unknown = _Unknown(unit, step, device, method, f"{type(exc).__name__}: {exc}")

    async def _wait_until(
        self, step: WaitUntilStep, unit: str, worker: _Worker
    ) -> dict[str, Value]:
        start = self.clock.now()
        deadline = start + step.timeout.seconds
        poll = step.poll.seconds
        while True:
            holds = await self._evaluate_bool(step.condition)
            now = self.clock.now()
            if holds:
                return {"elapsed_s": now - start, "timed_out": False}
            worker.checkpoint()
            if now >= deadline:
                break
            await worker.safe(self.clock.sleep_until(min(deadline, now + poll)))
        what = f"step {step.id}: {step.condition.text!r} did not hold within {step.timeout.text}"
        if step.on_timeout is OnTimeout.CONTINUE:
            self._write(
                EntryKind.DEVIATION,
                unit_procedure=unit,
                step=step.id,
                device=self._device_of(step),
                deviation="wait_until timeout",
                condition=step.condition.text,
                timeout_s=step.timeout.seconds,
                on_timeout="continue",
                message=what + "; continued as the procedure says",
            )
            return {"elapsed_s": self.clock.now() - start, "timed_out": True}
        command = C.Hold if step.on_timeout is OnTimeout.HOLD else C.Abort
        self._system_command(command, what)
        raise _StepFailed(f"timed out ({step.on_timeout.value})")

    async def _prompt(self, step: PromptStep, unit: str, worker: _Worker) -> dict[str, Value]:
        assert self.prompter is not None  # checked at construction
        entry_spec: dict[str, object] | None = None
        suggested: Value | None = None
        if step.entry is not None:
            entry_spec = {
                "type": step.entry.type.value,
                "pattern": step.entry.pattern,
                "limits": step.entry.limits,
                "unit": step.entry.unit,
            }
            if step.entry.suggest is not None:
                suggested = await self._value(step.entry.suggest)
                unfit = check_answer(step.entry, suggested)
                entry_spec["suggested"] = suggested
                if unfit is not None:  # the person enters a value unaided; say why
                    entry_spec["suggestion_unfit"] = unfit
                    suggested = None
        request = PromptRequest(self.batch.batch_id, unit, step.id, step.text, suggested)
        self._write(
            EntryKind.PROMPT,
            unit_procedure=unit,
            step=step.id,
            text=step.text,
            role=step.role.value,
            meaning=step.meaning.value,
            entry=entry_spec,
        )
        for _ in range(self.prompt_attempts):
            value, signer = await worker.safe(
                self.prompter.ask(request, step.role, step.meaning, step.entry)
            )
            why = check_answer(step.entry, value)
            if why is None:
                break
            self._write(
                EntryKind.PROMPT,
                actor=signer.user,
                unit_procedure=unit,
                step=step.id,
                rejected=jsonable(value),
                why=why,
                simulated=signer.simulated,
            )
            if step.entry is None:
                raise PromptDeclined(f"step {step.id}: not confirmed by {signer.printed_name}")
        else:
            raise PromptDeclined(
                f"step {step.id}: no acceptable entry after {self.prompt_attempts} attempts"
            )
        signed_at = self.clock.utcnow().isoformat()
        digest = prompt_signature_hash(
            batch=self.batch.batch_id,
            unit_procedure=unit,
            step=step.id,
            text=step.text,
            value=jsonable(value),
            role=step.role.value,
            meaning=step.meaning.value,
            printed_name=signer.printed_name,
            signed_at=signed_at,
        )
        self._write(
            EntryKind.SIGNATURE,
            actor=signer.user,
            unit_procedure=unit,
            step=step.id,
            printed_name=signer.printed_name,
            signed_at=signed_at,
            meaning=step.meaning.value,
            role=step.role.value,
            value=value,
            simulated=signer.simulated,
            sha256=digest,
        )
        return {"value": value, "signer": signer.user}

    # -- expressions and values ---------------------------------------------------------

    async def _value(self, arg: Argument) -> Value:
        if isinstance(arg.value, Expr):
            return await self._evaluate(arg.value)
        return arg.value

    async def _evaluate(self, expr: Expr) -> Value:
        lookup = await self._lookup(expr)
        return expr.compiled.evaluate(lookup)

    async def _evaluate_bool(self, expr: Expr) -> bool:
        lookup = await self._lookup(expr)
        return expr.compiled.evaluate_bool(lookup)

    async def _lookup(self, expr: Expr) -> Callable[[str], Value]:
        """Read the device signals ``expr`` names, one batched read per device."""
        wanted: dict[str, list[str]] = {}
        for name in sorted(expr.names):
            head, dot, rest = name.partition(".")
            if dot and head in self.drivers and head not in self.results:
                wanted.setdefault(head, []).append(rest)
        values: dict[str, Value] = {}
        for device, signals in wanted.items():
            read = await self.drivers[device].read(signals)
            values.update({f"{device}.{s}": v for s, v in read.items()})
        parameters = self.batch.parameters
        results = self.results

        def lookup(name: str) -> Value:
            if name in values:
                return values[name]
            if name in parameters:
                return parameters[name]
            head, dot, rest = name.partition(".")
            if dot and head in results:
                fields = results[head]
                if rest in fields:
                    return fields[rest]
                raise KeyError(f"{name} (step {head} has {', '.join(sorted(fields)) or 'none'})")
            raise KeyError(name)

        return lookup

    # -- rules ------------------------------------------------------------------------

    def _start_rules(self, unit: UnitProcedure) -> None:
        if self._rules or not unit.rules:
            return
        for rule in unit.rules:
            worker = _Worker(f"flexctl-rule-{rule.id}")
            worker.start(self._rule_loop(unit, rule, worker))
            self._rules.append(worker)

    async def _stop_rules(self, reason: str) -> None:
        rules, self._rules = self._rules, []
        for worker in rules:
            await worker.stop(reason)

    async def _rule_loop(self, unit: UnitProcedure, rule: Rule, worker: _Worker) -> None:
        due = self.clock.now()
        try:
            while True:
                await worker.safe(self.clock.sleep_until(due))
                try:
                    fires = rule.when is None or await self._evaluate_bool(rule.when)
                    worker.checkpoint()
                    if fires:
                        await self._call(rule.call, unit.name, rule.id, worker)
                except _Interrupted:
                    raise
                except Exception as exc:
                    device = rule.call.target.device
                    self._failed(exc, unit_procedure=unit.name, step=rule.id, device=device)
                    return
                due += rule.every.seconds
                now = self.clock.now()
                if due <= now:  # a command outlasted the period: skip the missed ticks
                    due += (math.floor((now - due) / rule.every.seconds) + 1) * rule.every.seconds
        except _Interrupted:
            return

    # -- failures, interlocks and safe states -----------------------------------------

    def _failed(self, exc: BaseException, *, unit_procedure: str, step: str, device: str) -> None:
        """A step or rule failed: a lost device trips its interlock, anything else deviates."""
        if isinstance(exc, LOST):
            lost = self._device_name(exc, device)
            self._trip(f"link:{lost}", lost, f"device {lost} not answering: {exc}")
            return
        if not isinstance(exc, FlexctlError):
            self._log.error(
                "step_error", unit_procedure=unit_procedure, step=step, device=device, exc_info=exc
            )
        message = f"{step} failed: {type(exc).__name__}: {exc}"
        self._write(
            EntryKind.DEVIATION,
            unit_procedure=unit_procedure,
            step=step,
            device=device,
            deviation="step failed",
            error=str(exc),
            error_type=type(exc).__name__,
            message=message,
        )
        self._system_command(C.Hold, message)

    def _device_name(self, exc: BaseException, fallback: str) -> str:
        """The run's name of the device ``exc`` is about (transports name it themselves)."""
        named = str(getattr(exc, "device", "") or "")
        if named in self.drivers:
            return named
        for name, driver in self.drivers.items():
            transport = getattr(driver, "transport", None)
            if named and getattr(transport, "device", None) == named:
                return name
        return fallback or named

    def _system_command(self, command: BatchCommand, reason: str) -> None:
        """Hold or abort by ``system`` where the state allows it; journaled otherwise."""
        state = self.machine.state
        if command is C.Hold and state not in HOLDABLE:
            if state not in (S.Holding, S.Held):
                self._write(
                    EntryKind.DEVIATION,
                    deviation="hold not possible",
                    state=state.value,
                    message=f"{reason}; the batch cannot hold while {state.value}",
                )
            return
        try:
            self.machine.command(command, actor=SYSTEM, reason=reason)
        except IllegalCommand as exc:
            self._write(EntryKind.DEVIATION, deviation="system command refused", error=str(exc))

    def _trip(self, key: str, device: str, reason: str, value: Value | None = None) -> None:
        """An interlock tripped: journal it once and hold the batch (if it can hold)."""
        if key in self._tripped:
            return
        self._tripped.add(key)
        state = self.machine.state
        holds = state in HOLDABLE
        if holds:  # the safety action first, the journal after
            self.machine.command(C.Hold, actor=SYSTEM, reason=f"interlock {key}: {reason}")
        self._write(
            EntryKind.INTERLOCK,
            device=device,
            interlock=key,
            reason=reason,
            state=state.value,
            action="hold" if holds else f"none (batch is {state.value})",
            value=value,
        )

    def _on_link(self, device: str, state: ConnectionState) -> None:
        if self.machine.state in FINAL or self.machine.state is S.Idle:
            return
        if state is ConnectionState.CONNECTED:
            self._write(EntryKind.INTERLOCK, device=device, link=state.value, event="link up")
            return
        if state in (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED):
            self._trip(f"link:{device}", device, f"device {device} link {state.value}")

    async def _owed_hold_states(self) -> None:
        """Run the hold safe states if the batch entered Holding and they have not run."""
        if self._hold_owed:
            self._hold_owed = False
            self._unsafe = set(await self._safe_states(SafeAction.HOLD))

    async def _safe_states(
        self, action: SafeAction, names: Collection[str] | None = None
    ) -> list[str]:
        """Call ``safe_state(action)`` on every driver (or on ``names``); the ones that failed."""
        failed: list[str] = []
        for name, driver in self.drivers.items():
            if names is not None and name not in names:
                continue
            self._write(
                EntryKind.COMMAND, device=name, method="safe_state", args={"action": action.value}
            )
            try:
                await driver.safe_state(action)
            except Exception as exc:
                self._write(
                    EntryKind.COMMAND_RESULT,
                    device=name,
                    method="safe_state",
                    error=str(exc),
                    error_type=type(exc).__name__,
                )
                self._write(
                    EntryKind.DEVIATION,
                    device=name,
                    deviation="safe state failed",
                    safe_state=action.value,
                    error=str(exc),
                    error_type=type(exc).__name__,
                    message=f"{name}: safe state {action.value} failed: {exc}",
                )
                self._log.error(
                    "safe_state_failed", device=name, action=action.value, error=str(exc)
                )
                failed.append(name)
            else:
                self._write(
                    EntryKind.COMMAND_RESULT, device=name, method="safe_state", result=action.value
                )
        return failed

    async def _restart_check(self) -> bool:
        worker = _Worker(f"flexctl-restart-{self.batch.batch_id}")
        self._restart_worker = worker
        try:
            return await worker.start(self._restart_body(worker))
        finally:
            if self._restart_worker is worker:
                self._restart_worker = None

    async def _restart_body(self, worker: _Worker) -> bool:
        """Re-read every device before running again; False if the batch must hold again.

        In order: a command of unknown outcome needs a person's decision; every
        device is re-read (link, alarms, band signals); a device whose hold safe
        state failed gets it again, and the restart is refused if it still fails.
        """
        try:
            unknown = self._unknown
            if unknown is not None:
                message = (
                    f"outcome of {unknown.step} unknown: a person must decide "
                    f"({unknown.device}.{unknown.method} got {unknown.error}; "
                    'restart with resolve="resend" or resolve="done")'
                )
                self._write(
                    EntryKind.DEVIATION,
                    unit_procedure=unknown.unit_procedure,
                    step=unknown.step,
                    device=unknown.device,
                    deviation="command outcome unknown",
                    method=unknown.method,
                    error=unknown.error,
                    message=message,
                )
                self._system_command(C.Hold, message)
                return False
            for name, driver in self.drivers.items():
                transport = getattr(driver, "transport", None)
                if transport is not None and transport.state is not ConnectionState.CONNECTED:
                    up = await worker.safe(driver.link_up(self.link_wait))
                    if not up:
                        self._trip(
                            f"link:{name}",
                            name,
                            f"device {name} still not answering after {self.link_wait:g} s",
                        )
                        return False
                watches = self._watches_of(name)
                limits = self._alarm_signals.get(name, ())
                try:
                    status, alarms, values = await self._read_checks(driver, watches, limits)
                except LOST as exc:
                    self._trip(f"link:{name}", name, f"device {name} not answering: {exc}")
                    return False
                worker.checkpoint()
                # The limit alarms see the values now (the monitor does not run while held).
                limit_values = {f"{name}.{signal}": values[signal] for signal in limits}
                self._check_limits(name, limit_values, self.clock.now())
                for watch in watches:
                    interlock = watch.interlock
                    value = values[interlock.signal_name]
                    if interlock.outside(value):
                        self._trip(
                            f"band:{interlock.label}",
                            name,
                            f"{interlock.signal} = {value!r} still outside {interlock.band()} "
                            "at restart",
                            value=value,
                        )
                        return False
                self._write(
                    EntryKind.INTERLOCK,
                    device=name,
                    event="restart check",
                    status=status.value,
                    alarms=list(alarms),
                )
                if self._check_alarms(name, alarms):
                    return False
            for limit_alarm in self.alarms.interlocking():
                definition = limit_alarm.definition
                self._trip(
                    f"alarm:{definition.name}",
                    definition.device,
                    f"alarm {definition.name} still active at restart: {definition.text}",
                )
                return False
            if self._unsafe:
                still = await self._safe_states(SafeAction.HOLD, self._unsafe)
                worker.checkpoint()
                self._unsafe = set(still)
                if still:
                    message = (
                        f"restart refused: safe state hold still failing for {', '.join(still)}"
                    )
                    self._write(
                        EntryKind.DEVIATION,
                        device=",".join(still),
                        deviation="restart refused",
                        message=message,
                    )
                    self._system_command(C.Hold, message)
                    return False
            return True
        except _Interrupted:
            return False
        except Exception as exc:  # FlexctlError or a driver bug: as a failing step
            unit = self._unit.name if self._unit else ""
            self._failed(exc, unit_procedure=unit, step="restart check", device="")
            return False

    # -- the monitor ------------------------------------------------------------------

    async def _monitor_loop(self, worker: _Worker) -> None:
        try:
            while True:
                while self.machine.state not in MONITORED:
                    await worker.safe(self._next_change())
                await self._poll_devices(worker)
                await worker.safe(self.clock.sleep(self.monitor_period))
        except _Interrupted:
            return

    def _monitor_ended(self, task: asyncio.Task[None]) -> None:
        """The monitor must run until the batch ends: if it ends before, hold."""
        if self._closing or self.machine.state in FINAL or self.machine.state is S.Idle:
            return
        exc = None if task.cancelled() else task.exception()
        message = "interlock monitor ended while the batch is not final" + (
            f": {type(exc).__name__}: {exc}" if exc is not None else ""
        )
        self._log.critical("monitor_ended", state=self.machine.state.value, exc_info=exc)
        self._system_command(C.Hold, message)
        self._write(
            EntryKind.DEVIATION,
            deviation="monitor ended",
            state=self.machine.state.value,
            message=message,
        )

    async def _poll_devices(self, worker: _Worker) -> None:
        worker.checkpoint()
        now = self.clock.now()
        busy = self._batch_devices | self._unit_devices.get(
            self._unit.name if self._unit else "", frozenset()
        )
        due = [
            (name, driver)
            for name, driver in self.drivers.items()
            if name in busy or now - self._polled_at.get(name, -math.inf) >= self.idle_period
        ]
        for name, _ in due:
            self._polled_at[name] = now
        # Every device at once: one slow link (an RS-485 bus) does not delay the
        # others' checks, and a poll costs the slowest device, not their sum.
        await asyncio.gather(*(self._poll_device(name, driver) for name, driver in due))
        worker.checkpoint()

    async def _poll_device(self, name: str, driver: Driver) -> None:
        """One device's check: status (the heartbeat), alarms and band signals, in one read.

        Never raises but for cancellation: every failure is an interlock, a
        deviation or (a driver bug) a hold, so one device cannot stop the others' checks.
        """
        if self.machine.state not in MONITORED:
            return
        watches = self._watches_of(name)
        trends = self._trends_due(name, driver)
        limits = self._alarm_signals.get(name, ())
        try:
            _, alarms, values = await self._read_checks(driver, watches, (*trends, *limits))
        except LOST as exc:
            self._trip(f"link:{name}", name, f"device {name} not answering: {exc}")
            return
        except FlexctlError as exc:
            self._write(
                EntryKind.DEVIATION,
                device=name,
                deviation="monitor read failed",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            return
        except Exception as exc:  # a driver bug: the device state is unknown, fail safe
            self._log.error("monitor_read_error", device=name, exc_info=exc)
            message = f"monitor: device {name} read failed: {type(exc).__name__}: {exc}"
            self._system_command(C.Hold, message)
            self._write(
                EntryKind.DEVIATION,
                device=name,
                deviation="monitor read failed",
                error=str(exc),
                error_type=type(exc).__name__,
                message=message,
            )
            return
        now = self.clock.now()
        self._keep_trends(name, trends, values, now)
        self._check_limits(name, {f"{name}.{signal}": values[signal] for signal in limits}, now)
        for watch in watches:
            self._check_band(watch, values[watch.interlock.signal_name], now)
        self._check_alarms(name, alarms)

    def _trends_due(self, name: str, driver: Driver) -> tuple[str, ...]:
        """The device's trend signals if its next historian sample is due now, else none."""
        if self.historian is None:
            return ()
        period = self.sample_period if self.sample_period is not None else driver.trend_period
        now = self.clock.now()
        if now - self._sampled_at.get(name, -math.inf) < period:
            return ()
        self._sampled_at[name] = now
        return self._trends.get(name, ())

    def _keep_trends(
        self, device: str, trends: Sequence[str], values: Mapping[str, Value], now: float
    ) -> None:
        """Hand the trend values just read to the historian; an outage is one deviation."""
        if self.historian is None or not trends:
            return
        utc = self.clock.utcnow()
        batch = self.batch.batch_id
        try:
            # A value the historian cannot keep (say, a uint64 past 2**63) is refused
            # here, inside the try: a deviation, never an error out of the monitor.
            samples = [Sample(batch, device, s, now, utc, values[s]) for s in trends]
            self.historian.extend(samples)
        except (FlexctlError, ValueError, TypeError) as exc:
            # The historian keeps what it could not write and tries again with the
            # next samples; the batch goes on, and the record says so, once.
            if not self._historian_failing:
                self._historian_failing = True
                self._write(
                    EntryKind.DEVIATION,
                    device=device,
                    deviation="historian write failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    message="samples are kept in memory and written when the store takes them",
                )
            return
        if self._historian_failing:
            self._historian_failing = False
            self._write(EntryKind.RECORD, device=device, record="historian writes again")

    def _check_limits(self, device: str, values: Mapping[str, Value], now: float) -> None:
        """Feed the ISA-18.2 alarms; journal each transition; an interlock alarm holds."""
        try:
            transitions = [*self.alarms.expire(now), *self.alarms.update(values, now)]
        except FlexctlError as exc:  # process time went back (a clock fault): say so, go on
            self._write(
                EntryKind.DEVIATION, device=device, deviation="alarm update failed", error=str(exc)
            )
            return
        for transition in transitions:
            self._alarm_transition(transition, actor=SYSTEM)

    def _alarm_transition(self, transition: AlarmTransition, *, actor: str) -> None:
        definition = next(d for d in self.alarms.definitions if d.name == transition.alarm)
        # The safety action first, the journal after (as for every interlock).
        if definition.interlock and transition.event is AlarmEvent.Activate:
            self._trip(
                f"alarm:{definition.name}",
                definition.device,
                f"alarm {definition.name} ({definition.priority.value}): {definition.text}",
                value=transition.value,
            )
        self._write(
            EntryKind.ALARM,
            actor=actor,
            device=definition.device,
            alarm=transition.alarm,
            old=transition.old.value,
            new=transition.new.value,
            event=transition.event.value,
            active=transition.active,
            reason=transition.reason,
            value=transition.value,
            until=transition.until,
            signal=definition.signal,
            limit_kind=definition.kind.value,
            limit=definition.limit,
            priority=definition.priority.value,
            interlock=definition.interlock,
        )

    def acknowledge_alarm(self, name: str, *, user: str, reason: str) -> AlarmTransition:
        """A person acknowledges alarm ``name`` (ISA-18.2); journaled with the person."""
        transition = self.alarms.acknowledge(name, user=user, reason=reason, now=self.clock.now())
        self._alarm_transition(transition, actor=user)
        return transition

    def shelve_alarm(self, name: str, *, user: str, reason: str, seconds: float) -> AlarmTransition:
        """A person shelves alarm ``name`` for ``seconds`` of process time; journaled."""
        now = self.clock.now()
        transition = self.alarms.shelve(
            name, user=user, reason=reason, until=now + seconds, now=now
        )
        self._alarm_transition(transition, actor=user)
        return transition

    def _check_band(self, watch: _BandWatch, value: Value, now: float) -> None:
        interlock = watch.interlock
        if not interlock.outside(value):
            if watch.out_since is not None:
                self._write(
                    EntryKind.INTERLOCK,
                    device=interlock.device,
                    interlock=f"band:{interlock.label}",
                    event="back in band",
                    value=value,
                    band=interlock.band(),
                )
            watch.out_since = None
            return
        if watch.out_since is None:
            watch.out_since = now
            self._write(
                EntryKind.INTERLOCK,
                device=interlock.device,
                interlock=f"band:{interlock.label}",
                event="out of band",
                value=value,
                band=interlock.band(),
                delay_s=interlock.delay,
            )
        if now - watch.out_since >= interlock.delay:
            self._trip(
                f"band:{interlock.label}",
                interlock.device,
                f"{interlock.signal} = {value!r} outside {interlock.band()} for "
                f"{now - watch.out_since:g} s (delay {interlock.delay:g} s)",
                value=value,
            )

    def _armed(self, scope: str | None) -> bool:
        return scope is None or (self._unit is not None and self._unit.name == scope)

    def _watches_of(self, device: str) -> list[_BandWatch]:
        """The armed band interlocks on ``device``."""
        return [w for w in self._watches if w.interlock.device == device and self._armed(w.scope)]

    async def _read_checks(
        self, driver: Driver, watches: Sequence[_BandWatch], trends: Sequence[str] = ()
    ) -> tuple[DeviceStatus, tuple[str, ...], dict[str, Value]]:
        """A device's status, active alarms, band signals and ``trends``, in one read."""
        alarm = ["alarm"] if _has_signal(driver, "alarm") else []
        bands = sorted({w.interlock.signal_name for w in watches})
        values = await driver.read(list(dict.fromkeys(["status", *alarm, *bands, *trends])))
        status = driver.as_status(values["status"])  # one the driver cannot read fails here
        return status, parse_alarms(values["alarm"]) if alarm else (), values

    def _check_alarms(self, name: str, alarms: tuple[str, ...]) -> bool:
        """Journal alarm changes; trip interlocking alarms. True if one tripped."""
        before = self._alarms.get(name, ())
        if alarms != before:
            self._alarms[name] = alarms
            self._write(
                EntryKind.ALARM,
                device=name,
                active=list(alarms),
                raised=[a for a in alarms if a not in before],
                cleared=[a for a in before if a not in alarms],
            )
        tripped = False
        for watch in self._alarm_watches:
            interlock = watch.interlock
            if interlock.device != name or not self._armed(watch.scope):
                continue
            for alarm in interlock.tripping(alarms):
                self._trip(f"alarm:{name}:{alarm}", name, f"device {name} alarm {alarm}")
                tripped = True
        return tripped

    def _device_of(self, step: Step) -> str:
        """The device(s) a step is about, for the journal."""
        if isinstance(step, CommandStep):
            return step.call.target.device
        if isinstance(step, SetStep):
            return step.target.device
        expr: Expr | None = None
        if isinstance(step, WaitUntilStep):
            expr = step.condition
        elif isinstance(step, RecordStep):
            expr = step.expression
        if expr is None:
            return ""
        heads = {name.partition(".")[0] for name in expr.names if "." in name}
        return ",".join(sorted(heads & set(self.drivers)))

    # -- the journal ------------------------------------------------------------------

    def _journal_failed(self, entry: JournalEntry, exc: Exception) -> None:
        """An entry could not be written: log it loudly and hold (fail safe)."""
        self._log.critical(
            "journal_write_failed",
            kind=entry.kind.value,
            unit_procedure=entry.unit_procedure,
            step=entry.step,
            device=entry.device,
            actor=entry.actor,
            process_time=entry.process_time,
            payload=dict(entry.payload),
            error=str(exc),
            error_type=type(exc).__name__,
            exc_info=exc,
        )
        if self.machine.state in HOLDABLE:
            try:
                self.machine.command(
                    C.Hold,
                    actor=SYSTEM,
                    reason=f"journal write failed: {type(exc).__name__}: {exc}",
                )
            except Exception:  # never let the fallback itself raise
                self._log.exception("journal_failure_hold_failed")

    def _write(
        self,
        kind: EntryKind,
        *,
        actor: str = SYSTEM,
        unit_procedure: str | None = None,
        step: str = "",
        device: str = "",
        **payload: object,
    ) -> None:
        unit_name = (
            unit_procedure
            if unit_procedure is not None
            else (self._unit.name if self._unit else "")
        )
        data = {k: jsonable(v) for k, v in payload.items()}
        entry = JournalEntry(
            process_time=self.clock.now(),
            utc=self.clock.utcnow(),
            kind=kind,
            actor=actor,
            batch=self.batch.batch_id,
            unit_procedure=unit_name,
            step=step,
            device=device,
            payload=data,
        )
        try:
            self.journal.append(entry)
        except Exception as exc:
            self._journal_failed(entry, exc)
            return
        self._log.info(
            "journal",
            kind=kind.value,
            unit_procedure=unit_name,
            step=step,
            device=device,
            actor=actor,
            process_time=entry.process_time,
            payload=data,
        )


def _signals_by_device(definitions: Sequence[AlarmDefinition]) -> dict[str, tuple[str, ...]]:
    """device -> the signals its limit alarms watch, each once, in order."""
    signals: dict[str, tuple[str, ...]] = {}
    for definition in definitions:
        watched = signals.get(definition.device, ())
        if definition.signal_name not in watched:
            signals[definition.device] = (*watched, definition.signal_name)
    return signals


def _fields(result: object) -> dict[str, Value]:
    """A command's result as the fields later expressions may name (``step.field``)."""
    if result is None:
        return {}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: _scalar(getattr(result, f.name)) for f in dataclasses.fields(result)}
    if isinstance(result, Mapping):
        return {str(k): _scalar(v) for k, v in result.items()}
    return {"value": _scalar(result)}


def _scalar(value: object) -> Value:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(jsonable(value), sort_keys=True)


def _has_signal(driver: Driver, name: str) -> bool:
    transport = getattr(driver, "transport", None)
    profile = getattr(transport, "profile", None)
    signals: Collection[str] = getattr(profile, "signals", {})
    return name in signals
