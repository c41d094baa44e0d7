"""Coalescing batched Modbus reads: exact cover, request limits, fewest requests."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexctl.transports.modbus_plan import READ_LIMITS, WRITE_LIMITS, Span, plan

address_sets = st.sets(st.integers(min_value=0, max_value=1200), min_size=1, max_size=400)


def _runs(addresses: set[int]) -> list[int]:
    """Lengths of the maximal runs of consecutive addresses."""
    ordered = sorted(addresses)
    runs = [1]
    for prev, here in itertools.pairwise(ordered):
        if here == prev + 1:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


@given(addresses=address_sets, table=st.sampled_from(["input", "holding", "coil"]))
def test_single_addresses_are_covered_exactly_in_the_fewest_requests(
    addresses: set[int], table: str
) -> None:
    spans = [Span(table, a, 1) for a in sorted(addresses, key=lambda a: (a * 7919) % 1201)]
    result = plan(spans)
    limit = READ_LIMITS[table]
    covered: list[int] = []
    for request in result.requests:
        assert request.table == table
        assert 1 <= request.count <= limit
        covered.extend(range(request.address, request.end))
    assert sorted(covered) == sorted(addresses)  # every address once, nothing else
    assert len(result.requests) == sum(math.ceil(run / limit) for run in _runs(addresses))
    for span, (index, offset) in zip(spans, result.slots, strict=True):
        assert result.requests[index].address + offset == span.address


spans_strategy = st.lists(
    st.builds(
        Span,
        table=st.sampled_from(["coil", "discrete", "input", "holding"]),
        address=st.integers(min_value=0, max_value=600),
        count=st.integers(min_value=1, max_value=8),
    ),
    min_size=1,
    max_size=80,
)


@given(spans=spans_strategy, max_gap=st.integers(min_value=0, max_value=6))
def test_any_spans_each_fall_inside_one_request_within_limits(
    spans: list[Span], max_gap: int
) -> None:
    result = plan(spans, max_gap=max_gap)
    for span, (index, offset) in zip(spans, result.slots, strict=True):
        request = result.requests[index]
        assert request.table == span.table
        assert offset >= 0
        assert request.address + offset == span.address
        assert span.end <= request.end
    for request in result.requests:
        assert 1 <= request.count <= READ_LIMITS[request.table]
        # a request never reads a stretch of unnamed addresses longer than max_gap
        named = sorted(
            a
            for s in spans
            if s.table == request.table
            for a in range(s.address, s.end)
            if request.address <= a < request.end
        )
        assert named[0] == request.address
        assert named[-1] == request.end - 1
        gaps = [b - a - 1 for a, b in itertools.pairwise(named)]
        assert max(gaps, default=0) <= max_gap


@given(spans=spans_strategy)
def test_split_hands_each_span_its_own_values(spans: list[Span]) -> None:
    result = plan(spans)
    # a fake device whose every register holds its own address
    replies = [list(range(r.address, r.end)) for r in result.requests]
    values = result.split(replies, [s.count for s in spans])
    assert values == [list(range(s.address, s.end)) for s in spans]


def test_twenty_contiguous_float32_are_one_request() -> None:
    spans = [Span("input", 10 + 2 * i, 2) for i in range(20)]
    result = plan(list(reversed(spans)))
    assert [(r.table, r.address, r.count) for r in result.requests] == [("input", 10, 40)]


def test_gaps_are_bridged_only_up_to_max_gap() -> None:
    spans = [Span("holding", 0, 2), Span("holding", 4, 2)]
    assert len(plan(spans).requests) == 2
    assert len(plan(spans, max_gap=1).requests) == 2
    assert [(r.address, r.count) for r in plan(spans, max_gap=2).requests] == [(0, 6)]


def test_limits_split_long_runs_and_tables_never_mix() -> None:
    spans = [Span("holding", a, 1) for a in range(300)] + [Span("input", 5, 1)]
    result = plan(spans)
    assert [(r.table, r.address, r.count) for r in result.requests] == [
        ("holding", 0, 125),
        ("holding", 125, 125),
        ("holding", 250, 50),
        ("input", 5, 1),
    ]
    writes = plan([Span("holding", a, 1) for a in range(130)], limits=WRITE_LIMITS)
    assert [r.count for r in writes.requests] == [123, 7]


def test_overlapping_and_repeated_spans_share_a_request() -> None:
    spans = [Span("input", 0, 4), Span("input", 2, 1), Span("input", 0, 4)]
    result = plan(spans)
    assert [(r.address, r.count) for r in result.requests] == [(0, 4)]
    assert result.slots == ((0, 0), (0, 2), (0, 0))


@pytest.mark.parametrize(
    ("spans", "kwargs"),
    [
        ([Span("input", 0, 126)], {}),
        ([Span("coil", 0, 2001)], {}),
        ([Span("input", 0, 1)], {"limits": WRITE_LIMITS}),  # input registers are not writable
        ([Span("nowhere", 0, 1)], {}),
        ([Span("input", 0, 1)], {"max_gap": -1}),
    ],
)
def test_impossible_plans_are_refused(spans: list[Span], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        plan(spans, **kwargs)  # type: ignore[arg-type]
