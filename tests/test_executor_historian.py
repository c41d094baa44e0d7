"""The monitor feeds the historian: every trend value read is kept; an outage is one deviation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest
from test_executor import LONG, MIN, FakeDevice, Rig, make_procedure

from flexctl.record.historian import Historian
from flexctl.record.journal import EntryKind
from flexctl.record.store import RecordError, Sample
from flexctl.supervisor.batch_state import BatchCommand as C


class Flaky:
    """A sample writer that refuses while ``down``."""

    location = "flaky.db"

    def __init__(self) -> None:
        self.down = True
        self.written: list[Sample] = []

    def write_samples(self, samples: Sequence[Sample]) -> None:
        if self.down:
            raise RecordError("disk full")
        self.written += samples


class Trending(FakeDevice):
    trends: ClassVar[tuple[str, ...]] = ("level", "temperature")


async def test_samples_are_kept_while_the_store_fails_and_written_when_it_is_back(
    rig: Rig,
) -> None:
    for device in rig.devices.values():
        device.__class__ = Trending
    store = Flaky()
    historian = Historian(store, batch_size=1, max_age=None)
    executor = rig.make(
        make_procedure(LONG), monitor_period=MIN, idle_period=MIN, historian=historian
    )
    run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
    await rig.clock.sleep(10 * MIN + 1)  # checks at 0, 1, ... 10 min: 11 polls
    assert historian.pending == 11 * 2 * 2  # 2 devices x 2 trends, none dropped
    failed = [e for e in rig.journal.entries() if e.payload.get("deviation")]
    assert [e.payload["deviation"] for e in failed] == ["historian write failed"]  # once
    store.down = False
    await rig.clock.sleep(MIN)
    assert historian.pending == 0 and len(store.written) == 12 * 2 * 2
    again = [e for e in rig.journal.entries() if e.kind is EntryKind.RECORD]
    assert [e.payload.get("record") for e in again][-1] == "historian writes again"
    times = [(s.device, s.signal, s.process_time) for s in store.written]
    assert len(set(times)) == len(times)  # each value once, in the order taken
    executor.command(C.Abort, actor="alice")
    await run


class SlowTrending(Trending):
    trend_period: ClassVar[float] = 5 * MIN


async def test_a_device_is_sampled_every_trend_period_or_the_period_given(rig: Rig) -> None:
    for device in rig.devices.values():
        device.__class__ = SlowTrending
    store = Flaky()
    store.down = False
    historian = Historian(store, batch_size=1, max_age=None)
    executor = rig.make(
        make_procedure(LONG), monitor_period=MIN, idle_period=MIN, historian=historian
    )
    run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
    await rig.clock.sleep(12 * MIN + 1)
    executor.command(C.Abort, actor="alice")
    await run
    times = sorted({s.process_time for s in store.written if s.device == "tank"})
    assert times == [0.0, 5 * MIN, 10 * MIN]  # checked every minute, sampled every 5
    with pytest.raises(ValueError, match="sample_period"):
        rig.make(make_procedure(LONG), sample_period=0.0)
