"""The ISA-88 batch state machine: one transition table, pure logic, no I/O.

States, commands and the allowed-from sets follow ANSI/ISA-88.00.01 (the
procedural-element state model, see domain.md 3.1). A command accepted in a
state leads to a transient "-ing" state where the standard has one; the logic
of a transient state (reaching a safe point, stopping the devices) runs
elsewhere, in the supervisor, which then calls :meth:`BatchStateMachine.complete`.

Nothing here awaits, sleeps or reads a clock; the supervisor stamps times when
it journals the :class:`Transition` records that listeners receive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, TypeAlias

import structlog

from flexctl.errors import FlexctlError

log = structlog.get_logger("flexctl.supervisor.batch")


class BatchState(StrEnum):
    """The twelve ISA-88 states; member name and value are the standard's name."""

    Idle = "Idle"
    Running = "Running"
    Pausing = "Pausing"
    Paused = "Paused"
    Holding = "Holding"
    Held = "Held"
    Restarting = "Restarting"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Aborting = "Aborting"
    Aborted = "Aborted"
    Complete = "Complete"


class BatchCommand(StrEnum):
    """The eight ISA-88 commands."""

    Start = "Start"
    Pause = "Pause"
    Resume = "Resume"
    Hold = "Hold"
    Restart = "Restart"
    Stop = "Stop"
    Abort = "Abort"
    Reset = "Reset"


# The one table of legal commands: (state, command accepted there) -> next state,
# grouped by command in the order of domain.md 3.1.
# Abort is NOT accepted in Idle: as in the ISA-88 example matrix, Idle accepts
# only Start. A batch that never started has moved no material and commanded no
# device, so there is nothing to bring to a safe end; aborting it would only put
# an Aborted batch into the record for a batch that never ran. Nor is Abort
# accepted in Aborting (already aborting) or in a final state (nothing to abort).
TRANSITIONS: Mapping[tuple[BatchState, BatchCommand], BatchState] = MappingProxyType(
    {
        (BatchState.Idle, BatchCommand.Start): BatchState.Running,
        (BatchState.Running, BatchCommand.Pause): BatchState.Pausing,
        (BatchState.Paused, BatchCommand.Resume): BatchState.Running,
        (BatchState.Running, BatchCommand.Hold): BatchState.Holding,
        (BatchState.Pausing, BatchCommand.Hold): BatchState.Holding,
        (BatchState.Paused, BatchCommand.Hold): BatchState.Holding,
        (BatchState.Restarting, BatchCommand.Hold): BatchState.Holding,
        (BatchState.Held, BatchCommand.Restart): BatchState.Restarting,
        (BatchState.Running, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Pausing, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Paused, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Holding, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Held, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Restarting, BatchCommand.Stop): BatchState.Stopping,
        (BatchState.Running, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Pausing, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Paused, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Holding, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Held, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Restarting, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Stopping, BatchCommand.Abort): BatchState.Aborting,
        (BatchState.Complete, BatchCommand.Reset): BatchState.Idle,
        (BatchState.Stopped, BatchCommand.Reset): BatchState.Idle,
        (BatchState.Aborted, BatchCommand.Reset): BatchState.Idle,
    }
)

# "State complete": a transient state's logic has finished, or (Running) the
# procedure has run to its end.
COMPLETIONS: Mapping[BatchState, BatchState] = MappingProxyType(
    {
        BatchState.Pausing: BatchState.Paused,
        BatchState.Holding: BatchState.Held,
        BatchState.Restarting: BatchState.Running,
        BatchState.Stopping: BatchState.Stopped,
        BatchState.Aborting: BatchState.Aborted,
        BatchState.Running: BatchState.Complete,
    }
)

# The "-ing" states: their logic runs to completion, then complete() leaves them.
TRANSIENT: frozenset[BatchState] = frozenset(
    {
        BatchState.Pausing,
        BatchState.Holding,
        BatchState.Restarting,
        BatchState.Stopping,
        BatchState.Aborting,
    }
)
# The ends of a batch: only Reset leaves them.
FINAL: frozenset[BatchState] = frozenset(
    {BatchState.Complete, BatchState.Stopped, BatchState.Aborted}
)


_ALLOWED: Mapping[BatchState, frozenset[BatchCommand]] = MappingProxyType(
    {state: frozenset(cmd for (old, cmd) in TRANSITIONS if old is state) for state in BatchState}
)


def allowed_commands(state: BatchState) -> frozenset[BatchCommand]:
    """The commands :data:`TRANSITIONS` accepts in ``state``."""
    return _ALLOWED[state]


def _names(items: frozenset[BatchCommand]) -> str:
    # Declaration order, so the message reads the same every time.
    return ", ".join(cmd.value for cmd in BatchCommand if cmd in items) or "none"


class IllegalCommand(FlexctlError):
    """A command the current state does not accept; the state is left as it was."""

    def __init__(
        self, state: BatchState, command: BatchCommand, allowed: frozenset[BatchCommand]
    ) -> None:
        self.state = state
        self.command = command
        self.allowed = allowed
        super().__init__(
            f"{command.value} is not allowed while the batch is {state.value}"
            f" (allowed: {_names(allowed)})"
        )


