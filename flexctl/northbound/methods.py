"""What each Batch method does: check the caller's rights, act, audit, answer (protocol-free).

Every call is checked against :mod:`flexctl.northbound.roles` with the roles
the store holds for the caller *now* (a user disabled since login is refused).
A refusal for want of rights is audited ("access refused") and answered
BadUserAccessDenied. Every call that changes something is audited as an
"opcua call" with the caller as actor, the method as object and what changed;
a command the state refuses, or an answer that does not fit its prompt, as an
"opcua call refused" with why. A signed answer is audited by
:class:`~flexctl.record.signing.Signatures` ("signed"), a refused signing
there too. The executor journals its own transitions (a stored batch's record
audits them as well, as state changes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn

from flexctl.northbound.calls import Caller, CallError, parse_arguments
from flexctl.northbound.prompter import AnswerRejected, NorthboundPrompter, NoSuchPrompt
from flexctl.northbound.roles import Action, may, may_answer, roles_of
from flexctl.northbound.runner import BatchRunner
from flexctl.procedure.model import Role
from flexctl.profile import Value
from flexctl.record.journal import JSONValue, jsonable
from flexctl.record.signing import SignatureRefused
from flexctl.record.store import AuditRecord
from flexctl.record.users import UserStore, find_user
from flexctl.supervisor.alarm_states import (
    AlarmTransition,
    IllegalAlarmEvent,
    InvalidShelveTime,
    MissingAttribution,
)
from flexctl.supervisor.alarms import AlarmMonitor, ProcessTimeWentBack, UnknownAlarm
from flexctl.supervisor.batch_state import BatchCommand, IllegalCommand
from flexctl.supervisor.executor import RESOLVE, CommandRefused, Executor

_BATCH_COMMANDS = frozenset(
    {
        Action.Pause,
        Action.Resume,
        Action.Hold,
        Action.Restart,
        Action.Stop,
        Action.Abort,
        Action.Reset,
    }
)


class BatchMethods:
    """The Batch object's methods.

    Args:
        executor: the executor of the batch served (None while there is none).
        store: the users (their roles) and the audit trail.
        runner: runs the batch on Start.
        prompter: the prompts AnswerPrompt answers (None: the method is refused).
        alarms: the alarms AcknowledgeAlarm and ShelveAlarm act on (None: none).
    """

    def __init__(
        self,
        *,
        executor: Callable[[], Executor | None],
        store: UserStore,
        runner: BatchRunner,
        prompter: NorthboundPrompter | None = None,
        alarms: AlarmMonitor | None = None,
    ) -> None:
        self._executor = executor
        self.store = store
        self.runner = runner
        self.prompter = prompter
        self.alarms = alarms

    async def call(self, action: Action, caller: Caller, raw: Sequence[object]) -> str:
        """Carry out ``action`` for ``caller``; the status text, or CallError."""
        args = parse_arguments(action, raw)
        roles = self._roles(caller.user_id)
        if not may(roles, action):
            self._refuse(caller, action, roles, f"{action} needs a role that holds it")
        if action is Action.Start:
            return await self._start(caller)
        if action in _BATCH_COMMANDS:
            return self._command(action, caller, args)
        if action is Action.AcknowledgeAlarm:
            return self._acknowledge(caller, str(args[0]), str(args[1]))
        if action is Action.ShelveAlarm:
            duration = args[2]
            assert isinstance(duration, float)
            return self._shelve(caller, str(args[0]), str(args[1]), duration)
        return self._answer(caller, roles, str(args[0]), args[1], str(args[2]))

    # -- rights and the audit trail ---------------------------------------------------

    def _roles(self, user_id: str) -> frozenset[Role]:
        user = find_user(self.store, user_id)
        if user is None or user.disabled:
            return frozenset()
        return roles_of(user.roles)

    def _refuse(self, caller: Caller, action: Action, roles: frozenset[Role], why: str) -> NoReturn:
        held = sorted(role.value for role in roles)
        self._audit(
            caller,
            "access refused",
            action,
            new={"roles": list[JSONValue](held)},
            reason=f"{why} (holds {', '.join(held) or 'no role'})",
        )
        raise CallError("BadUserAccessDenied", f"{caller.user_id} may not call {action}: {why}")

    def _audit(
        self,
        caller: Caller,
        what: str,
        action: Action,
        *,
        old: JSONValue = None,
        new: JSONValue = None,
        reason: str = "",
    ) -> None:
        executor = self._executor()
        if executor is not None:
            utc, process_time = executor.clock.utcnow(), executor.clock.now()
            batch = executor.batch.batch_id
        else:
            utc, process_time, batch = datetime.now(UTC), None, ""
        self.store.audit(
            AuditRecord(
                utc=utc.astimezone(UTC),
                actor=caller.user_id,
                action=what,
                object=f"opcua:{action.value}",
                old_value=old,
                new_value=new,
                reason=reason,
                batch=batch,
                process_time=process_time,
            )
        )

    def _need_executor(self) -> Executor:
        executor = self._executor()
        if executor is None:
            raise CallError("BadInvalidState", "no batch is loaded on this server")
        return executor

    # -- batch commands ---------------------------------------------------------------

    async def _start(self, caller: Caller) -> str:
        executor = self._need_executor()
        old = executor.state
        try:
            new = await self.runner.start(executor, caller.user_id)
        except (IllegalCommand, CallError) as exc:
            self._state_refused(caller, Action.Start, old.value, str(exc))
        self._audit(
            caller, "opcua call", Action.Start, old={"state": old.value}, new={"state": new.value}
        )
        return f"Start: {old.value} -> {new.value}"

    def _command(self, action: Action, caller: Caller, args: Sequence[Value]) -> str:
        executor = self._need_executor()
        command = BatchCommand(action.value)
        resolve: str | None = None
        if action is Action.Restart:
            resolve = str(args[0]) or None
            if resolve is not None and resolve not in RESOLVE:
                raise CallError(
                    "BadInvalidArgument",
                    f"Restart: Resolve must be one of {', '.join(RESOLVE)} or '', not {resolve!r}",
                )
        reason = str(args[-1]).strip()
        if action is Action.Abort and not reason:
            raise CallError("BadInvalidArgument", "Abort needs a reason")
        old = executor.state
        try:
            new = executor.command(command, actor=caller.user_id, reason=reason, resolve=resolve)
        except (IllegalCommand, CommandRefused) as exc:
            self._state_refused(caller, action, old.value, str(exc))
        new_value: dict[str, JSONValue] = {"state": new.value}
        if resolve is not None:
            new_value["resolve"] = resolve
        self._audit(
            caller, "opcua call", action, old={"state": old.value}, new=new_value, reason=reason
        )
        return f"{command.value}: {old.value} -> {new.value}"

    def _state_refused(self, caller: Caller, action: Action, state: str, why: str) -> NoReturn:
        self._audit(caller, "opcua call refused", action, old={"state": state}, reason=why)
        raise CallError("BadInvalidState", why)

    # -- alarms -----------------------------------------------------------------------

    def _acknowledge(self, caller: Caller, name: str, reason: str) -> str:
        monitor, executor = self._monitor(name), self._need_executor()
        try:
            if monitor is executor.alarms:  # the batch's own: journaled by the executor
                transition = executor.acknowledge_alarm(name, user=caller.user_id, reason=reason)
            else:
                transition = monitor.acknowledge(
                    name, user=caller.user_id, reason=reason, now=executor.clock.now()
                )
        except _ALARM_ERRORS as exc:
            raise _alarm_error(exc) from exc
        self._alarm_done(caller, Action.AcknowledgeAlarm, transition)
        return f"{name}: {transition.old.value} -> {transition.new.value}"

    def _shelve(self, caller: Caller, name: str, reason: str, duration: float) -> str:
        monitor, executor = self._monitor(name), self._need_executor()
        if not 0 < duration < math.inf:
            raise CallError("BadInvalidArgument", "ShelveAlarm: DurationS must be > 0 seconds")
        now = executor.clock.now()
        try:
            if monitor is executor.alarms:  # the batch's own: journaled by the executor
                transition = executor.shelve_alarm(
                    name, user=caller.user_id, reason=reason, seconds=duration
                )
            else:
                transition = monitor.shelve(
                    name, user=caller.user_id, reason=reason, until=now + duration, now=now
                )
        except _ALARM_ERRORS as exc:
            raise _alarm_error(exc) from exc
        self._alarm_done(caller, Action.ShelveAlarm, transition)
        return f"{name}: {transition.old.value} -> {transition.new.value} until {now + duration:g}"

    def _monitor(self, name: str) -> AlarmMonitor:
        """The alarms given to the server, else the batch's own (its executor's)."""
        if self.alarms is not None:
            return self.alarms
        executor = self._executor()
        if executor is not None:
            return executor.alarms
        raise CallError("BadNotFound", f"no alarm named {name!r} (this server has no alarms)")

    def _alarm_done(self, caller: Caller, action: Action, transition: AlarmTransition) -> None:
        # Audited, not journaled: a stored batch's record reads every alarm entry
        # of the journal as a change of a device's alarm codes (see the report).
        alarm = transition.alarm
        new: dict[str, JSONValue] = {"alarm": alarm, "state": transition.new.value}
        if transition.until is not None:
            new["until"] = transition.until
        self._audit(
            caller,
            "opcua call",
            action,
            old={"alarm": alarm, "state": transition.old.value},
            new=new,
            reason=transition.reason,
        )

    # -- prompts ----------------------------------------------------------------------

    def _answer(
        self, caller: Caller, roles: frozenset[Role], step: str, value: Value, password: str
    ) -> str:
        if self.prompter is None:
            raise CallError("BadNotFound", "this server asks no prompts")
        try:
            prompt = self.prompter.find(step)
        except NoSuchPrompt as exc:
            raise CallError("BadNotFound", str(exc)) from exc
        if not may_answer(roles, prompt.role):
            self._refuse(
                caller, Action.AnswerPrompt, roles, f"prompt {step} asks for {prompt.role.value}"
            )
        try:
            signature = self.prompter.answer(
                step, value, user_id=caller.user_id, password=password, session=caller.signing
            )
        except AnswerRejected as exc:
            self._audit(
                caller,
                "opcua call refused",
                Action.AnswerPrompt,
                new={"step": step, "value": jsonable(value)},
                reason=str(exc),
            )
            raise CallError("BadInvalidArgument", str(exc)) from exc
        except SignatureRefused as exc:  # audited by Signatures, with the exact reason
            raise CallError("BadUserAccessDenied", f"not signed: {exc}") from exc
        return f"{step}: signed by {signature.manifestation()}"


_ALARM_ERRORS = (
    UnknownAlarm,
    IllegalAlarmEvent,
    ProcessTimeWentBack,
    MissingAttribution,
    InvalidShelveTime,
)


def _alarm_error(exc: Exception) -> CallError:
    """The refusal an alarm operator action's error is answered with."""
    if isinstance(exc, UnknownAlarm):
        return CallError("BadNotFound", str(exc))
    if isinstance(exc, IllegalAlarmEvent | ProcessTimeWentBack):
        return CallError("BadInvalidState", str(exc))
    return CallError("BadInvalidArgument", str(exc))
