"""The report's summary: final state, the product and dose figures, and the counts.

The product follows the rule of ``flexctl run``'s summary
(:func:`flexctl.cli.progress.summarize`): the last step, in procedure order,
whose result counts cells (``cells`` or ``viable_cells``) and viability
(``viability_pct``). That function needs the loaded line and the executor's
results; here both come from the store (the step ends' fields, the devices'
drivers), so the rule is applied to them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from flexctl.record.journal import JSONValue
from flexctl.report.events import Events
from flexctl.report.rows import Signature, UnitRow
from flexctl.supervisor.alarms import chatters, flood_periods


@dataclass(frozen=True)
class Summary:
    final_state: str
    process_seconds: float
    units: tuple[str, ...]
    completed_units: tuple[str, ...]
    product_step: str | None
    final_cells: float | None
    final_viability: float | None
    final_viable_cells: float | None
    target_dose: float | None
    bags_filled: int | None
    freezer_program: str | None
    deviations: int
    holds: int
    interlock_trips: int
    alarms_raised: int
    #: ISA-18.2 KPIs: floods (more than 10 activations in 10 min) and chattering
    #: alarms (3 activations within 1 min)
    alarm_floods: int
    chattering_alarms: tuple[str, ...]
    signatures: int
    signatures_by_simulation: int
    signatures_not_intact: int

    @property
    def dose_reached(self) -> bool | None:
        if self.target_dose is None or self.final_viable_cells is None:
            return None
        return self.final_viable_cells >= self.target_dose


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _product(
    units: Sequence[UnitRow],
) -> tuple[str | None, float | None, float | None, float | None, int | None]:
    """(step, cells, viability, viable cells, bags filled) from the steps' last results."""
    step_id: str | None = None
    cells = viability = viable = None
    bags: int | None = None
    for unit in units:
        for step in unit.steps:
            if step.result != "done":
                continue
            fields = step.attempts[-1].fields
            count = _float(fields.get("cells", fields.get("viable_cells")))
            pct = _float(fields.get("viability_pct"))
            if count is not None and pct is not None:
                step_id, viability = step.step, pct
                if "cells" in fields:
                    cells, viable = count, count * pct / 100.0
                else:
                    cells, viable = count * 100.0 / pct if pct else None, count
            filled = fields.get("bags_filled")
            if isinstance(filled, int) and not isinstance(filled, bool) and filled > 0:
                bags = filled
    return step_id, cells, viability, viable, bags


def _freezer_program(events: Events, freezers: Collection[str]) -> str | None:
    program: str | None = None
    for record in events.measurements:
        device, _, signal = record.expression.partition(".")
        if device in freezers and signal == "program_state":
            program = str(record.value)
    return program


def build_summary(
    *,
    final_state: str,
    process_seconds: float,
    units: Sequence[UnitRow],
    events: Events,
    signatures: Sequence[Signature],
    parameters: Mapping[str, JSONValue],
    freezers: Collection[str],
) -> Summary:
    step_id, cells, viability, viable, bags = _product(units)
    return Summary(
        final_state=final_state,
        process_seconds=process_seconds,
        units=tuple(u.name for u in units),
        completed_units=tuple(u.name for u in units if u.complete),
        product_step=step_id,
        final_cells=cells,
        final_viability=viability,
        final_viable_cells=viable,
        target_dose=_float(parameters.get("target_dose")),
        bags_filled=bags,
        freezer_program=_freezer_program(events, freezers),
        deviations=len(events.deviations),
        holds=sum(1 for s in events.states if s.new in ("Holding", "Aborting")),
        interlock_trips=sum(1 for i in events.interlocks if i.tripped),
        alarms_raised=sum(len(a.raised) for a in events.alarms),
        alarm_floods=len(flood_periods(_activations(events), window=600.0, limit=10)),
        chattering_alarms=_chattering(events),
        signatures=len(signatures),
        signatures_by_simulation=sum(1 for s in signatures if s.simulated),
        signatures_not_intact=sum(1 for s in signatures if s.binding != "intact"),
    )


def _activations(events: Events) -> list[float]:
    """Process times of every alarm activation (a device code raised, a limit alarm on)."""
    return [a.at.process_time for a in events.alarms for _ in a.raised]


def _chattering(events: Events) -> tuple[str, ...]:
    """Alarms that activated 3 or more times within one minute."""
    times: dict[str, list[float]] = {}
    for change in events.alarms:
        for name in change.raised:
            times.setdefault(f"{change.device}:{name}", []).append(change.at.process_time)
    return tuple(sorted(n for n, t in times.items() if chatters(t, window=60.0, count=3)))
