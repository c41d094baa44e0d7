"""The audit trail says who, what, old, new and why where the journal alone is terse."""

from __future__ import annotations

import asyncio

import pytest
from test_executor import LONG, MIN, Rig, make_procedure
from test_executor_resume import resumed

from flexctl.record.batch_record import audit_record
from flexctl.record.journal import EntryKind
from flexctl.supervisor.batch_state import BatchCommand as C
from flexctl.supervisor.batch_state import BatchState as S
from flexctl.supervisor.executor import CommandRefused
from flexctl.supervisor.resumption import replay


def test_a_refused_command_is_audited_as_refused_with_its_why(rig: Rig) -> None:
    executor = rig.make(make_procedure(LONG))
    with pytest.raises(CommandRefused):
        executor.command(C.Restart, actor="mallory", resolve="resend")
    audited = audit_record(rig.journal.entries()[-1])
    assert audited is not None and audited.action == "batch Restart refused"
    assert audited.actor == "mallory" and "resolve" in audited.reason


async def test_restore_audits_the_state_the_batch_was_in(rig: Rig) -> None:
    executor0 = rig.make(make_procedure(LONG), monitor_period=10 * MIN)
    task = asyncio.get_running_loop().create_task(executor0.run(actor="alice"))
    await rig.clock.sleep(MIN)
    executor0.command(C.Hold, actor="alice")
    await executor0.wait_for(S.Held)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    executor, journal = resumed(rig, LONG)
    run = asyncio.get_running_loop().create_task(
        executor.run(actor="alice", resume=replay(make_procedure(LONG), rig.journal.entries()))
    )
    await executor.wait_for(S.Held)
    restore = audit_record(journal.entries()[0])
    executor.command(C.Abort, actor="alice")
    await run
    assert restore is not None and restore.old_value == "Held", "old value says Idle"


async def test_alarm_old_value_is_the_alarms_active_before(rig: Rig) -> None:
    executor = rig.make(make_procedure(LONG), monitor_period=MIN, idle_period=MIN)
    tank = rig.devices["tank"].memory.values
    run = asyncio.get_running_loop().create_task(executor.run(actor="alice"))
    tank["alarm"] = "A1"
    await rig.clock.sleep(2 * MIN)
    tank["alarm"] = "A1,A2"
    await rig.clock.sleep(2 * MIN)
    executor.command(C.Abort, actor="alice")
    await run
    alarms = [e for e in rig.journal.entries() if e.kind is EntryKind.ALARM and e.device == "tank"]
    audited = audit_record(alarms[1])
    assert audited is not None
    assert (audited.old_value, audited.new_value) == (["A1"], ["A1", "A2"])
