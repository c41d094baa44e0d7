"""The journal: frozen, JSON-able entries in an append-only list."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from flexctl.record.journal import (
    EntryKind,
    Journal,
    JournalEntry,
    MemoryJournal,
    jsonable,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _entry(kind: EntryKind = EntryKind.RECORD, **payload: object) -> JournalEntry:
    return JournalEntry(
        process_time=12.5,
        utc=T0 + timedelta(seconds=12.5),
        kind=kind,
        actor="system",
        batch="B-1",
        unit_procedure="thaw",
        step="curve",
        device="thaw",
        payload={k: jsonable(v) for k, v in payload.items()},
    )


def test_memory_journal_is_a_journal_and_appends_in_order() -> None:
    journal = MemoryJournal()
    assert isinstance(journal, Journal)
    first, second = _entry(value=1), _entry(EntryKind.DEVIATION, value=2)
    journal.append(first)
    journal.append(second)
    assert journal.entries() == [first, second]
    assert len(journal) == 2
    journal.entries().clear()  # a copy: the journal keeps its entries
    assert journal.entries() == [first, second]


def test_the_journal_takes_entries_only() -> None:
    with pytest.raises(TypeError):
        MemoryJournal().append({"kind": "record"})  # type: ignore[arg-type]


def test_an_entry_cannot_change() -> None:
    payload: dict[str, object] = {"value": 1.5}
    entry = JournalEntry(12.5, T0, EntryKind.RECORD, "system", "B-1", payload=payload)  # type: ignore[arg-type]
    payload["value"] = 99  # the caller's dict is not the entry's
    assert entry.payload["value"] == 1.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.actor = "mallory"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.payload["value"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        entry.payload.clear()  # type: ignore[attr-defined]


def test_every_kind_of_the_brief_exists() -> None:
    assert {k.value for k in EntryKind} == {
        "batch_state",
        "step_start",
        "step_end",
        "command",
        "command_result",
        "prompt",
        "signature",
        "record",
        "deviation",
        "interlock",
        "alarm",
        "parameter",
    }
    assert JournalEntry(0.0, T0, "alarm", "system", "B").kind is EntryKind.ALARM  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        JournalEntry(0.0, T0, "gossip", "system", "B")  # type: ignore[arg-type]


def test_payload_must_be_json_and_time_zone_aware() -> None:
    with pytest.raises(TypeError, match="not JSON-able"):
        JournalEntry(0.0, T0, EntryKind.RECORD, "system", "B", payload={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not JSON-able"):
        JournalEntry(0.0, T0, EntryKind.RECORD, "system", "B", payload={"x": math.nan})
    with pytest.raises(ValueError, match="time zone"):
        JournalEntry(0.0, datetime(2025, 1, 1), EntryKind.RECORD, "system", "B")


def test_as_dict_is_plain_json() -> None:
    entry = _entry(value=3.25, tags=["a", "b"])
    data = entry.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["utc"] == "2025-01-02T03:04:17.500000+00:00"
    assert data["kind"] == "record"
    assert data["payload"] == {"value": 3.25, "tags": ["a", "b"]}


class Colour(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Result:
    state: Colour
    count: int
    values: tuple[float, ...]


def test_jsonable_keeps_everything_readable() -> None:
    assert jsonable(Result(Colour.RED, 3, (1.0, math.inf))) == {
        "state": "red",
        "count": 3,
        "values": [1.0, "inf"],
    }
    assert jsonable({1: {"b", "a"}}) == {"1": ["a", "b"]}
    assert jsonable(T0) == T0.isoformat()
    assert jsonable(None) is None and jsonable(True) is True
    assert jsonable(math.nan) == "nan"
    assert str(jsonable(object)).startswith("<class")
