"""What ``flexctl run`` prints: progress lines from the journal, and the summary at the end.

Everything here reads journal entries (and, for the summary, the executor's
step results); nothing reads a device. :class:`ObservedJournal` is an in-memory
journal that hands each entry to its listeners as it is appended, so the
progress lines appear in the order things happened, stamped with process time
(``d03 14:20``: day 3 of the run, 14:20 into that day).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TextIO

import structlog

from flexctl.line import Line
from flexctl.procedure.duration import format_duration
from flexctl.procedure.model import (
    CommandStep,
    Procedure,
    WaitUntilStep,
)
from flexctl.profile import Value
from flexctl.record.journal import (
    SYSTEM,
    EntryKind,
    Journal,
    JournalEntry,
    JSONValue,
    MemoryJournal,
)
from flexctl.report.wording import (
    describe_step,
    number,
    short,
    signer_label,
    span,
    stamp,
)
from flexctl.supervisor.batch_state import BatchState

log = structlog.get_logger("flexctl.cli.run")

Listener = Callable[[JournalEntry], object]

UNIT_WIDTH: Final = 16
STEP_WIDTH: Final = 22

#: Result fields worth a progress line, in the order they are shown: label and format.
KEY_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("vcd_per_ml", "VCD {}/mL"),
    ("viable_cells", "{} viable cells"),
    ("output_cells", "{} cells out"),
    ("cells", "{} cells"),
    ("output_viability_pct", "viability {} %"),
    ("viability_pct", "viability {} %"),
    ("recovery_pct", "recovery {} %"),
    ("output_volume_ml", "{} mL"),
    ("volume_ml", "{} mL"),
    ("bags_filled", "{} bags filled"),
)
#: A result with none of these is not worth a line (a 1 mL sample's volume alone is not).
HEADLINE_FIELDS: Final = frozenset(
    {"vcd_per_ml", "viable_cells", "output_cells", "cells", "recovery_pct", "bags_filled"}
)


class ObservedJournal:
    """A journal (``inner``, in memory by default) that calls its listeners with every entry."""

    def __init__(self, inner: Journal | None = None) -> None:
        self.inner: Journal = inner if inner is not None else MemoryJournal()
        self._listeners: list[Listener] = []

    def entries(self) -> list[JournalEntry]:
        return self.inner.entries()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each later entry; returns the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def append(self, entry: JournalEntry) -> None:
        """Append ``entry``, then tell the listeners; a failing listener never fails the append.

        The entry is in the journal before any listener runs. A listener that raises (a
        closed stdout pipe, a bug in the progress printer) is logged and skipped: watching
        the run must never stop the run or lose a record.
        """
        self.inner.append(entry)
        for listener in tuple(self._listeners):
            try:
                listener(entry)
            except Exception:  # a listener must never fail the journal
                log.exception("journal listener failed", listener=repr(listener))


# -- formatting --------------------------------------------------------------------------


def key_values(fields: Mapping[str, JSONValue]) -> str:
    """The fields of a result worth showing, or "" if none is."""
    if not HEADLINE_FIELDS & {k for k, v in fields.items() if v not in (None, 0)}:
        return ""
    shown: list[str] = []
    seen_cells = seen_viability = seen_volume = False
    for name, template in KEY_FIELDS:
        value = fields.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name in ("cells", "output_cells"):
            if seen_cells:
                continue
            seen_cells = True
        if name.endswith("viability_pct"):
            if seen_viability:
                continue
            seen_viability = True
        if name.endswith("volume_ml"):
            if seen_volume or "vcd_per_ml" in fields:  # a sample's volume is noise
                continue
            seen_volume = True
        if name == "bags_filled" and not value:
            continue
        shown.append(template.format(number(value, pct=name.endswith("_pct"))))
    return ", ".join(shown)


# -- progress ----------------------------------------------------------------------------


class Output:
    """Lines to stdout (or a given stream), flushed one by one.

    A reader that goes away (``flexctl run ... | head``) ends the output, never
    the batch: later lines are dropped and one warning is logged.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.closed = False

    def line(self, text: str = "") -> None:
        if self.closed:
            return
        try:
            print(text, file=self.stream, flush=True)
        except (BrokenPipeError, ValueError) as exc:  # ValueError: the stream was closed
            self.closed = True
            log.warning("output_closed", error=str(exc), detail="the batch runs on")
            if self.stream is sys.stdout and isinstance(exc, BrokenPipeError):
                # Or Python's own flush at exit reports the broken pipe again.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)


