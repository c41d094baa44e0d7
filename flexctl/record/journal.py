"""The batch journal: an append-only list of everything that happened to a batch.

Each :class:`JournalEntry` says when (process time from the clock, and the UTC
time it stands for), what (its :class:`EntryKind`), who (a person, ``system``
or the simulation user), where (batch, unit procedure, step, device) and the
details as a JSON-able payload. :class:`Journal` is the small protocol the
executor writes to; :class:`MemoryJournal` keeps entries in memory (tests,
dry runs). The SQLite journal of the records layer implements the same two
methods and adds the hash chain.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
"""What a payload may hold: plain JSON, finite numbers only."""

#: The actor of everything the supervisor does by itself (interlocks, timeouts).
SYSTEM = "system"


class EntryKind(enum.StrEnum):
    """What a journal entry records."""

    BATCH_STATE = "batch_state"
    STEP_START = "step_start"
    STEP_END = "step_end"
    COMMAND = "command"
    COMMAND_RESULT = "command_result"
    PROMPT = "prompt"
    SIGNATURE = "signature"
    RECORD = "record"
    DEVIATION = "deviation"
    INTERLOCK = "interlock"
    ALARM = "alarm"
    PARAMETER = "parameter"


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One thing that happened, stamped with process and UTC time.

    ``payload`` must be JSON-able (see :func:`jsonable`); it is checked and
    copied when the entry is made, so an entry cannot change after the fact.
    """

    process_time: float
    utc: datetime
    kind: EntryKind
    actor: str
    batch: str
    unit_procedure: str = ""
    step: str = ""
    device: str = ""
    payload: Mapping[str, JSONValue] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EntryKind(self.kind))
        if self.utc.tzinfo is None:
            raise ValueError("a journal entry's utc time must carry its time zone")
        try:
            text = json.dumps(dict(self.payload), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"journal payload is not JSON-able: {exc}") from None
        # A private copy, so the caller's dict (or what it holds) cannot change the entry.
        object.__setattr__(self, "payload", _Frozen(json.loads(text)))

    def as_dict(self) -> dict[str, JSONValue]:
        """The entry as plain JSON data (UTC time in ISO 8601)."""
        return {
            "process_time": self.process_time,
            "utc": self.utc.astimezone(UTC).isoformat(),
            "kind": self.kind.value,
            "actor": self.actor,
            "batch": self.batch,
            "unit_procedure": self.unit_procedure,
            "step": self.step,
            "device": self.device,
            "payload": json.loads(json.dumps(dict(self.payload))),
        }


class _Frozen(dict[str, Any]):
    """A dict that refuses changes (the payload of a frozen entry)."""

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a journal entry cannot be changed")

    __setitem__ = _refuse
    __delitem__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse  # type: ignore[assignment]
    setdefault = _refuse
    update = _refuse
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))


@runtime_checkable
class Journal(Protocol):
    """Append-only storage of a batch's entries."""

    def append(self, entry: JournalEntry) -> None:
        """Store ``entry`` after every earlier one; raise if it cannot be stored."""
        ...

    def entries(self) -> list[JournalEntry]:
        """Every entry, oldest first (a copy)."""
        ...


class MemoryJournal:
    """A :class:`Journal` in memory."""

    def __init__(self) -> None:
        self._entries: list[JournalEntry] = []

    def append(self, entry: JournalEntry) -> None:
        if not isinstance(entry, JournalEntry):
            raise TypeError(f"a journal takes JournalEntry, not {type(entry).__name__}")
        self._entries.append(entry)

    def entries(self) -> list[JournalEntry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def jsonable(value: object) -> JSONValue:
    """``value`` as JSON data: dataclasses and mappings as objects, sequences as lists.

    Enums become their value, datetimes ISO text, a non-finite float its text
    (``"nan"``, ``"inf"``), anything else its ``repr``; nothing is dropped.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    return repr(value)
