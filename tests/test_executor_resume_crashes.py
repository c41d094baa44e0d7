"""Crashes at the narrow moments of a step: what the journal says must hold after a resume.

Each came from a review that crashed the supervisor between two journal
entries of one step: after a command's result, after a signature, while a
person owed a decision or the devices owed their hold safe states.
"""

from __future__ import annotations

import asyncio

import pytest
from test_executor import LONG, MIN, FakeDevice, Rig, make_procedure
from test_executor_resume import crash_when, resumed

from drivers.base import SafeAction
from flexctl.errors import CommunicationTimeout, DeviceBusyError
from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.supervisor.batch_state import BatchCommand as C
from flexctl.supervisor.batch_state import BatchState as S
from flexctl.supervisor.batch_state import IllegalCommand
from flexctl.supervisor.resumption import replay


def doses(rig: Rig) -> int:
    return sum(1 for c in rig.devices["tank"].calls if c[1] == "dose")


# 1. Crash after COMMAND_RESULT (the device answered: it ran) and before STEP_END.
async def test_crash_between_command_result_and_step_end_does_not_resend(rig: Rig) -> None:
    kept = await crash_when(
        rig,
        LONG,
        lambda es: any(e.kind is EntryKind.COMMAND_RESULT and e.step == "dose" for e in es),
    )
    assert kept[-1].kind is EntryKind.COMMAND_RESULT and "result" in kept[-1].payload
    assert doses(rig) == 1  # the device ran it once, and the journal says so
    resume = replay(make_procedure(LONG), kept)
    executor, _ = resumed(rig, LONG)
    assert await executor.run(actor="alice", resume=resume) is S.Complete
    assert doses(rig) == 1, "the journal shows dose ran; resume sent it again"


class Lossy(FakeDevice):
    """dose acts on the device, then its reply is lost (once)."""

    lose = True

    async def dose(self, volume_ml: float):  # type: ignore[no-untyped-def]
        result = await super().dose(volume_ml)
        if type(self).lose:
            type(self).lose = False
            raise CommunicationTimeout(self.name, "dose", 1.0)
        return result


# 2. Unknown outcome (reply lost), batch Held waiting for a person's decision; crash.
async def test_unknown_outcome_survives_a_crash(rig: Rig) -> None:
    Lossy.lose = True
    rig.devices["tank"].__class__ = Lossy
    executor0 = rig.make(make_procedure(LONG), monitor_period=10 * MIN)
    task = asyncio.get_running_loop().create_task(executor0.run(actor="alice"))
    assert await executor0.wait_for(S.Held) is S.Held
    assert executor0._unknown is not None  # in-process: a person must decide
    task.cancel()  # SIGKILL while Held
    await asyncio.gather(task, return_exceptions=True)
    entries = rig.journal.entries()
    assert doses(rig) == 1
    executor, _ = resumed(rig, LONG)
    run = asyncio.get_running_loop().create_task(
        executor.run(actor="alice", resume=replay(make_procedure(LONG), entries))
    )
    assert await executor.wait_for(S.Held) is S.Held
    # The person looked at the tank: the dose landed.  In-process this is accepted.
    executor.command(C.Restart, actor="alice", resolve="done")  # the dose landed
    assert await run is S.Complete
    assert doses(rig) == 1, "a command of unknown outcome was re-sent with no person's decision"


# 3. The recovery itself says "unknown" and holds; a second crash while Held.
async def test_cannot_tell_survives_a_second_crash(rig: Rig) -> None:
    kept = await crash_when(
        rig, LONG, lambda es: any(e.kind is EntryKind.COMMAND and e.step == "dose" for e in es)
    )
    n = doses(rig)
    first, j1 = resumed(rig, LONG)  # FakeDevice.recover("dose") -> CannotTell
    task = asyncio.get_running_loop().create_task(
        first.run(actor="alice", resume=replay(make_procedure(LONG), kept))
    )
    assert await first.wait_for(S.Held) is S.Held
    task.cancel()  # second crash, while the person has not decided yet
    await asyncio.gather(task, return_exceptions=True)
    entries = kept + j1.entries()
    second = replay(make_procedure(LONG), entries)
    assert second.unknown is not None and second.unknown.step == "dose"
    again, _ = resumed(rig, LONG)
    run = asyncio.get_running_loop().create_task(again.run(actor="alice", resume=second))
    assert await again.wait_for(S.Held) is S.Held
    again.command(C.Restart, actor="alice")  # without a decision: held again, nothing sent
    assert await again.wait_for(S.Held) is S.Held
    assert doses(rig) == n
    again.command(C.Restart, actor="alice", resolve="done")  # the person's decision survived
    assert await run is S.Complete
    assert doses(rig) == n, "re-sent after the second crash without anyone deciding"


