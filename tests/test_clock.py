"""The clocks: virtual time ordering, in-flight accounting, determinism, scale."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.clock import Clock, RealClock, ScaledClock, VirtualClock


async def test_sleepers_wake_in_deadline_order_ties_first_come(vclock: VirtualClock) -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await vclock.sleep(seconds)
        woke.append((name, vclock.now()))

    delays = {"a": 30.0, "b": 10.0, "c": 20.0, "d": 10.0, "e": 0.5, "f": 3600.0}
    async with asyncio.TaskGroup() as group:
        for name, seconds in delays.items():
            group.create_task(sleeper(name, seconds))
    assert woke == [
        ("e", 0.5),
        ("b", 10.0),
        ("d", 10.0),
        ("c", 20.0),
        ("a", 30.0),
        ("f", 3600.0),
    ]
    assert vclock.now() == 3600.0


async def test_many_sleepers_all_wake_at_their_deadline(vclock: VirtualClock) -> None:
    woke: list[tuple[float, float]] = []

    async def sleeper(seconds: float) -> None:
        await vclock.sleep(seconds)
        woke.append((seconds, vclock.now()))

    delays = [float((i * 7919) % 1000) + 1.0 for i in range(500)]
    async with asyncio.TaskGroup() as group:
        for seconds in delays:
            group.create_task(sleeper(seconds))
    assert all(deadline == now for deadline, now in woke)
    assert [now for _, now in woke] == sorted(delays)


async def test_no_advance_while_a_request_is_in_flight(vclock: VirtualClock) -> None:
    reply = asyncio.Event()
    woke_at: list[float] = []

    async def request() -> None:
        with vclock.in_flight():
            await reply.wait()  # stands for a reply travelling over a socket

    async def sleeper() -> None:
        await vclock.sleep(60.0)
        woke_at.append(vclock.now())

    req = asyncio.create_task(request())
    sleep = asyncio.create_task(sleeper())
    for _ in range(200):
        await asyncio.sleep(0)
    assert vclock.now() == 0.0
    assert not woke_at
    assert vclock.pending_requests == 1
    reply.set()
    await asyncio.gather(req, sleep)
    assert woke_at == [60.0]
    assert vclock.requests == 1


async def test_time_waits_for_work_that_follows_a_wakeup(vclock: VirtualClock) -> None:
    """A chain of hand-offs after a wake-up finishes before time moves on."""
    seen: list[tuple[str, float]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> None:
        await vclock.sleep(5.0)
        for i in range(20):
            await queue.put(i)
            await asyncio.sleep(0)

    async def consumer() -> None:
        for _ in range(20):
            await queue.get()
        seen.append(("consumed", vclock.now()))
        await vclock.sleep(1.0)
        seen.append(("after", vclock.now()))

    async def bystander() -> None:
        await vclock.sleep(5.5)
        seen.append(("bystander", vclock.now()))

    await asyncio.gather(producer(), consumer(), bystander())
    assert seen == [("consumed", 5.0), ("bystander", 5.5), ("after", 6.0)]


async def test_sleep_until_the_past_and_zero_do_not_move_time(vclock: VirtualClock) -> None:
    await vclock.sleep(10.0)
    await vclock.sleep_until(3.0)
    await vclock.sleep(0.0)
    await vclock.sleep(-5.0)
    assert vclock.now() == 10.0
    await vclock.sleep_until(12.5)
    assert vclock.now() == 12.5


async def test_cancelled_sleeper_does_not_hold_time(vclock: VirtualClock) -> None:
    long = asyncio.create_task(vclock.sleep(1000.0))
    await asyncio.sleep(0)
    long.cancel()
    await vclock.sleep(1.0)
    assert vclock.now() == 1.0
    with pytest.raises(asyncio.CancelledError):
        await long


async def test_aclose_cancels_waiting_sleepers() -> None:
    clock = VirtualClock()
    blocker = asyncio.Event()

    async def held() -> None:
        with clock.in_flight():
            await blocker.wait()

    request = asyncio.create_task(held())
    sleeper = asyncio.create_task(clock.sleep(10.0))
    await asyncio.sleep(0)
    await clock.aclose()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    blocker.set()
    await request


async def test_utcnow_is_epoch_plus_process_time() -> None:
    epoch = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    clock = VirtualClock(epoch=epoch)
    await clock.sleep(90.0)
    assert clock.utcnow() == epoch + timedelta(seconds=90)
    await clock.aclose()


async def test_ten_virtual_days_of_minute_sleeps(vclock: VirtualClock) -> None:
    started = time.perf_counter()
    for _ in range(10 * 24 * 60):
        await vclock.sleep(60.0)
    wall = time.perf_counter() - started
    assert vclock.now() == pytest.approx(10 * 86400.0)
    assert vclock.advances == 10 * 24 * 60
    # Figures are printed, never asserted: tests do not depend on wall time.
    print(f"10 virtual days of minute sleeps: {wall:.3f} s wall, {vclock.now() / wall:.0f}x")


schedules = st.lists(
    st.lists(st.integers(min_value=0, max_value=10_000).map(lambda ms: ms / 1000.0), max_size=8),
    min_size=1,
    max_size=8,
)


async def _run_schedule(schedule: list[list[float]]) -> list[tuple[float, int, int]]:
    clock = VirtualClock()
    events: list[tuple[float, int, int]] = []

    async def worker(index: int, delays: list[float]) -> None:
        for step, seconds in enumerate(delays):
            await clock.sleep(seconds)
            events.append((clock.now(), index, step))

    async with asyncio.TaskGroup() as group:
        for index, delays in enumerate(schedule):
            group.create_task(worker(index, delays))
    await clock.aclose()
    return events


@settings(max_examples=60, deadline=None)
@given(schedule=schedules)
def test_random_schedules_are_ordered_exact_and_deterministic(schedule: list[list[float]]) -> None:
    first = asyncio.run(_run_schedule(schedule))
    second = asyncio.run(_run_schedule(schedule))
    assert first == second
    times = [t for t, _, _ in first]
    assert times == sorted(times)
    for index, delays in enumerate(schedule):
        mine = [t for t, i, _ in first if i == index]
        expected: list[float] = []
        now = 0.0
        for seconds in delays:
            now = now + seconds
            expected.append(now)
        assert mine == expected


async def test_real_and_scaled_clocks_keep_the_protocol() -> None:
    for clock in (RealClock(), ScaledClock(1e6)):
        assert isinstance(clock, Clock)
        before = clock.now()
        await clock.sleep(1.0 if isinstance(clock, ScaledClock) else 0.0)
        assert clock.now() >= before
        assert clock.utcnow().tzinfo is not None
        with clock.in_flight():
            pass
        assert clock.requests == 1


def test_scaled_clock_refuses_a_bad_factor() -> None:
    with pytest.raises(ValueError, match="factor"):
        ScaledClock(0.0)
