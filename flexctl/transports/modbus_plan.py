"""Coalesce a batched Modbus read (or a command's writes) into the fewest requests.

Pure: no pymodbus. A :class:`Span` is one value's place (table, first address,
registers or bits). Spans of the same table whose addresses touch or overlap
are merged into one request, as long as the request stays within the
protocol's limit (125 registers or 2000 bits per read). A gap of unused
addresses is bridged only up to ``max_gap``, which defaults to 0: a device
often answers "illegal address" for a register it does not implement, so only
addresses the profile names are ever read unless the profile says otherwise.

Greedy left-to-right merging is optimal here: each request starts at the
first span not yet covered and grows as far as the limit allows, so no plan
can end its k-th request further right, hence none uses fewer requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

TABLES = ("coil", "discrete", "input", "holding")
BIT_TABLES = frozenset({"coil", "discrete"})

#: Per-request limits of the Modbus application protocol (V1.1b3).
READ_LIMITS: Mapping[str, int] = {"coil": 2000, "discrete": 2000, "input": 125, "holding": 125}
WRITE_LIMITS: Mapping[str, int] = {"coil": 1968, "holding": 123}


@dataclass(frozen=True)
class Span:
    """Where one value lives: ``count`` registers (or bits) from ``address``."""

    table: str
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count


@dataclass(frozen=True)
class Request:
    """One read (or write) request on the wire."""

    table: str
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class Plan:
    """The requests, and for each span (in order) its request index and offset."""

    requests: tuple[Request, ...]
    slots: tuple[tuple[int, int], ...]

    def split(self, results: Sequence[Sequence[T]], counts: Sequence[int]) -> list[list[T]]:
        """Cut each span's values out of the per-request results.

        ``counts`` are the spans' counts, in the order the plan was made for.
        """
        return [
            list(results[index][offset : offset + count])
            for (index, offset), count in zip(self.slots, counts, strict=True)
        ]


def plan(
    spans: Sequence[Span],
    *,
    max_gap: int = 0,
    limits: Mapping[str, int] = READ_LIMITS,
) -> Plan:
    """The fewest requests that cover every span, each within its table's limit.

    Raises ValueError for a span wider than its table's limit, an unknown table
    or a negative ``max_gap``.
    """
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    by_table: dict[str, list[int]] = {}
    for index, span in enumerate(spans):
        limit = limits.get(span.table)
        if limit is None:
            raise ValueError(f"no request limit for table {span.table!r}")
        if not 1 <= span.count <= limit:
            raise ValueError(
                f"{span.table} {span.address}: {span.count} is more than "
                f"one request holds ({limit})"
            )
        by_table.setdefault(span.table, []).append(index)

    requests: list[Request] = []
    slots: list[tuple[int, int]] = [(0, 0)] * len(spans)
    for table, indices in by_table.items():
        limit = limits[table]
        indices.sort(key=lambda i: (spans[i].address, -spans[i].count))
        members: list[int] = []
        start = end = 0
        for i in indices:
            span = spans[i]
            if members and span.address <= end + max_gap and max(end, span.end) - start <= limit:
                end = max(end, span.end)
                members.append(i)
                continue
            if members:
                _close(requests, slots, Request(table, start, end - start), members, spans)
            members = [i]
            start, end = span.address, span.end
        if members:
            _close(requests, slots, Request(table, start, end - start), members, spans)
    return Plan(tuple(requests), tuple(slots))


def _close(
    requests: list[Request],
    slots: list[tuple[int, int]],
    request: Request,
    members: list[int],
    spans: Sequence[Span],
) -> None:
    index = len(requests)
    requests.append(request)
    for i in members:
        slots[i] = (index, spans[i].address - request.address)
