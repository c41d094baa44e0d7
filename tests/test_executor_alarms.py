"""ISA-18.2 limit alarms in a running batch: read with the monitor, journaled, an interlock holds.

The procedure declares them (``alarms:``); the executor feeds the values its
monitor reads to the alarm monitor, journals every transition, holds the
batch when an interlock alarm activates, and refuses a restart while it is
still active. A person acknowledges and shelves, with a reason, journaled
with the person as actor.
"""

from __future__ import annotations

import pytest
from test_executor import LONG, MIN, Rig, make_procedure, start

from flexctl.errors import FlexctlError
from flexctl.record.batch_record import audit_record
from flexctl.record.journal import EntryKind
from flexctl.supervisor.batch_state import BatchCommand as C
from flexctl.supervisor.batch_state import BatchState as S

ALARMED = LONG.replace(
    "unit_procedures:\n",
    """alarms:
  - {name: TAH-1, signal: heater.temperature, kind: high, limit: 40, deadband: 1,
     on_delay: 2 min, priority: high, interlock: true, message: heater too hot}
  - {name: LAL-1, signal: tank.level, kind: low, limit: -5, priority: low}
unit_procedures:
""",
)


def transitions(rig: Rig) -> list[tuple[str, str, str, str]]:
    return [
        (str(e.payload["alarm"]), str(e.payload["event"]), str(e.payload["new"]), e.actor)
        for e in rig.kinds(EntryKind.ALARM)
        if "alarm" in e.payload
    ]


async def test_an_interlock_alarm_holds_and_a_restart_waits_until_it_clears(rig: Rig) -> None:
    heater = rig.devices["heater"].memory.values
    heater["temperature"] = 25.0
    executor = rig.make(make_procedure(ALARMED), monitor_period=MIN)
    run = start(executor)
    await rig.clock.sleep_until(10 * MIN + 1)
    heater["temperature"] = 45.0  # past the limit: active after its 2 min on-delay
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 13 * MIN  # seen at 11 min, on for 2 min at 13 min
    assert transitions(rig) == [("TAH-1", "Activate", "Unacknowledged", "system")]
    hold = next(e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding")
    assert "alarm:TAH-1" in str(hold.payload["reason"])
    # A person acknowledges it, with a reason; journaled and audited with her.
    with pytest.raises(FlexctlError):
        executor.acknowledge_alarm("TAH-1", user="alice", reason="")
    executor.acknowledge_alarm("TAH-1", user="alice", reason="heater jacket checked")
    ack = rig.kinds(EntryKind.ALARM)[-1]
    audited = audit_record(ack)
    assert audited is not None and (audited.actor, audited.action) == ("alice", "alarm Acknowledge")
    assert (audited.old_value, audited.new_value) == ("Unacknowledged", "Acknowledged")
    # Still past its limit: the restart is refused (held again).
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    heater["temperature"] = 39.5  # inside the deadband (clears at <= 39): still active
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    heater["temperature"] = 30.0
    # The monitor does not run while Held: the restart check reads the value itself.
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert transitions(rig)[-1] == ("TAH-1", "Clear", "Normal", "system")


async def test_a_non_interlock_alarm_is_journaled_and_shelved_without_holding(
    rig: Rig,
) -> None:
    tank = rig.devices["tank"].memory.values
    executor = rig.make(make_procedure(ALARMED), monitor_period=MIN)
    run = start(executor)
    await rig.clock.sleep_until(5 * MIN + 1)
    tank["level"] = -10.0
    await rig.clock.sleep_until(7 * MIN + 1)
    assert executor.state is S.Running
    assert transitions(rig) == [("LAL-1", "Activate", "Unacknowledged", "system")]
    executor.shelve_alarm("LAL-1", user="bob", reason="sensor being replaced", seconds=30 * MIN)
    assert transitions(rig)[-1] == ("LAL-1", "Shelve", "Shelved", "bob")
    await rig.clock.sleep_until(38 * MIN + 1)  # the shelve ran out at 37 min: annunciated again
    assert transitions(rig)[-1][1:3] == ("Shelve expiry", "Unacknowledged")
    assert [s.definition.name for s in executor.alarms.active()] == ["LAL-1"]
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


def test_an_alarm_on_a_signal_the_line_lacks_is_a_validation_error() -> None:
    from flexctl.procedure.loader import parse_procedure

    loaded = parse_procedure(ALARMED.replace("heater.temperature", "heater.nope"), "a.yaml")
    assert not loaded.problems and loaded.procedure is not None
    assert loaded.procedure.alarms[0].signal == "heater.nope"
    assert loaded.procedure.alarms[0].where.line == 4  # the line of its signal


async def test_a_lines_own_alarms_are_watched_beside_the_procedures(rig: Rig) -> None:
    from flexctl.supervisor.alarm_defs import AlarmDefinition, AlarmKind, AlarmPriority

    plant = AlarmDefinition(
        name="LAH-T-1",
        signal="tank.level",
        kind=AlarmKind.High,
        limit=100,
        priority=AlarmPriority.Medium,
    )
    tank = rig.devices["tank"].memory.values
    executor = rig.make(make_procedure(LONG), monitor_period=MIN, limit_alarms=[plant])
    run = start(executor)
    await rig.clock.sleep_until(3 * MIN + 1)
    tank["level"] = 150.0
    await rig.clock.sleep_until(5 * MIN + 1)
    assert transitions(rig) == [("LAH-T-1", "Activate", "Unacknowledged", "system")]
    assert executor.state is S.Running  # not an interlock: annunciated only
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


def test_a_procedure_alarm_named_like_a_line_alarm_is_a_validation_error() -> None:
    from flexctl.line import shipped_line
    from flexctl.procedure.validate import validate_procedure

    text = ALARMED.replace("TAH-1", "LAH-BR-01").replace(
        "heater.temperature", "bioreactor.temperature"
    )
    procedure = make_procedure(
        text.replace("tank.level", "bioreactor.volume").replace("line: test\n", "")
    )
    problems = validate_procedure(procedure, shipped_line("sim"), values={})
    assert any("LAH-BR-01" in p.message and "already" in p.message for p in problems)
