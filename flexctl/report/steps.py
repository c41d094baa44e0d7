"""Unit procedures, steps and their attempts, from the journal (and the procedure as run).

Each ``step_start`` begins an attempt and the next ``step_end`` of the same
step closes it, so a step held and restarted shows every run. A ``step_end``
with no open attempt is a step a person declared done (its command's outcome
was unknown): an attempt of its own, with no start. With the procedure (parsed
from the text the batch stored) every planned step is listed, run or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from flexctl.procedure.model import Procedure
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.report.rows import Attempt, StepRow, Timebase, UnitRow
from flexctl.report.text import value_text
from flexctl.report.wording import describe_step

Key = tuple[str, str]


@dataclass
class _Seen:
    """What the journal says about one step, gathered in order."""

    kind: str = ""
    description: str = ""
    attempts: list[Attempt] = field(default_factory=list)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _arg(value: object) -> str:
    return repr(value) if isinstance(value, str) else value_text(value)


def command_text(entry: JournalEntry) -> str:
    """A COMMAND entry as what was sent: ``thaw.start(program='fast')``, ``set tank.x = 1``."""
    p = entry.payload
    if "set" in p:
        return f"set {entry.device}.{p['set']} = {_arg(p.get('value'))}"
    args = p.get("args")
    shown = (
        ", ".join(f"{name}={_arg(value)}" for name, value in args.items())
        if isinstance(args, dict)
        else ""
    )
    return f"{entry.device}.{p.get('method')}({shown})"


def _gather(entries: Iterable[JournalEntry], time: Timebase) -> dict[Key, _Seen]:
    seen: dict[Key, _Seen] = {}
    for entry in entries:
        p = entry.payload
        if entry.kind is EntryKind.COMMAND:
            found = seen.get((entry.unit_procedure, entry.step))
            # A rule's commands and safe states belong to no step attempt.
            if found and found.attempts and found.attempts[-1].end is None:
                running = found.attempts[-1]
                found.attempts[-1] = replace(running, sent=(*running.sent, command_text(entry)))
            continue
        if entry.kind not in (EntryKind.STEP_START, EntryKind.STEP_END):
            continue
        step = seen.setdefault((entry.unit_procedure, entry.step), _Seen())
        at = time.at(entry.process_time, entry.utc)
        if entry.kind is EntryKind.STEP_START:
            step.kind = _text(p.get("step_kind")) or step.kind
            step.description = _text(p.get("description")) or step.description
            number = p.get("attempt")
            if isinstance(number, bool) or not isinstance(number, int):
                number = len(step.attempts) + 1
            step.attempts.append(Attempt(number, at, None, "running", actor=entry.actor))
            continue
        fields = p.get("fields")
        result = _text(p.get("result")) or "?"
        details = dict(fields) if isinstance(fields, dict) else {}
        reason, error = _text(p.get("reason")), _text(p.get("error"))
        last = step.attempts[-1] if step.attempts else None
        if last is not None and last.end is None:
            step.attempts[-1] = replace(
                last, end=at, result=result, fields=details, reason=reason, error=error
            )
        else:  # declared done by a person: an attempt that never started
            step.attempts.append(
                Attempt(None, None, at, result, details, reason, error, actor=entry.actor)
            )
    return seen


def build_units(
    entries: Sequence[JournalEntry], procedure: Procedure | None, time: Timebase
) -> tuple[UnitRow, ...]:
    """Every unit procedure with its steps: planned ones in procedure order, then any others."""
    seen = _gather(entries, time)
    units: dict[str, list[StepRow]] = {}
    if procedure is not None:
        for unit in procedure.unit_procedures:
            rows = units.setdefault(unit.name, [])
            for step in unit.steps:
                found = seen.pop((unit.name, step.id), _Seen())
                rows.append(
                    StepRow(
                        unit.name,
                        step.id,
                        step.kind,
                        describe_step(step),
                        step.description,
                        tuple(found.attempts),
                    )
                )
    for (unit_name, step_id), found in seen.items():
        units.setdefault(unit_name, []).append(
            StepRow(
                unit_name,
                step_id,
                found.kind,
                found.kind,
                found.description,
                tuple(found.attempts),
                planned=procedure is None,
            )
        )
    return tuple(UnitRow(name, tuple(rows)) for name, rows in units.items())
