"""Process time for every layer: real, scaled and virtual (discrete-event) clocks.

Process logic never calls ``asyncio.sleep`` or ``time.time()``; it asks the clock
it was given. Wire-level timeouts (how long a transport waits for a reply) are
not process time and stay on the real event loop.

The :class:`VirtualClock` jumps to the earliest pending deadline only when the
event loop has nothing else ready to run and no I/O is in flight. Transports
(and anything else whose awaited result the process depends on, such as a
write to the record) wrap each request in :meth:`Clock.in_flight`, so the clock
never jumps past a reply that is still on its way. Library internals (asyncua
keep-alives, pymodbus timers) keep running on the real loop, whose time barely
moves during a virtual run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What every layer may ask of time."""

    def now(self) -> float:
        """Monotonic process time in seconds."""
        ...

    def utcnow(self) -> datetime:
        """The UTC date and time that corresponds to :meth:`now`."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of process time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`now` reaches ``deadline``."""
        ...

    def in_flight(self) -> AbstractContextManager[None]:
        """Mark an awaited I/O request, so a virtual clock does not jump past it."""
        ...

    @property
    def requests(self) -> int:
        """How many in-flight requests have been started (for benchmarks and reports)."""
        ...


class _InFlight:
    """The context manager :meth:`Clock.in_flight` returns.

    A plain class rather than ``@contextmanager``: it sits on every transport
    request, and a generator costs several microseconds more per request.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: _Counting) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        owner = self._owner
        owner._in_flight += 1
        owner._requests += 1
        owner._activity()

    def __exit__(self, *exc: object) -> None:
        owner = self._owner
        owner._in_flight -= 1
        owner._activity()


class _Counting:
    """In-flight bookkeeping shared by all clocks."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._requests = 0
        self._context = _InFlight(self)

    @property
    def requests(self) -> int:
        return self._requests

    @property
    def pending_requests(self) -> int:
        return self._in_flight

    def in_flight(self) -> AbstractContextManager[None]:
        return self._context

    def _activity(self) -> None:
        """Hook for the virtual clock; nothing to do in wall time."""


class RealClock(_Counting):
    """Wall time, for hardware. ``now()`` counts from the clock's creation, from ``start``.

    ``start`` lets a resumed batch's process time go on from where its journal ended.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._t0 = time.monotonic() - float(start)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def utcnow(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.now()))


class ScaledClock(_Counting):
    """Wall time multiplied by ``factor``: for demos and for twins in another process.

    ``epoch`` is the UTC time that process time 0 stands for (default: now);
    ``start`` the process time at creation (a resumed batch goes on from its journal).
    """

    def __init__(self, factor: float, epoch: datetime | None = None, start: float = 0.0) -> None:
        if not factor > 0:
            raise ValueError(f"ScaledClock factor must be > 0, got {factor!r}")
        super().__init__()
        self.factor = float(factor)
        self.epoch = epoch or datetime.now(UTC)
        self._t0 = time.monotonic() - float(start) / self.factor

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.factor

    def utcnow(self) -> datetime:
        return self.epoch + timedelta(seconds=self.now())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.now()) / self.factor)


class VirtualClock(_Counting):
    """Discrete-event time: jumps to the next deadline when the loop is quiet.

    Deterministic: sleepers wake in deadline order, ties in the order they went
    to sleep, and time only moves when no task is ready and no request is in
    flight. The driving task exists only while someone sleeps, so an idle clock
    leaves nothing running.
    """

    def __init__(self, start: float = 0.0, epoch: datetime | None = None) -> None:
        super().__init__()
        self._now = float(start)
        self.epoch = epoch or datetime.now(UTC).replace(microsecond=0)
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._stir = 0
        self._quiet: asyncio.Event | None = None
        self._driver: asyncio.Task[None] | None = None
        self.advances = 0

    def now(self) -> float:
        return self._now

    def utcnow(self) -> datetime:
        return self.epoch + timedelta(seconds=self._now)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (deadline, next(self._seq), future))
        self._activity()
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive(), name="flexctl-virtual-clock")
        try:
            await future
        finally:
            if not future.done():
                future.cancel()  # lazily dropped from the heap by the driver

    async def aclose(self) -> None:
        """Stop the driving task; sleepers still waiting are cancelled."""
        for _, _, future in self._heap:
            future.cancel()
        self._heap.clear()
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        self._driver = None

    def _activity(self) -> None:
        self._stir += 1
        if self._quiet is not None and self._in_flight == 0:
            self._quiet.set()

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)

    async def _settle(self) -> bool:
        """Yield until nothing else is runnable; False if anything stirred meanwhile."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's run queue; absent on uvloop
        mark = self._stir
        for rounds in range(1000):
            await asyncio.sleep(0)
            if self._in_flight or self._stir != mark:
                return False
            if ready is None:
                if rounds >= 8:
                    return True
            elif len(ready) == 0 and rounds >= 1:
                return True
        return False

    async def _drive(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._heap:
                return
            if self._in_flight:
                if self._quiet is None:
                    self._quiet = asyncio.Event()
                self._quiet.clear()
                await self._quiet.wait()
                continue
            if not await self._settle():
                continue
            self._drop_cancelled()
            if not self._heap:
                return
            self._now = max(self._now, self._heap[0][0])
            self.advances += 1
            while self._heap and self._heap[0][0] <= self._now:
                _, _, future = heapq.heappop(self._heap)
                if not future.done():
                    future.set_result(None)
            self._stir += 1