class Progress:
    """Prints one line per step start, batch state change and notable event, from the journal.

    Times count from the batch's start. Lines go to ``out`` as they happen. If
    ``out`` goes away (a closed pipe), progress stops and the batch runs on:
    printing never fails a step.
    """

    def __init__(self, procedure: Procedure, out: Output, *, start: float = 0.0) -> None:
        self.procedure = procedure
        self.out = out
        self.start = start
        self.steps = {step.id: step for step in procedure.steps()}
        self.rules = {rule.id for rule in procedure.rules()}
        self._rule_args: dict[str, JSONValue] = {}

    def line(self, entry: JournalEntry, where: str, text: str) -> None:
        unit = entry.unit_procedure or "-"
        self.write(
            f"{stamp(entry.process_time - self.start)}  {unit:<{UNIT_WIDTH}} "
            f"{where:<{STEP_WIDTH}} {text}"
        )

    def write(self, text: str) -> None:
        self.out.line(text)

    def __call__(self, entry: JournalEntry) -> None:
        handler = getattr(self, f"_on_{entry.kind.value}", None)
        if handler is not None:
            handler(entry)

    def _on_batch_state(self, entry: JournalEntry) -> None:
        p = entry.payload
        if p.get("old") == BatchState.Idle and p.get("new") == BatchState.Running:
            self.start = entry.process_time  # day 0, 00:00 is the batch's start
        if "refused" in p:
            text = f"command {p.get('command')} by {entry.actor} refused: {p.get('refused')}"
        else:
            text = f"{p.get('old')} -> {p.get('new')}  ({p.get('command')} by {entry.actor}"
            text += f": {p.get('reason')})" if p.get("reason") else ")"
        self.line(entry, "BATCH", text)

    def _on_step_start(self, entry: JournalEntry) -> None:
        step = self.steps.get(entry.step)
        text = describe_step(step) if step is not None else str(entry.payload.get("step_kind"))
        attempt = entry.payload.get("attempt")
        if isinstance(attempt, int) and attempt > 1:
            text += f"  (attempt {attempt})"
        self.line(entry, entry.step, text)

    def _on_step_end(self, entry: JournalEntry) -> None:
        p = entry.payload
        result = p.get("result")
        if result != "done":
            why = p.get("error") or p.get("reason") or ""
            self.line(entry, entry.step, f"  ! step {result}: {short(str(why))}")
            return
        fields = p.get("fields")
        if not isinstance(fields, dict):
            return
        step = self.steps.get(entry.step)
        if isinstance(step, WaitUntilStep):
            elapsed = fields.get("elapsed_s")
            if fields.get("timed_out") is True:
                self.line(entry, entry.step, "  = timed out (continued)")
            elif isinstance(elapsed, int | float) and elapsed > 0:
                self.line(entry, entry.step, f"  = true after {format_duration(elapsed)}")
            return
        if isinstance(step, CommandStep):
            values = key_values(fields)
            if values:
                self.line(entry, entry.step, f"  = {values}")

    def _on_command(self, entry: JournalEntry) -> None:
        p = entry.payload
        if p.get("method") == "safe_state":
            action = p.get("args", {})
            what = action.get("action") if isinstance(action, dict) else action
            self.line(entry, entry.device, f"safe state: {what}")
            return
        if entry.step in self.rules and entry.step not in self.steps:
            # A rule fires on a schedule: shown when it fires with new arguments.
            args = p.get("args")
            if entry.step in self._rule_args and self._rule_args[entry.step] == args:
                return
            self._rule_args[entry.step] = args
            items = args.items() if isinstance(args, dict) else ()
            shown = ", ".join(f"{k}={number(v)}" for k, v in items)
            self.line(entry, entry.step, f"rule: {entry.device}.{p.get('method')}({shown})")

    def _on_command_result(self, entry: JournalEntry) -> None:
        p = entry.payload
        if "error" in p:
            self.line(
                entry,
                entry.step or entry.device,
                f"  ! {p.get('method')}: {short(str(p['error']))}",
            )
            return
        if entry.step in self.rules and entry.step not in self.steps:
            result = p.get("result")
            values = key_values(result) if isinstance(result, dict) else ""
            if values:
                self.line(entry, entry.step, f"  = rule {p.get('method')}: {values}")

    def _on_record(self, entry: JournalEntry) -> None:
        p = entry.payload
        if p.get("record") == "device origin":  # in the run's header already
            return
        unit = p.get("unit")
        value = number(p.get("value"), pct=unit == "%")
        self.line(entry, entry.step, f"  = {value}{' ' + str(unit) if unit else ''}")

    def _on_signature(self, entry: JournalEntry) -> None:
        p = entry.payload
        value = p.get("value")
        entered = "" if value is True else f" = {value!r}"
        self.line(
            entry,
            entry.step,
            f"  = signed {p.get('role')}/{p.get('meaning')}{entered} by "
            f"{signer_label(entry.actor, p.get('simulated'), brief=True)}",
        )

    def _on_prompt(self, entry: JournalEntry) -> None:
        p = entry.payload
        if "rejected" in p:
            self.line(entry, entry.step, f"  ! entry {p.get('rejected')!r} refused: {p.get('why')}")

    def _on_deviation(self, entry: JournalEntry) -> None:
        p = entry.payload
        text = str(p.get("message") or p.get("deviation") or "deviation")
        self.line(entry, entry.step or entry.device or "-", f"DEVIATION: {short(text)}")

    def _on_interlock(self, entry: JournalEntry) -> None:
        p = entry.payload
        if "reason" in p:
            text = f"INTERLOCK {p.get('interlock')}: {p.get('reason')} -> {p.get('action')}"
        else:
            detail = ", ".join(f"{k}={v}" for k, v in p.items() if k != "event")
            text = f"interlock: {p.get('event') or p.get('link')} ({detail})"
        self.line(entry, entry.device or "-", short(text, 100))

    def _on_alarm(self, entry: JournalEntry) -> None:
        p = entry.payload
        if "alarm" in p:  # an ISA-18.2 limit alarm's transition
            who = f" by {entry.actor}" if entry.actor != SYSTEM else ""
            text = (
                f"ALARM {p.get('alarm')} ({p.get('priority')}): {p.get('event')}{who}, "
                f"{p.get('old')} -> {p.get('new')}"
            )
        else:  # the device's own alarm codes
            text = f"ALARM raised {p.get('raised') or '-'}, cleared {p.get('cleared') or '-'}"
        self.line(entry, entry.device, text)


