"""The alarm monitor: deadband, delays, shelving on process time, views, flood and chatter KPIs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.errors import FlexctlError
from flexctl.supervisor.alarm_defs import AlarmDefinition, AlarmKind, AlarmPriority
from flexctl.supervisor.alarm_states import (
    AlarmEvent,
    AlarmState,
    AlarmTransition,
    IllegalAlarmEvent,
    InvalidShelveTime,
    MissingAttribution,
)
from flexctl.supervisor.alarms import (
    AlarmMonitor,
    FloodPeriod,
    ProcessTimeWentBack,
    UnknownAlarm,
    chatters,
    flood_periods,
)

S = AlarmState
E = AlarmEvent
TEMP = "bioreactor.temperature"
DO = "bioreactor.dissolved_oxygen"


def tah(**overrides: object) -> AlarmDefinition:
    fields: dict[str, object] = {
        "name": "TAH-101",
        "signal": TEMP,
        "kind": AlarmKind.High,
        "limit": 37.5,
        "priority": AlarmPriority.High,
        "deadband": 0.5,
    }
    return AlarmDefinition(**(fields | overrides))  # type: ignore[arg-type]


def dal(**overrides: object) -> AlarmDefinition:
    fields: dict[str, object] = {
        "name": "DAL-102",
        "signal": DO,
        "kind": AlarmKind.Low,
        "limit": 20.0,
        "priority": AlarmPriority.Critical,
        "interlock": True,
    }
    return AlarmDefinition(**(fields | overrides))  # type: ignore[arg-type]


def steps(
    monitor: AlarmMonitor, signal: str, samples: Sequence[tuple[float, float]]
) -> list[tuple[float, AlarmEvent, AlarmState]]:
    """Feed (time, value) samples; return (time, event, new state) of each transition."""
    seen = []
    for now, value in samples:
        seen += [(t.time, t.event, t.new) for t in monitor.update({signal: value}, now)]
    return seen


# --- limits and deadband -----------------------------------------------------------------------


def test_a_high_alarm_activates_beyond_the_limit_and_clears_past_the_deadband() -> None:
    monitor = AlarmMonitor([tah()])
    samples = [(0, 37.5), (1, 37.6), (2, 37.2), (3, 37.01), (4, 37.0), (5, 37.4), (6, 38.0)]
    assert steps(monitor, TEMP, samples) == [
        (1, E.Activate, S.Unacknowledged),
        (4, E.Clear, S.ReturnedToNormalUnacknowledged),
        (6, E.Activate, S.Unacknowledged),
    ]
    assert monitor.status("TAH-101").value == 38.0


def test_a_low_alarm_mirrors_it() -> None:
    monitor = AlarmMonitor([dal(deadband=2.0)])
    samples = [(0, 20.0), (1, 19.9), (2, 21.5), (3, 22.0)]
    assert steps(monitor, DO, samples) == [
        (1, E.Activate, S.Unacknowledged),
        (3, E.Clear, S.ReturnedToNormalUnacknowledged),
    ]


def test_values_that_are_no_finite_number_or_missing_change_nothing() -> None:
    monitor = AlarmMonitor([tah(on_delay=10)])
    assert monitor.update({TEMP: 38.0}, 0) == []
    for now, value in [(2, None), (3, "n/a"), (4, True), (5, math.nan), (6, math.inf)]:
        assert monitor.update({TEMP: value}, now) == []
    assert monitor.update({}, 7) == []
    # the on-delay kept running through the gap
    assert [t.event for t in monitor.update({TEMP: 38.0}, 10)] == [E.Activate]
    assert monitor.status("TAH-101").value == 38.0


def test_an_integer_value_counts() -> None:
    monitor = AlarmMonitor([tah()])
    assert [t.value for t in monitor.update({TEMP: 40}, 0)] == [40.0]


# --- delays ------------------------------------------------------------------------------------


def test_the_on_delay_needs_the_value_past_the_limit_that_long() -> None:
    monitor = AlarmMonitor([tah(on_delay=30)])
    samples = [(0, 38), (10, 38), (20, 38), (29.9, 38), (30, 38), (40, 38)]
    assert steps(monitor, TEMP, samples) == [(30, E.Activate, S.Unacknowledged)]


def test_an_excursion_shorter_than_the_on_delay_never_activates() -> None:
    monitor = AlarmMonitor([tah(on_delay=30)])
    # back inside the limit (not even past the deadband) restarts the delay
    samples = [(0, 38), (20, 38), (25, 37.5), (30, 38), (55, 38), (59.9, 38), (60, 38)]
    assert steps(monitor, TEMP, samples) == [(60, E.Activate, S.Unacknowledged)]


def test_the_off_delay_needs_the_value_back_that_long() -> None:
    monitor = AlarmMonitor([tah(off_delay=60)])
    samples = [(0, 38), (10, 37.0), (40, 37.2), (50, 37.0), (100, 36), (110, 36)]
    # 37.2 is inside the deadband: not back, so the off-delay starts again at 50
    assert steps(monitor, TEMP, samples) == [
        (0, E.Activate, S.Unacknowledged),
        (110, E.Clear, S.ReturnedToNormalUnacknowledged),
    ]


def test_no_delay_acts_on_the_first_sample() -> None:
    monitor = AlarmMonitor([tah()])
    assert steps(monitor, TEMP, [(5, 38), (6, 30)]) == [
        (5, E.Activate, S.Unacknowledged),
        (6, E.Clear, S.ReturnedToNormalUnacknowledged),
    ]


# --- operators and shelving on process time ----------------------------------------------------


def test_acknowledge_then_clear_returns_to_normal() -> None:
    monitor = AlarmMonitor([tah()])
    monitor.update({TEMP: 38}, 0)
    ack = monitor.acknowledge("TAH-101", user="alice", reason="adjusting jacket", now=5)
    assert ack == AlarmTransition(
        alarm="TAH-101",
        old=S.Unacknowledged,
        new=S.Acknowledged,
        event=E.Acknowledge,
        time=5,
        active=True,
        user="alice",
        reason="adjusting jacket",
        value=38.0,
    )
    (clear,) = monitor.update({TEMP: 36}, 9)
    assert (clear.new, clear.user) == (S.Normal, "system")
    assert monitor.active() == []


def test_operator_errors_are_typed_and_change_nothing() -> None:
    monitor = AlarmMonitor([tah()])
    with pytest.raises(IllegalAlarmEvent, match="alarm TAH-101: Acknowledge is not allowed while"):
        monitor.acknowledge("TAH-101", user="alice", reason="x", now=1)
    monitor.update({TEMP: 38}, 2)
    with pytest.raises(MissingAttribution, match="missing: reason"):
        monitor.acknowledge("TAH-101", user="alice", reason="", now=3)
    with pytest.raises(MissingAttribution, match="missing: user"):
        monitor.shelve("TAH-101", user="", reason="nuisance", until=100, now=3)
    with pytest.raises(MissingAttribution):
        monitor.remove_from_service("TAH-101", user="bob", reason=" ", now=3)
    with pytest.raises(InvalidShelveTime):
        monitor.shelve("TAH-101", user="alice", reason="nuisance", until=3, now=3)
    with pytest.raises(UnknownAlarm, match="no alarm named 'TAH-999'") as unknown:
        monitor.acknowledge("TAH-999", user="alice", reason="x", now=3)
    assert isinstance(unknown.value, FlexctlError)
    assert monitor.status("TAH-101").state is S.Unacknowledged
    # a refused action with a later time does not move the monitor's clock
    with pytest.raises(IllegalAlarmEvent):
        monitor.unshelve("TAH-101", now=500)
    monitor.acknowledge("TAH-101", user="alice", reason="ok", now=4)


def test_process_time_never_goes_back() -> None:
    monitor = AlarmMonitor([tah()])
    monitor.update({TEMP: 38}, 10)
    with pytest.raises(ProcessTimeWentBack, match=r"9 after 10"):
        monitor.update({TEMP: 36}, 9)
    with pytest.raises(ProcessTimeWentBack):
        monitor.acknowledge("TAH-101", user="alice", reason="x", now=9.5)
    with pytest.raises(ProcessTimeWentBack):
        monitor.expire(0)
    assert monitor.update({TEMP: 36}, 10)  # the same time is fine


def test_a_shelve_expires_on_process_time_into_what_the_process_says() -> None:
    monitor = AlarmMonitor([tah()])
    monitor.update({TEMP: 38}, 0)
    monitor.shelve("TAH-101", user="alice", reason="probe being swapped", until=600, now=10)
    assert monitor.active() == []
    (clear,) = monitor.update({TEMP: 36}, 100)
    assert (clear.event, clear.old, clear.new, clear.active) == (
        E.Clear,
        S.Shelved,
        S.Shelved,
        False,
    )
    (back,) = monitor.update({TEMP: 39}, 200)
    assert (back.event, back.new, back.active) == (E.Activate, S.Shelved, True)
    assert monitor.status("TAH-101").shelved_until == 600
    assert monitor.expire(599.9) == []
    (expired,) = monitor.expire(600)
    assert (expired.event, expired.old, expired.new, expired.user) == (
        E.ShelveExpiry,
        S.Shelved,
        S.Unacknowledged,
        "system",
    )
    assert [s.name for s in monitor.active()] == ["TAH-101"]
    assert monitor.status("TAH-101").since == 600
    assert monitor.expire(10_000) == []
    # only the first activation reached an operator
    assert monitor.kpis().activations == {"TAH-101": 1}


def test_a_shelve_that_expires_while_normal_lands_in_normal() -> None:
    monitor = AlarmMonitor([tah()])
    monitor.shelve("TAH-101", user="alice", reason="planned test", until=60, now=0)
    (expired,) = monitor.expire(61)
    assert expired.new is S.Normal
    monitor.shelve("TAH-101", user="alice", reason="again", until=120, now=70)
    assert monitor.unshelve("TAH-101", now=80, user="bob").new is S.Normal


def test_suppression_and_service() -> None:
    monitor = AlarmMonitor([dal()])
    monitor.suppress("DAL-102", now=0, reason="bioreactor not inoculated")
    monitor.update({DO: 5}, 1)
    assert monitor.active() == []
    assert monitor.interlocking() == []
    assert monitor.unsuppress("DAL-102", now=2).new is S.Unacknowledged
    monitor.remove_from_service("DAL-102", user="tech", reason="DO probe calibration", now=3)
    assert monitor.interlocking() == []
    monitor.update({DO: 30}, 4)
    assert monitor.return_to_service("DAL-102", now=5, user="tech").new is S.Normal
    assert monitor.kpis().activations == {"DAL-102": 0}


# --- views -------------------------------------------------------------------------------------


def test_active_sorts_by_priority_then_time_then_name() -> None:
    defs = [
        tah(name="T-LOW", priority="Low", limit=30),
        tah(name="T-HIGH-B", limit=31),
        tah(name="T-HIGH-A", limit=31),
        tah(name="T-HIGH-EARLY", limit=32),
        tah(name="T-CRIT", priority="Critical", limit=33),
        tah(name="T-NORMAL", limit=50),
    ]
    monitor = AlarmMonitor(defs)
    monitor.update({TEMP: 32.5}, 0)  # T-LOW, T-HIGH-*, T-HIGH-EARLY
    monitor.update({TEMP: 34}, 10)  # T-CRIT
    monitor.update({TEMP: 31.5}, 20)  # T-HIGH-EARLY and T-CRIT back (RTNU): still annunciated
    monitor.update({TEMP: 32.5}, 30)  # T-HIGH-EARLY again: annunciated since 30
    assert [(s.name, s.since) for s in monitor.active()] == [
        ("T-CRIT", 10),
        ("T-HIGH-A", 0),
        ("T-HIGH-B", 0),
        ("T-HIGH-EARLY", 30),
        ("T-LOW", 0),
    ]
    monitor.acknowledge("T-CRIT", user="alice", reason="seen", now=31)  # RTNU -> Normal
    monitor.update({TEMP: 20}, 40)  # all clear: the unacknowledged ones stay on the list
    assert [(s.name, s.state) for s in monitor.active()] == [
        ("T-HIGH-A", S.ReturnedToNormalUnacknowledged),
        ("T-HIGH-B", S.ReturnedToNormalUnacknowledged),
        ("T-HIGH-EARLY", S.ReturnedToNormalUnacknowledged),
        ("T-LOW", S.ReturnedToNormalUnacknowledged),
    ]


def test_interlocking_lists_active_interlock_alarms_even_when_shelved() -> None:
    monitor = AlarmMonitor([dal(on_delay=60), dal(name="DAL-103", priority="Low"), tah()])
    monitor.update({DO: 10, TEMP: 40}, 0)
    assert [s.name for s in monitor.interlocking()] == ["DAL-103"]  # the other waits 60 s
    monitor.update({DO: 10}, 60)
    assert [s.name for s in monitor.interlocking()] == ["DAL-102", "DAL-103"]
    monitor.shelve("DAL-103", user="alice", reason="nuisance", until=999, now=61)
    assert [s.name for s in monitor.interlocking()] == ["DAL-102", "DAL-103"]
    monitor.update({DO: 25}, 70)  # back: Returned-to-normal-unacknowledged is no hold
    assert monitor.interlocking() == []
    assert [s.name for s in monitor.active()] == ["DAL-102", "TAH-101"]


def test_duplicate_names_and_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        AlarmMonitor([tah(), tah(limit=40)])
    with pytest.raises(ValueError, match="flood_window"):
        AlarmMonitor([], flood_window=0)
    with pytest.raises(ValueError, match="chatter_window"):
        AlarmMonitor([], chatter_window=math.inf)
    with pytest.raises(ValueError, match="chatter_count"):
        AlarmMonitor([], chatter_count=0)


# --- KPIs --------------------------------------------------------------------------------------


def pulse(monitor: AlarmMonitor, signal: str, now: float) -> None:
    """One activation of the (high, no delay, no deadband) alarm on ``signal`` at ``now``."""
    (activate,) = monitor.update({signal: 100.0}, now)
    assert activate.event is E.Activate
    (clear,) = monitor.update({signal: 0.0}, now)
    assert clear.event is E.Clear


def plain(name: str) -> AlarmDefinition:
    return AlarmDefinition(name, f"dev.{name.lower()}", AlarmKind.High, 50.0, AlarmPriority.Low)


def run(
    activations: Sequence[tuple[float, int]], alarms: int = 4, **windows: float
) -> AlarmMonitor:
    """A monitor over ``alarms`` plain alarms fed (time, alarm index) activations."""
    defs = [plain(f"A{i}") for i in range(alarms)]
    monitor = AlarmMonitor(defs, **windows)  # type: ignore[arg-type]
    for now, index in sorted(activations):
        pulse(monitor, defs[index].signal, now)
    return monitor


def test_ten_activations_in_ten_minutes_are_no_flood_eleven_are() -> None:
    ten = [(60.0 * k, k % 4) for k in range(10)]
    assert run(ten).kpis().floods == ()
    eleven = [*ten, (599.0, 0)]
    assert run(eleven).kpis().floods == (FloodPeriod(599.0, 600.0),)


def test_the_window_is_half_open() -> None:
    # 11 activations from 0 s to 600 s: the first has left the window when the 11th comes
    spread = [(60.0 * k, k % 4) for k in range(11)]
    assert run(spread).kpis().flood_count == 0
    # ... and at 599.5 it has not
    nearly = [*spread[:10], (599.5, 1)]
    assert run(nearly).kpis().floods == (FloodPeriod(599.5, 600.0),)


def test_two_floods_with_their_start_times() -> None:
    burst1 = [(100.0 + k, k % 4) for k in range(12)]  # 11th at 110 s
    burst2 = [(5000.0 + 10 * k, k % 4) for k in range(15)]  # 11th at 5100 s
    kpis = run(burst1 + burst2).kpis()
    assert kpis.flood_count == 2
    assert [f.start for f in kpis.floods] == [110.0, 5100.0]
    # the first ends when its 2nd activation (101 s) leaves the window: 10 left
    assert [f.end for f in kpis.floods] == [701.0, 5640.0]
    assert kpis.total == 27
    assert kpis.activations == {"A0": 7, "A1": 7, "A2": 7, "A3": 6}


def test_a_flood_that_dips_and_rises_again_counts_twice() -> None:
    first = [(float(k), k % 4) for k in range(11)]  # flood from 10 s; ends at 600 s
    again = [(650.0, 0), (651.0, 1)]  # window (51, 651]: 10 from 0..10 gone, so 2: no flood
    third = [(700.0 + k, k % 4) for k in range(9)]  # (108, 708]: 2 + 9 = 11 at 708
    kpis = run(first + again + third).kpis()
    assert [f.start for f in kpis.floods] == [10.0, 708.0]


def test_chattering_alarms() -> None:
    acts = [(0.0, 0), (20.0, 0), (40.0, 0)]  # A0: 3 in 40 s
    acts += [(0.0, 1), (30.0, 1), (60.0, 1)]  # A1: exactly 60 s apart, not within one minute
    acts += [(100.0, 2), (130.0, 2), (159.9, 2)]  # A2: within
    acts += [(0.0, 3), (50.0, 3), (200.0, 3), (230.0, 3)]  # A3: never 3 in a minute
    kpis = run(acts).kpis()
    assert kpis.chattering == ("A0", "A2")
    assert kpis.activations == {"A0": 3, "A1": 3, "A2": 3, "A3": 4}


def test_windows_are_parameters() -> None:
    acts = [(0.0, 0), (20.0, 0), (40.0, 0), (45.0, 1)]
    assert run(acts).kpis().chattering == ("A0",)
    assert run(acts, chatter_window=30.0).kpis().chattering == ()
    assert run(acts, chatter_count=2).kpis().chattering == ("A0",)
    assert run(acts, flood_window=60.0, flood_limit=3).kpis().floods == (FloodPeriod(45.0, 60.0),)


def test_activations_while_removed_are_not_counted() -> None:
    monitor = AlarmMonitor([plain("A0")])
    monitor.suppress("A0", now=0)
    for k in range(20):
        monitor.update({"dev.a0": 100.0}, k)
        monitor.update({"dev.a0": 0.0}, k)
    kpis = monitor.kpis()
    assert (kpis.total, kpis.flood_count, kpis.chattering) == (0, 0, ())


# --- properties against brute force ------------------------------------------------------------


def brute_force_floods(times: Sequence[int], window: int, limit: int) -> list[tuple[int, int]]:
    """Count the window at every whole second: times and window are whole seconds."""
    if not times:
        return []

    def count(at: int) -> int:
        return sum(1 for t in times if at - window < t <= at)

    floods: list[tuple[int, int]] = []
    start: int | None = None
    for at in range(min(times), max(times) + window + 1):
        flooding = count(at) > limit
        if flooding and start is None:
            start = at
        elif not flooding and start is not None:
            floods.append((start, at))
            start = None
    return floods


def brute_force_chatter(times: Sequence[int], window: int, count: int) -> bool:
    return any(sum(1 for t in times if at - window < t <= at) >= count for at in set(times))


ACTIVATIONS = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(activations=ACTIVATIONS, window=st.integers(1, 90), limit=st.integers(0, 6))
def test_the_monitors_flood_count_matches_brute_force(
    activations: list[tuple[int, int]], window: int, limit: int
) -> None:
    monitor = run(
        [(float(t), i) for t, i in activations], flood_window=float(window), flood_limit=limit
    )
    times = [t for t, _ in activations]
    expected = brute_force_floods(times, window, limit)
    kpis = monitor.kpis()
    assert kpis.flood_count == len(expected)
    assert [(f.start, f.end) for f in kpis.floods] == expected
    assert kpis.total == len(activations)
    assert flood_periods(times, window=window, limit=limit) == [
        FloodPeriod(s, e) for s, e in expected
    ]


@settings(max_examples=200, deadline=None)
@given(activations=ACTIVATIONS, window=st.integers(1, 90), count=st.integers(1, 5))
def test_chattering_matches_brute_force(
    activations: list[tuple[int, int]], window: int, count: int
) -> None:
    monitor = run(
        [(float(t), i) for t, i in activations],
        chatter_window=float(window),
        chatter_count=count,
    )
    expected = tuple(
        f"A{i}"
        for i in range(4)
        if brute_force_chatter([t for t, j in activations if j == i], window, count)
    )
    assert monitor.kpis().chattering == expected
    for i in range(4):
        times = [float(t) for t, j in activations if j == i]
        assert chatters(times, window=window, count=count) == (f"A{i}" in expected)