PROMPTED = """\
procedure: p
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: ok, prompt: Confirm the tank is closed, role: supervisor, meaning: verified}
      - {id: dose, command: tank.dose, args: {volume_ml: 1}}
"""


# 4. The signature is journaled, the STEP_END is not.
async def test_a_signed_prompt_is_not_signed_twice(rig: Rig) -> None:
    kept = await crash_when(
        rig, PROMPTED, lambda es: any(e.kind is EntryKind.SIGNATURE for e in es)
    )
    executor, journal = resumed(rig, PROMPTED)
    assert (
        await executor.run(actor="alice", resume=replay(make_procedure(PROMPTED), kept))
        is S.Complete
    )
    signatures = [e for e in kept + journal.entries() if e.kind is EntryKind.SIGNATURE]
    assert len(signatures) == 1, f"{len(signatures)} signatures for one confirmation"


# 5. A hold safe state that failed is retried at restart in-process, not after a resume.
async def test_a_failed_hold_safe_state_is_retried_after_resume(rig: Rig) -> None:
    heater = rig.devices["heater"]
    heater.safe_state_error = DeviceBusyError("heater: busy")
    executor0 = rig.make(make_procedure(LONG), monitor_period=10 * MIN)
    task = asyncio.get_running_loop().create_task(executor0.run(actor="alice"))
    await rig.clock.sleep(MIN)
    executor0.command(C.Hold, actor="alice")
    assert await executor0.wait_for(S.Held) is S.Held
    assert executor0._unsafe == {"heater"}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    entries = rig.journal.entries()
    heater.safe_states.clear()
    executor, _ = resumed(rig, LONG)
    run = asyncio.get_running_loop().create_task(
        executor.run(actor="alice", resume=replay(make_procedure(LONG), entries))
    )
    assert await executor.wait_for(S.Held) is S.Held
    executor.command(C.Restart, actor="alice")
    after = await executor.wait_for(S.Running, S.Held)
    if executor.state not in (S.Complete, S.Aborted, S.Aborting):
        executor.command(C.Abort, actor="alice")
    await run
    assert after is S.Held, "restart accepted although heater's hold safe state still fails"
    assert SafeAction.HOLD in heater.safe_states, "restart did not retry the failed hold state"


def test_refusals_are_batch_state_entries_without_new(rig: Rig) -> None:
    """For the CLI repro: what a refused command journals."""
    executor = rig.make(make_procedure(LONG))
    with pytest.raises(IllegalCommand):
        executor.command(C.Restart, actor="alice")
    refused: JournalEntry = rig.journal.entries()[-1]
    assert refused.kind is EntryKind.BATCH_STATE and "new" not in refused.payload


MIXING = """\
procedure: m
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: mix, command: tank.mix, args: {seconds: 600}}
      - {id: dose, command: tank.dose, args: {volume_ml: 1}}
"""


# 6. Stop given while Holding (hold safe states owed), crash before they ran.
async def test_hold_states_owed_at_a_crash_in_stopping_still_run(rig: Rig) -> None:
    executor0 = rig.make(make_procedure(MIXING), monitor_period=10 * MIN)
    task = asyncio.get_running_loop().create_task(executor0.run(actor="alice"))
    await rig.clock.sleep(60)  # mix is in flight on the device (not a safe point)
    executor0.command(C.Hold, actor="alice")
    executor0.command(C.Stop, actor="alice")
    assert executor0.state is S.Stopping and executor0._hold_owed
    task.cancel()  # SIGKILL now
    await asyncio.gather(task, return_exceptions=True)
    entries = rig.journal.entries()
    for device in rig.devices.values():
        device.safe_states.clear()
    executor, _ = resumed(rig, MIXING)
    state = await executor.run(actor="alice", resume=replay(make_procedure(MIXING), entries))
    assert state is S.Stopped
    assert all(SafeAction.HOLD in d.safe_states for d in rig.devices.values()), (
        "the hold safe states owed since Holding never ran"
    )