# -- the summary -------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """One e-signature, as the summary lists it."""

    at: float
    unit_procedure: str
    step: str
    actor: str
    role: str
    meaning: str
    value: JSONValue
    simulated: bool


@dataclass(frozen=True)
class Summary:
    """The outcome of one run, from the journal and the step results alone."""

    batch_id: str
    state: BatchState
    started: float
    process_seconds: float
    units: tuple[str, ...]
    completed_units: tuple[str, ...]
    product_step: str | None = None
    final_cells: float | None = None
    final_viability: float | None = None
    final_viable_cells: float | None = None
    target_dose: float | None = None
    bags_filled: int | None = None
    freezer_program: str | None = None
    deviations: tuple[JournalEntry, ...] = ()
    holds: tuple[JournalEntry, ...] = ()
    interlocks: tuple[JournalEntry, ...] = ()
    signatures: tuple[Signed, ...] = ()
    requests: int = 0
    wall_seconds: float = 0.0

    @property
    def dose_reached(self) -> bool | None:
        if self.target_dose is None or self.final_viable_cells is None:
            return None
        return self.final_viable_cells >= self.target_dose


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def summarize(
    *,
    batch_id: str,
    state: BatchState,
    procedure: Procedure,
    line: Line,
    entries: Sequence[JournalEntry],
    results: Mapping[str, Mapping[str, Value]],
    parameters: Mapping[str, object],
    requests: int,
    wall_seconds: float,
) -> Summary:
    """What the summary shows, from the journal and the step results (no device reads)."""
    started = next(
        (
            e.process_time
            for e in entries
            if e.kind is EntryKind.BATCH_STATE and e.payload.get("new") == BatchState.Running
        ),
        entries[0].process_time if entries else 0.0,
    )
    ended = entries[-1].process_time if entries else started
    units = tuple(u.name for u in procedure.unit_procedures)
    completed = tuple(
        u.name for u in procedure.unit_procedures if all(s.id in results for s in u.steps)
    )
    # The product: the last step (in procedure order) whose result counts cells and viability.
    product_step: str | None = None
    cells = viability = viable = None
    bags: int | None = None
    for step in procedure.steps():
        fields = results.get(step.id)
        if fields is None:
            continue
        count = _float(fields.get("cells", fields.get("viable_cells")))
        pct = _float(fields.get("viability_pct"))
        if count is not None and pct is not None:
            product_step = step.id
            viability = pct
            if "cells" in fields:
                cells, viable = count, count * pct / 100.0
            else:
                cells, viable = count * 100.0 / pct if pct else None, count
        filled = fields.get("bags_filled")
        if isinstance(filled, int) and not isinstance(filled, bool) and filled > 0:
            bags = filled
    freezers = {name for name, device in line.devices.items() if device.driver == "freezer"}
    freezer_program: str | None = None
    for entry in entries:
        if entry.kind is not EntryKind.RECORD:
            continue
        expression = str(entry.payload.get("expression", ""))
        device, _, signal = expression.partition(".")
        if device in freezers and signal == "program_state":
            freezer_program = str(entry.payload.get("value"))
    signatures = tuple(
        Signed(
            at=e.process_time - started,
            unit_procedure=e.unit_procedure,
            step=e.step,
            actor=e.actor,
            role=str(e.payload.get("role")),
            meaning=str(e.payload.get("meaning")),
            value=e.payload.get("value"),
            simulated=e.payload.get("simulated") is True,
        )
        for e in entries
        if e.kind is EntryKind.SIGNATURE
    )
    return Summary(
        batch_id=batch_id,
        state=state,
        started=started,
        process_seconds=ended - started,
        units=units,
        completed_units=completed,
        product_step=product_step,
        final_cells=cells,
        final_viability=viability,
        final_viable_cells=viable,
        target_dose=_float(parameters.get("target_dose")),
        bags_filled=bags,
        freezer_program=freezer_program,
        deviations=tuple(e for e in entries if e.kind is EntryKind.DEVIATION),
        holds=tuple(
            e
            for e in entries
            if e.kind is EntryKind.BATCH_STATE
            and e.payload.get("new") in (BatchState.Holding, BatchState.Aborting)
        ),
        interlocks=tuple(
            e for e in entries if e.kind is EntryKind.INTERLOCK and "reason" in e.payload
        ),
        signatures=signatures,
        requests=requests,
        wall_seconds=wall_seconds,
    )


