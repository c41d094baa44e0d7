"""What the Batch object shows: the executor's state and where it is, prompts and alarms.

A snapshot, computed from what the server already holds (the executor's state
machine, the :class:`~flexctl.northbound.progress.BatchProgress` learnt from
its journal, the prompter's pending prompts, the alarm monitor and the
devices' alarm codes): nothing here asks a device.
"""

from __future__ import annotations

from flexctl.northbound.packml import packml_code
from flexctl.northbound.progress import BatchProgress
from flexctl.northbound.prompter import NorthboundPrompter
from flexctl.northbound.view import Kind, LineView, Shown
from flexctl.supervisor.alarms import AlarmMonitor
from flexctl.supervisor.batch_state import BatchCommand
from flexctl.supervisor.executor import Executor


def batch_shown(
    executor: Executor | None,
    progress: BatchProgress,
    prompter: NorthboundPrompter | None,
    alarms: AlarmMonitor | None,
    line: LineView,
) -> dict[str, tuple[Kind, Shown]]:
    """The Batch variables by name (empty texts and PackML 0, Undefined, without a batch)."""
    state = executor.state if executor is not None else None
    procedure = executor.procedure if executor is not None else None
    return {
        "BatchId": (Kind.String, executor.batch.batch_id if executor else ""),
        "Procedure": (Kind.String, f"{procedure.name} {procedure.version}" if procedure else ""),
        "State": (Kind.String, state.value if state else ""),
        "PackMLState": (Kind.Int64, packml_code(state) if state else 0),
        "AllowedCommands": (Kind.Texts, allowed(executor) if executor else ()),
        "UnitProcedure": (Kind.String, progress.unit_procedure),
        "Step": (Kind.String, progress.step),
        "Runtime": (Kind.Double, progress.runtime(executor.clock.now()) if executor else 0.0),
        "PendingPrompts": (
            Kind.Texts,
            tuple(p.text() for p in prompter.pending()) if prompter else (),
        ),
        "ActiveAlarms": (Kind.Texts, alarm_texts(alarms, line)),
    }


def allowed(executor: Executor) -> tuple[str, ...]:
    """The commands the batch's state accepts, in the standard's order."""
    accepted = executor.machine.allowed()
    return tuple(command.value for command in BatchCommand if command in accepted)


def alarm_texts(alarms: AlarmMonitor | None, line: LineView) -> tuple[str, ...]:
    """The monitor's annunciated alarms (most urgent first), then each device's alarm codes."""
    texts: list[str] = []
    if alarms is not None:
        for status in alarms.active():
            what = status.definition.message or status.definition.signal
            texts.append(f"{status.name} [{status.priority.value}] {status.state.value}: {what}")
    for name, device in line.devices.items():
        texts.extend(f"{name}: {code}" for code in device.alarms)
    return tuple(texts)
