"""Shared fixtures: every test fails if it leaves tasks or threads behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from flexctl.clock import VirtualClock

# Logs go through the standard library in tests, so pytest captures them per test;
# a structlog PrintLogger would keep a handle on a capture stream pytest has closed.
structlog.configure(
    processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=False,
)


@pytest.fixture(autouse=True)
def _in_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty directory: a run's default record store
    (``flexctl.db``) and report land there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(timeout=2.0)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"test leaked threads: {still}"


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    # give cancelled tasks one turn to finish before judging
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [
        t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()
    ]
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"


@pytest.fixture
async def vclock() -> AsyncIterator[VirtualClock]:
    clock = VirtualClock()
    yield clock
    await clock.aclose()


@pytest.fixture
async def rig() -> AsyncIterator[Any]:
    """The executor tests' fake line (tests/test_executor.py): a tank and a heater."""
    from test_executor import EPOCH, close_rig, open_rig

    the_rig = await open_rig(VirtualClock(epoch=EPOCH))
    yield the_rig
    await close_rig(the_rig)