def summary_lines(summary: Summary) -> list[str]:
    """The summary as printed at the end of a run."""
    s = summary
    start = s.started
    label = 16
    out = [f"== batch {s.batch_id}: {s.state.value} =="]

    def row(name: str, text: str) -> None:
        out.append(f"{name:<{label}}{text}")

    row("process time", f"{span(s.process_seconds)} ({s.process_seconds:.0f} s)")
    missing = [u for u in s.units if u not in s.completed_units]
    row(
        "unit procedures",
        f"{len(s.completed_units)} of {len(s.units)} complete"
        + (f" (not: {', '.join(missing)})" if missing else f": {', '.join(s.completed_units)}"),
    )
    if s.final_cells is not None and s.final_viability is not None:
        text = (
            f"{number(s.final_cells)} cells, viability {number(s.final_viability, pct=True)} %"
            f" = {number(s.final_viable_cells)} viable (step {s.product_step})"
        )
        row("final product" if s.state is BatchState.Complete else "last count", text)
    else:
        row("final product", "none counted")
    if s.target_dose is not None:
        reached = s.dose_reached
        verdict = "reached" if reached else "NOT reached" if reached is False else "unknown"
        row("target dose", f"{number(s.target_dose)} viable cells: {verdict}")
    frozen = "not frozen"
    if s.freezer_program is not None:
        frozen = (
            "frozen (freezer program complete)"
            if s.freezer_program == "complete"
            else f"NOT frozen (freezer program {s.freezer_program})"
        )
    if s.bags_filled is not None or s.freezer_program is not None:
        row("bags", f"{s.bags_filled or 0} filled, {frozen}")
    if s.deviations:
        row("deviations", str(len(s.deviations)))
        for e in s.deviations:
            text = str(e.payload.get("message") or e.payload.get("deviation") or "deviation")
            where = "/".join(x for x in (e.unit_procedure, e.step or e.device) if x)
            out.append(f"  {stamp(e.process_time - start)} {where}: {short(str(text), 100)}")
    else:
        row("deviations", "none")
    for e in s.holds:
        command = e.payload.get("command")
        row(
            "held" if command == "Hold" else "aborted",
            f"{stamp(e.process_time - start)} by {e.actor}: {short(str(e.payload.get('reason')))}",
        )
    if s.interlocks:
        row("interlocks", str(len(s.interlocks)))
        for e in s.interlocks:
            out.append(
                f"  {stamp(e.process_time - start)} {e.device}: {short(str(e.payload['reason']))}"
            )
    by_signer: dict[str, list[Signed]] = {}
    for signed in s.signatures:
        by_signer.setdefault(signer_label(signed.actor, signed.simulated), []).append(signed)
    if not by_signer:
        row("signatures", "none")
    for signer, signed_list in by_signer.items():
        row("signed by", f"{signer}: {len(signed_list)}")
        for signed in signed_list:
            entered = "" if signed.value is True else f" = {signed.value!r}"
            out.append(
                f"  {stamp(signed.at)} {signed.unit_procedure}/{signed.step} "
                f"({signed.role}, {signed.meaning}){entered}"
            )
    row("requests", f"{s.requests} protocol requests sent")
    row("wall time", f"{s.wall_seconds:.1f} s")
    return out