class UnknownCommand(FlexctlError, ValueError):
    """A command name that is not an ISA-88 batch command (a typo at a console)."""

    def __init__(self, text: object) -> None:
        self.text = text
        names = ", ".join(c.value for c in BatchCommand)
        super().__init__(f"{text!r} is not a batch command (commands: {names})")


class IllegalCompletion(FlexctlError):
    """``complete()`` in a state that has nothing to complete (not transient, not Running)."""

    def __init__(self, state: BatchState) -> None:
        self.state = state
        completes = ", ".join(s.value for s in BatchState if s in COMPLETIONS)
        super().__init__(
            f"the batch cannot complete while {state.value}"
            f" (only {completes} complete; commands allowed: {_names(allowed_commands(state))})"
        )


class IllegalRestore(FlexctlError):
    """``restore()`` on a machine that has already changed state."""

    def __init__(self, state: BatchState, target: BatchState) -> None:
        self.state = state
        self.target = target
        super().__init__(
            f"cannot restore the batch to {target.value}: this machine has already moved"
            f" (now {state.value}); restore only a fresh machine"
        )


How: TypeAlias = BatchCommand | Literal["complete", "restore"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state: what it was, what it is, what caused it, who, and why.

    ``command`` is the :class:`BatchCommand`, ``"complete"`` for a state's
    completion, or ``"restore"`` for a supervisor resuming from its journal.
    """

    old: BatchState
    new: BatchState
    command: How
    actor: str
    reason: str = ""


Listener: TypeAlias = Callable[[Transition], object]


class BatchStateMachine:
    """The state of one batch, changed only along :data:`TRANSITIONS` and :data:`COMPLETIONS`.

    Listeners are called with each :class:`Transition` after the state has
    changed, in the order the transitions happened, even when a listener itself
    commands the machine (its transition is delivered once the current one has
    reached every listener). A listener that raises is logged and skipped; the
    state change stands.
    """

    def __init__(self) -> None:
        self._state = BatchState.Idle
        self._history: list[Transition] = []
        self._listeners: list[Listener] = []
        self._pending: deque[Transition] = deque()
        self._delivering = False

    @property
    def state(self) -> BatchState:
        return self._state

    @property
    def history(self) -> list[Transition]:
        """Every transition of this machine, oldest first (a copy)."""
        return list(self._history)

    def allowed(self) -> frozenset[BatchCommand]:
        """The commands the current state accepts."""
        return allowed_commands(self._state)

    def command(self, cmd: BatchCommand, *, actor: str, reason: str = "") -> BatchState:
        """Apply ``cmd``; return the new state.

        Raises:
            IllegalCommand: the current state does not accept ``cmd`` (state unchanged).
            UnknownCommand: ``cmd`` is no batch command at all.
        """
        try:
            cmd = BatchCommand(cmd)  # a plain "Hold" from an operator screen reads as the enum
        except ValueError:
            raise UnknownCommand(cmd) from None
        target = TRANSITIONS.get((self._state, cmd))
        if target is None:
            raise IllegalCommand(self._state, cmd, self.allowed())
        return self._move(target, cmd, actor, reason)

    def complete(self, *, actor: str = "system", reason: str = "") -> BatchState:
        """Finish the current transient state, or Running -> Complete; return the new state.

        Raises:
            IllegalCompletion: the current state has nothing to complete (state unchanged).
        """
        target = COMPLETIONS.get(self._state)
        if target is None:
            raise IllegalCompletion(self._state)
        return self._move(target, "complete", actor, reason)

    def restore(self, state: BatchState, *, actor: str = "system", reason: str = "") -> None:
        """Put a fresh machine into ``state``, for a supervisor resuming a batch from its journal.

        Any state is accepted, transient ones included: the journal may end in
        the middle of Holding or Stopping. Restoring into a transient state
        means its logic did not finish before the crash and must run again
        before the supervisor calls :meth:`complete`, exactly as if the command
        had just been given. The restore is recorded as a transition
        (``command="restore"``) and delivered to listeners.

        Raises:
            IllegalRestore: this machine has already changed state; restoring it
                would step around the transition table.
        """
        state = BatchState(state)
        if self._history:
            raise IllegalRestore(self._state, state)
        self._move(state, "restore", actor, reason)

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` with each future transition; return a function that unsubscribes."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def _move(self, target: BatchState, how: How, actor: str, reason: str) -> BatchState:
        transition = Transition(self._state, target, how, actor, reason)
        self._state = target
        self._history.append(transition)
        self._pending.append(transition)
        if not self._delivering:
            self._deliver()
        return target

    def _deliver(self) -> None:
        self._delivering = True
        try:
            while self._pending:
                transition = self._pending.popleft()
                for listener in tuple(self._listeners):
                    try:
                        listener(transition)
                    except Exception:
                        log.exception(
                            "batch_state_listener_failed",
                            listener=getattr(listener, "__qualname__", repr(listener)),
                            old=transition.old.value,
                            new=transition.new.value,
                            command=str(transition.command),
                        )
        finally:
            self._delivering = False
