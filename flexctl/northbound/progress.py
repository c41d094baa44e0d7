"""Where the batch is, learnt from its journal: unit procedure, step, runtime, device news.

The executor says what it does only through its journal, so the server reads
along (:class:`~flexctl.northbound.observe.JournalTap`) and keeps what a
console shows. Entries that carry device facts (alarms read by the monitor, a
status at a restart check, a setpoint written) update the
:class:`~flexctl.northbound.view.LineView` as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flexctl.northbound.view import LineView
from flexctl.profile import Value
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.supervisor.batch_state import FINAL, BatchState

_FINAL = frozenset(state.value for state in FINAL)


@dataclass
class BatchProgress:
    """The running unit procedure and step, and when the batch started and ended."""

    unit_procedure: str = ""
    step: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    # (device, signal) -> value of a set step sent, until its result says it was written
    _sets: dict[tuple[str, str], Value] = field(default_factory=dict)

    def runtime(self, now: float) -> float:
        """Process seconds since the batch started (until it ended); 0 before it started."""
        if self.started_at is None:
            return 0.0
        end = now if self.ended_at is None else self.ended_at
        return max(0.0, end - self.started_at)

    def follow(self, entry: JournalEntry, line: LineView | None = None) -> None:
        """Take one journal entry into account."""
        payload = entry.payload
        kind = entry.kind
        if kind is EntryKind.BATCH_STATE and "new" in payload:
            self._state(entry, str(payload["new"]), str(payload.get("old", "")))
        elif kind is EntryKind.STEP_START:
            self.unit_procedure, self.step = entry.unit_procedure, entry.step
        elif kind is EntryKind.STEP_END and entry.step == self.step:
            self.step = ""
        elif line is not None:
            self._device_news(entry, line)

    def _state(self, entry: JournalEntry, new: str, old: str) -> None:
        if new == BatchState.Idle.value:  # a Reset: the next run starts afresh
            self.unit_procedure = self.step = ""
            self.started_at = self.ended_at = None
            return
        if self.started_at is None or old == BatchState.Idle.value:
            # Start, or a batch resumed from its journal (the server learns of it late)
            self.started_at, self.ended_at = entry.process_time, None
        if new in _FINAL:
            self.ended_at = entry.process_time
            self.step = ""

    def _device_news(self, entry: JournalEntry, line: LineView) -> None:
        payload, device = entry.payload, entry.device
        active = payload.get("active")
        if entry.kind is EntryKind.ALARM and isinstance(active, list):
            view = line.devices.get(device)
            if view is not None:
                view.alarms = tuple(str(code) for code in active)
        elif entry.kind is EntryKind.INTERLOCK and payload.get("event") == "restart check":
            view = line.devices.get(device)
            if view is not None and isinstance(payload.get("status"), str):
                view.status_reading = str(payload["status"])
        elif entry.kind is EntryKind.COMMAND and isinstance(payload.get("set"), str):
            value = payload.get("value")
            if isinstance(value, bool | int | float | str):
                self._sets[(device, str(payload["set"]))] = value
        elif entry.kind is EntryKind.COMMAND_RESULT and isinstance(payload.get("set"), str):
            value = self._sets.pop((device, str(payload["set"])), None)
            if payload.get("ok") is True and value is not None:
                line.update(device, {str(payload["set"]): value})
