"""The batch's events from the journal: state changes, deviations, interlocks, alarms,
failed commands and recorded measurements, each with its time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flexctl.record.journal import EntryKind, JournalEntry, JSONValue
from flexctl.report.rows import (
    AlarmChange,
    CommandError,
    Deviation,
    InterlockEvent,
    Measurement,
    StateChange,
    Timebase,
)

#: The ``record`` of the journal entries saying where each device is (flexctl run writes them).
ORIGIN_RECORD = "device origin"


@dataclass(frozen=True)
class Events:
    states: tuple[StateChange, ...]
    deviations: tuple[Deviation, ...]
    interlocks: tuple[InterlockEvent, ...]
    alarms: tuple[AlarmChange, ...]
    command_errors: tuple[CommandError, ...]
    measurements: tuple[Measurement, ...]
    #: device -> the "device origin" record's payload (in-process twin, external twin, hardware)
    origins: Mapping[str, Mapping[str, JSONValue]]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _rest(payload: Mapping[str, JSONValue], *shown: str) -> dict[str, JSONValue]:
    return {k: v for k, v in sorted(payload.items()) if k not in shown}


def build_events(entries: Iterable[JournalEntry], time: Timebase) -> Events:
    """Sort the journal's events into their tables, oldest first."""
    states: list[StateChange] = []
    deviations: list[Deviation] = []
    interlocks: list[InterlockEvent] = []
    alarms: list[AlarmChange] = []
    errors: list[CommandError] = []
    measurements: list[Measurement] = []
    origins: dict[str, Mapping[str, JSONValue]] = {}
    for e in entries:
        p = e.payload
        at = time.at(e.process_time, e.utc)
        if e.kind is EntryKind.BATCH_STATE:
            states.append(
                StateChange(
                    at,
                    e.actor,
                    _text(p.get("command")),
                    _text(p.get("old") or p.get("state")),
                    _text(p.get("new")),
                    _text(p.get("reason")),
                    _text(p.get("refused")),
                )
            )
        elif e.kind is EntryKind.DEVIATION:
            deviations.append(
                Deviation(
                    at,
                    e.unit_procedure,
                    e.step,
                    e.device,
                    e.actor,
                    _text(p.get("deviation")) or "deviation",
                    _text(p.get("message") or p.get("error")),
                    _rest(p, "deviation", "message"),
                )
            )
        elif e.kind is EntryKind.INTERLOCK:
            interlocks.append(
                InterlockEvent(
                    at,
                    e.unit_procedure,
                    e.device,
                    _text(p.get("interlock")),
                    _text(p.get("event") or p.get("link")) or ("tripped" if "reason" in p else ""),
                    _text(p.get("reason")),
                    _text(p.get("action")),
                    _rest(p, "interlock", "event", "reason", "action"),
                )
            )
        elif e.kind is EntryKind.ALARM and "alarm" in p:  # an ISA-18.2 limit alarm
            name, event = _text(p.get("alarm")), _text(p.get("event"))
            alarms.append(
                AlarmChange(
                    at,
                    e.device,
                    (name,) if event == "Activate" else (),
                    (name,) if event == "Clear" else (),
                    (f"{name}: {_text(p.get('old'))} -> {_text(p.get('new'))} ({event})",),
                )
            )
        elif e.kind is EntryKind.ALARM:
            alarms.append(
                AlarmChange(
                    at,
                    e.device,
                    _names(p.get("raised")),
                    _names(p.get("cleared")),
                    _names(p.get("active")),
                )
            )
        elif e.kind is EntryKind.COMMAND_RESULT and "error" in p:
            command = _text(p.get("method")) or (f"set {p['set']}" if "set" in p else "")
            errors.append(
                CommandError(at, e.unit_procedure, e.step, e.device, command, _text(p["error"]))
            )
        elif e.kind is EntryKind.RECORD:
            if p.get("record") == ORIGIN_RECORD:
                origins[e.device] = dict(p)
                continue
            measurements.append(
                Measurement(
                    at,
                    e.unit_procedure,
                    e.step,
                    e.device,
                    _text(p.get("expression")),
                    p.get("value"),
                    _text(p.get("unit")),
                )
            )
    return Events(
        tuple(states),
        tuple(deviations),
        tuple(interlocks),
        tuple(alarms),
        tuple(errors),
        tuple(measurements),
        origins,
    )
