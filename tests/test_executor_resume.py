"""Resuming a batch from its journal after the supervisor died.

A "crash" here: the run task is cancelled at a chosen moment and only the
journal entries written before that moment are kept (a SIGKILL writes nothing
more); the devices stay as they were. A new executor on the same devices then
resumes from those entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

import pytest
from test_executor import (
    LONG,
    MIN,
    FakeDevice,
    Rig,
    make_procedure,
)

from drivers.base import Recovered
from flexctl.errors import ProgramAborted
from flexctl.profile import Value
from flexctl.record.journal import EntryKind, JournalEntry, MemoryJournal
from flexctl.supervisor.batch_state import BatchCommand as C
from flexctl.supervisor.batch_state import BatchState as S
from flexctl.supervisor.executor import Batch, Executor
from flexctl.supervisor.prompts import AutoSigner
from flexctl.supervisor.resumption import NothingToResume, replay


async def crash_when(
    rig: Rig, text: str, until: Callable[[list[JournalEntry]], bool]
) -> list[JournalEntry]:
    """Run ``text`` until ``until`` holds for its journal, then "kill" it.

    Returns the shortest prefix of the journal for which ``until`` holds: the
    entries a SIGKILL at that moment would have left (the devices may have
    gone on a little further, as real ones do while the journal write lands).
    """
    executor = rig.make(make_procedure(text), monitor_period=10 * MIN)
    task = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
    while not until(rig.journal.entries()) and not task.done():
        await rig.clock.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    entries = rig.journal.entries()
    cut = next(n for n in range(len(entries) + 1) if until(entries[:n]))
    return entries[:cut]


def resumed(rig: Rig, text: str) -> tuple[Executor, MemoryJournal]:
    journal = MemoryJournal()
    executor = Executor(
        Batch.create("B-001", make_procedure(text)),
        rig.devices,
        clock=rig.clock,
        journal=journal,
        prompter=AutoSigner(),
        monitor_period=10 * MIN,
    )
    return executor, journal


def started(step: str) -> Callable[[list[JournalEntry]], bool]:
    return lambda entries: any(e.kind is EntryKind.STEP_START and e.step == step for e in entries)


async def test_a_wait_keeps_its_deadline_and_finished_steps_are_not_repeated(rig: Rig) -> None:
    text = LONG.replace(
        "      - {id: soak, wait: 2 h}\n",
        "      - {id: first, command: tank.dose, args: {volume_ml: 2}}\n"
        "      - {id: soak, wait: 2 h}\n",
    )
    kept = crash_when(rig, text, started("soak"))
    entries = await kept
    await rig.clock.sleep(30 * MIN)  # the supervisor is down for half an hour
    resume = replay(make_procedure(text), entries)
    assert resume.state is S.Running and resume.interrupted == "soak" and resume.sent is None
    assert set(resume.results) == {"first"}
    executor, journal = resumed(rig, text)
    soak_began = next(e.process_time for e in entries if e.step == "soak")
    assert await executor.run(actor="alice", resume=resume) is S.Complete
    tank = rig.devices["tank"]
    assert [c[1:] for c in tank.calls] == [("dose", 2.0), ("dose", 1.0)]  # first once, then dose
    assert tank.calls[1][0] == soak_began + 2 * 3600  # the wait ended at its original deadline
    restored = journal.entries()[0]
    assert restored.kind is EntryKind.BATCH_STATE and restored.payload["command"] == "restore"
    assert executor.results["first"] == resume.results["first"]


async def test_a_command_sent_before_the_crash_is_asked_of_the_device(rig: Rig) -> None:
    """The device says it took effect: the step ends done with its result, nothing is re-sent."""
    kept = await crash_when(
        rig, LONG, lambda es: any(e.kind is EntryKind.COMMAND and e.step == "dose" for e in es)
    )
    assert kept[-1].kind is EntryKind.COMMAND
    resume = replay(make_procedure(LONG), kept)
    assert resume.sent is not None and resume.sent.method == "dose"
    tank = rig.devices["tank"]
    calls_before = len(tank.calls)

    async def recover(method: str, args: dict[str, Value]) -> Recovered | None:
        return Recovered({"volume_ml": 1.0, "total_ml": 1.0})

    tank.recover = recover  # type: ignore[method-assign,assignment]
    executor, journal = resumed(rig, LONG)
    assert await executor.run(actor="alice", resume=resume) is S.Complete
    assert len(tank.calls) == calls_before  # not sent again
    end = next(e for e in journal.entries() if e.kind is EntryKind.STEP_END)
    assert end.step == "dose" and end.payload["result"] == "done"
    assert executor.results["dose"] == {"volume_ml": 1.0, "total_ml": 1.0}


async def test_a_resendable_command_is_sent_again(rig: Rig) -> None:
    kept = await crash_when(
        rig, LONG, lambda es: any(e.kind is EntryKind.COMMAND and e.step == "dose" for e in es)
    )
    tank = rig.devices["tank"]
    calls_before = len(tank.calls)

    class Resendable(FakeDevice):
        resendable: ClassVar[frozenset[str]] = frozenset({"dose"})

    tank.__class__ = Resendable
    executor, journal = resumed(rig, LONG)
    assert await executor.run(actor="alice", resume=replay(make_procedure(LONG), kept)) is (
        S.Complete
    )
    assert len(tank.calls) == calls_before + 1
    result = next(e for e in journal.entries() if e.kind is EntryKind.COMMAND_RESULT)
    assert result.payload["recovered"] == "not sent"


async def test_when_the_device_cannot_tell_a_person_decides(rig: Rig) -> None:
    kept = await crash_when(
        rig, LONG, lambda es: any(e.kind is EntryKind.COMMAND and e.step == "dose" for e in es)
    )
    tank = rig.devices["tank"]
    calls_before = len(tank.calls)
    executor, journal = resumed(rig, LONG)
    task = asyncio.get_running_loop().create_task(
        executor.run(actor="alice", resume=replay(make_procedure(LONG), kept))
    )
    assert await executor.wait_for(S.Held) is S.Held
    assert len(tank.calls) == calls_before  # never re-sent by itself
    executor.command(C.Restart, actor="alice", resolve="done")
    assert await task is S.Complete
    assert len(tank.calls) == calls_before
    ends = [
        (e.step, e.payload["result"]) for e in journal.entries() if e.kind is EntryKind.STEP_END
    ]
    assert ends == [("dose", "done")]


async def test_a_held_batch_resumes_held(rig: Rig) -> None:
    kept = await crash_when(rig, LONG, started("soak"))
    # Resume it, hold it, and crash once it is Held.
    resume = replay(make_procedure(LONG), kept)
    executor, journal = resumed(rig, LONG)
    task = asyncio.get_running_loop().create_task(executor.run(actor="alice", resume=resume))
    await rig.clock.sleep(MIN)
    executor.command(C.Hold, actor="alice")
    assert await executor.wait_for(S.Held) is S.Held
    held = kept + journal.entries()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    again, journal2 = resumed(rig, LONG)
    task2 = asyncio.get_running_loop().create_task(
        again.run(actor="alice", resume=replay(make_procedure(LONG), held))
    )
    assert await again.wait_for(S.Held) is S.Held
    await rig.clock.sleep(3 * 3600)  # however long: only a person restarts it
    assert again.state is S.Held
    states = [e.payload.get("new") for e in journal2.entries() if e.kind is EntryKind.BATCH_STATE]
    assert states == ["Held"]  # restored, and nothing since
    again.command(C.Restart, actor="alice")
    assert await task2 is S.Complete


def test_a_journal_without_a_started_batch_has_nothing_to_resume() -> None:
    with pytest.raises(NothingToResume):
        replay(make_procedure(LONG), [])


async def test_a_wait_resumed_twice_keeps_its_first_deadline(rig: Rig) -> None:
    entries = await crash_when(rig, LONG, started("soak"))
    began = next(e.process_time for e in entries if e.step == "soak")
    for _ in range(2):  # resumed, and crashed again half an hour later
        await rig.clock.sleep(30 * MIN)
        executor, journal = resumed(rig, LONG)
        task = asyncio.get_running_loop().create_task(
            executor.run(actor="alice", resume=replay(make_procedure(LONG), entries))
        )
        await rig.clock.sleep(MIN)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        entries += journal.entries()
    resume = replay(make_procedure(LONG), entries)
    assert resume.interrupted == "soak" and resume.interrupted_at == began
    executor, _ = resumed(rig, LONG)
    assert await executor.run(actor="alice", resume=resume) is S.Complete
    assert rig.devices["tank"].calls[-1][0] == began + 2 * 3600


async def test_a_command_the_device_shows_failed_fails_its_step(rig: Rig) -> None:
    """Known outcome, a failure (the program aborted): the step failed; a person restarts it."""
    kept = await crash_when(
        rig, LONG, lambda es: any(e.kind is EntryKind.COMMAND and e.step == "dose" for e in es)
    )
    tank = rig.devices["tank"]
    calls_before = len(tank.calls)

    async def recover(method: str, args: dict[str, Value]) -> Recovered | None:
        raise ProgramAborted("tank: the dosing program aborted (door opened)")

    tank.recover = recover  # type: ignore[method-assign,assignment]
    executor, journal = resumed(rig, LONG)
    task = asyncio.get_running_loop().create_task(
        executor.run(actor="alice", resume=replay(make_procedure(LONG), kept))
    )
    assert await executor.wait_for(S.Held) is S.Held
    result = next(e for e in journal.entries() if e.kind is EntryKind.COMMAND_RESULT)
    assert result.payload["recovered"] == "failed"
    assert len(tank.calls) == calls_before
    executor.command(C.Restart, actor="alice")  # a person looked, and sends it again
    assert await task is S.Complete
    assert len(tank.calls) == calls_before + 1
