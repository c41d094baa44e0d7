"""The step executor's logic, on small fake drivers over an in-memory transport.

The fakes are real :class:`~drivers.base.Driver` subclasses on a real
:class:`~flexctl.transports.base.Transport` whose wire is a dict, so link loss,
reconnects and in-flight accounting are the transport base's own. Everything
runs on a :class:`~flexctl.clock.VirtualClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.base import Driver, SafeAction
from flexctl.clock import VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    Where,
)
from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import Entry, EntryType, Meaning, Procedure, Role
from flexctl.profile import CommandSpec, SignalSpec, Value, parse_profile
from flexctl.record.journal import EntryKind, JournalEntry, MemoryJournal
from flexctl.supervisor.batch_state import (
    COMPLETIONS,
    FINAL,
    TRANSITIONS,
    BatchCommand,
    BatchState,
    IllegalCommand,
)
from flexctl.supervisor.executor import Batch, CommandRefused, Executor
from flexctl.supervisor.interlocks import AlarmInterlock, Interlock, parse_alarms
from flexctl.supervisor.prompts import (
    SIM_USER,
    AutoSigner,
    PromptRequest,
    Signer,
    check_answer,
    default_answer,
    example_for,
)
from flexctl.transports.base import (
    CommandAddress,
    ConnectionState,
    SignalAddress,
    Transport,
    TransportOptions,
)
from flexctl.yamlpos import load_text

S = BatchState
C = BatchCommand
EPOCH = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
MIN = 60.0
HERE = Where("test.yaml")

PROFILE = """\
device: fake
transport: serial
signals:
  status: {type: uint16, enum: [idle, busy, warn, error]}
  alarm: {type: string}
  level: {type: float, unit: mL}
  ready: {type: bool}
  temperature: {type: float, unit: degC}
  setpoint: {type: float, unit: degC, writable: true, limits: [0, 50]}
"""


class MemoryTransport(Transport):
    """A transport whose device is a dict; ``down`` makes it stop answering."""

    family: ClassVar[str] = "serial"
    schemes: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, name: str, clock: VirtualClock) -> None:
        profile = parse_profile(load_text(PROFILE, f"{name}.yaml"), f"{name}.memory")
        options = TransportOptions(backoff_initial=5.0, backoff_max=60.0, backoff_jitter=0.0)
        super().__init__(profile, f"memory://{name}", clock=clock, device=name, options=options)
        self.values: dict[str, Value] = {
            "status": "idle",
            "alarm": "",
            "level": 0.0,
            "ready": False,
            "temperature": 20.0,
            "setpoint": 20.0,
        }
        self.down = False
        self.reads = 0

    @classmethod
    def parse_signal(cls, spec: SignalSpec) -> SignalAddress:
        return SignalAddress(spec)

    @classmethod
    def parse_command(cls, spec: CommandSpec) -> CommandAddress:
        return CommandAddress(spec)

    async def _open(self) -> None:
        if self.down:
            raise NotConnectedError(self.device, "no answer")

    async def _close(self) -> None:
        return None

    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        await asyncio.sleep(0)  # a reply comes later than the request
        if self.down:
            raise NotConnectedError(self.device, "no answer")
        self.reads += 1
        return [a.spec.encode(self.values[a.name]) for a in addresses]

    async def _write(self, address: SignalAddress, wire: Value) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise NotConnectedError(self.device, "no answer")
        self.values[address.name] = wire

    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        raise AssertionError("no commands on the wire")


@dataclass(frozen=True)
class Dosed:
    volume_ml: float
    total_ml: float


class FakeDevice(Driver):
    """A device with a level, a ready flag, a temperature and a setpoint."""

    kind: ClassVar[str] = "fake"

    def __init__(self, name: str, clock: VirtualClock) -> None:
        self.memory = MemoryTransport(name, clock)
        super().__init__(name, self.memory, clock)
        self.calls: list[tuple[float, str, float]] = []
        self.safe_states: list[SafeAction] = []
        self.safe_state_error: Exception | None = None
        self.busy = False

    async def dose(self, volume_ml: float) -> Dosed:
        """Add ``volume_ml``; returns how much is in now."""
        self.calls.append((self.clock.now(), "dose", volume_ml))
        if self.busy:
            raise DeviceBusyError(f"{self.name}: busy")
        level = float(await self.get("level"))
        self.memory.values["level"] = level + volume_ml
        return Dosed(volume_ml, level + volume_ml)

    async def mix(self, seconds: float) -> None:
        """A command that takes ``seconds`` of process time on the device."""
        self.calls.append((self.clock.now(), "mix-start", seconds))
        await self.get("status")
        await self.clock.sleep(seconds)
        await self.get("status")
        self.calls.append((self.clock.now(), "mix-end", seconds))

    async def safe_state(self, action: SafeAction) -> None:
        self.safe_states.append(action)
        if self.safe_state_error is not None:
            raise self.safe_state_error


def make_procedure(text: str) -> Procedure:
    loaded = parse_procedure(textwrap.dedent(text), "test.yaml")
    assert not loaded.problems, [str(p) for p in loaded.problems]
    assert loaded.procedure is not None
    return loaded.procedure


@dataclass
class Rig:
    clock: VirtualClock
    devices: dict[str, FakeDevice]
    journal: MemoryJournal = field(default_factory=MemoryJournal)
    executor: Executor | None = None

    def make(
        self,
        procedure: Procedure,
        *,
        prompter: Any = None,
        batch_id: str = "B-001",
        **options: Any,
    ) -> Executor:
        self.executor = Executor(
            Batch.create(batch_id, procedure),
            self.devices,
            clock=self.clock,
            journal=self.journal,
            prompter=prompter if prompter is not None else AutoSigner(),
            **options,
        )
        return self.executor

    def kinds(self, *kinds: EntryKind) -> list[JournalEntry]:
        return [e for e in self.journal.entries() if e.kind in kinds]

    def states(self) -> list[str]:
        return [
            str(e.payload["new"]) for e in self.kinds(EntryKind.BATCH_STATE) if "new" in e.payload
        ]

    def step_ends(self) -> list[tuple[str, str]]:
        return [(e.step, str(e.payload["result"])) for e in self.kinds(EntryKind.STEP_END)]


async def open_rig(clock: VirtualClock, names: Sequence[str] = ("tank", "heater")) -> Rig:
    devices = {name: FakeDevice(name, clock) for name in names}
    for device in devices.values():
        await device.connect()
    return Rig(clock, devices)


async def close_rig(rig: Rig) -> None:
    for device in rig.devices.values():
        await device.close()
    await rig.clock.aclose()


async def at(clock: VirtualClock, t: float, action: Callable[[], object]) -> None:
    await clock.sleep_until(t)
    action()


def start(executor: Executor, actor: str = "alice") -> asyncio.Task[BatchState]:
    return asyncio.get_running_loop().create_task(executor.run(actor=actor), name="test-run")


# -- a whole run ------------------------------------------------------------------------

FULL = """\
procedure: full
version: "1.0"
parameters:
  first_dose: {type: float, unit: mL, default: 10, limits: [1, 100]}
  hot: {type: float, unit: degC, default: 37}
unit_procedures:
  - name: fill
    steps:
      - {id: dose1, command: tank.dose, args: {volume_ml: "=first_dose"}}
      - {id: dose2, command: tank.dose, args: {volume_ml: "=dose1.total_ml * 2"}}
      - {id: level, record: tank.level + heater.temperature, unit: mL}
      - id: bag
        prompt: Scan the bag
        entry: {type: text, pattern: "^[A-Z0-9-]{6,}$"}
        role: operator
      - {id: ok, prompt: Confirm the tank is closed, role: supervisor, meaning: verified}
  - name: heat
    steps:
      - {id: warm, set: heater.setpoint, value: "=hot"}
      - {id: hold, wait: 30 min}
      - id: ready
        wait_until: heater.ready and tank.level > 20
        timeout: 1 h
        poll: 5 min
    rules:
      - id: top_up
        every: 10 min
        when: tank.level < 100
        command: tank.dose
        args: {volume_ml: 5}
"""


async def test_a_procedure_runs_to_complete_with_its_journal(rig: Rig) -> None:
    executor = rig.make(make_procedure(FULL), prompter=AutoSigner({"bag": "BAG-0042"}))
    tank, heater = rig.devices["tank"], rig.devices["heater"]
    run = start(executor)
    asyncio.get_running_loop().create_task(
        at(rig.clock, 40 * MIN, lambda: heater.memory.values.update(ready=True))
    )
    assert await run is S.Complete

    assert rig.states() == ["Running", "Complete"]
    assert [s for s, _ in rig.step_ends()] == [
        "dose1", "dose2", "level", "bag", "ok", "warm", "hold", "ready",
    ]  # fmt: skip
    assert all(result == "done" for _, result in rig.step_ends())
    assert executor.results["dose1"] == {"volume_ml": 10.0, "total_ml": 10.0}
    assert executor.results["dose2"] == {"volume_ml": 20.0, "total_ml": 30.0}
    assert executor.results["level"] == {"value": 50.0}  # 30 mL + 20 degC, as written
    assert executor.results["bag"] == {"value": "BAG-0042", "signer": SIM_USER}
    assert heater.memory.values["setpoint"] == 37.0
    # The wait_until polled every 5 min from t=30 min; ready from t=40 min.
    assert executor.results["ready"] == {"elapsed_s": 600.0, "timed_out": False}

    parameters = rig.kinds(EntryKind.PARAMETER)
    assert [(e.payload["name"], e.payload["value"]) for e in parameters] == [
        ("first_dose", 10.0),
        ("hot", 37.0),
    ]
    assert all(e.actor == "alice" for e in parameters)
    signatures = rig.kinds(EntryKind.SIGNATURE)
    assert [(e.step, e.actor, e.payload["meaning"], e.payload["role"]) for e in signatures] == [
        ("bag", SIM_USER, "performed", "operator"),
        ("ok", SIM_USER, "verified", "supervisor"),
    ]
    for signature in signatures:
        assert signature.payload["printed_name"] == SIM_USER
        assert signature.payload["simulated"] is True
        assert signature.payload["signed_at"] == signature.utc.isoformat()
        assert len(str(signature.payload["sha256"])) == 64
    record = rig.kinds(EntryKind.RECORD)[0]
    assert (record.step, record.payload["value"], record.payload["unit"]) == ("level", 50.0, "mL")
    assert record.device == "heater,tank"

    # The rule ran beside the heat steps: at its start (t=0 of heat) and every 10 min.
    heat_start = next(e.process_time for e in rig.kinds(EntryKind.STEP_START) if e.step == "warm")
    rule_doses = [t for t, name, volume in tank.calls if name == "dose" and volume == 5]
    assert rule_doses == [heat_start + k * 10 * MIN for k in range(len(rule_doses))]
    assert len(rule_doses) == 5  # 0, 10, 20, 30, 40 min; the unit procedure ended at 40 min
    rule_commands = [e for e in rig.kinds(EntryKind.COMMAND) if e.step == "top_up"]
    assert [e.payload["args"] for e in rule_commands] == [{"volume_ml": 5}] * 5
    assert tank.safe_states == [] and heater.safe_states == []
    # Every entry has the batch, UTC time that matches the process time, and JSON payload.
    for entry in rig.journal.entries():
        assert entry.batch == "B-001"
        assert (entry.utc - EPOCH).total_seconds() == entry.process_time
    assert rig.journal.entries()[-1].kind is EntryKind.BATCH_STATE


SIMPLE = """\
procedure: simple
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: first, command: tank.dose, args: {volume_ml: 1}}
      - id: wait_ready
        wait_until: tank.ready
        timeout: 30 min
        poll: 1 min
        on_timeout: {on_timeout}
      - {id: after, command: tank.dose, args: {volume_ml: 2}}
"""


def simple(on_timeout: str) -> Procedure:
    return make_procedure(SIMPLE.replace("{on_timeout}", on_timeout))


async def test_wait_until_timeout_holds_and_a_persons_restart_runs_it_again(rig: Rig) -> None:
    executor = rig.make(simple("hold"))
    tank = rig.devices["tank"]
    run = start(executor)
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 30 * MIN
    hold = rig.kinds(EntryKind.BATCH_STATE)[-2]
    assert (hold.actor, hold.payload["new"]) == ("system", "Holding")
    assert "wait_ready" in str(hold.payload["reason"]) and "30 min" in str(hold.payload["reason"])
    assert tank.safe_states == [SafeAction.HOLD]
    assert rig.devices["heater"].safe_states == [SafeAction.HOLD]

    with pytest.raises(CommandRefused):
        executor.command(C.Restart, actor="system")
    assert executor.state is S.Held
    refused = rig.kinds(EntryKind.BATCH_STATE)[-1]
    assert refused.payload["command"] == "Restart" and "person" in str(refused.payload["refused"])

    await rig.clock.sleep(5 * MIN)  # nothing moves while held
    tank.memory.values["ready"] = True
    executor.command(C.Restart, actor="bob", reason="ready flag checked")
    assert await run is S.Complete
    assert rig.states() == ["Running", "Holding", "Held", "Restarting", "Running", "Complete"]
    starts = [(e.step, e.payload["attempt"]) for e in rig.kinds(EntryKind.STEP_START)]
    assert starts == [("first", 1), ("wait_ready", 1), ("wait_ready", 2), ("after", 1)]
    assert rig.step_ends() == [
        ("first", "done"),
        ("wait_ready", "failed"),
        ("wait_ready", "done"),
        ("after", "done"),
    ]
    restart = next(
        e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Restarting"
    )
    assert restart.actor == "bob" and restart.process_time == 35 * MIN
    checks = [
        e for e in rig.kinds(EntryKind.INTERLOCK) if e.payload.get("event") == "restart check"
    ]
    assert [e.device for e in checks] == ["tank", "heater"]
    # The wait started again after the restart: it ran from 35 min, not from its first start.
    second = [e for e in rig.kinds(EntryKind.STEP_START) if e.step == "wait_ready"][1]
    assert second.process_time == 35 * MIN
    assert [c[2] for c in tank.calls] == [1, 2]  # the first command was not repeated


async def test_wait_until_timeout_continue_is_a_deviation(rig: Rig) -> None:
    executor = rig.make(simple("continue"))
    assert await start(executor) is S.Complete
    deviations = rig.kinds(EntryKind.DEVIATION)
    assert len(deviations) == 1
    deviation = deviations[0]
    assert (deviation.step, deviation.device, deviation.process_time) == (
        "wait_ready",
        "tank",
        1800,
    )
    assert deviation.payload["on_timeout"] == "continue"
    assert deviation.payload["condition"] == "tank.ready"
    assert executor.results["wait_ready"] == {"elapsed_s": 1800.0, "timed_out": True}
    assert rig.states() == ["Running", "Complete"]


async def test_wait_until_timeout_abort_aborts_with_safe_states(rig: Rig) -> None:
    executor = rig.make(simple("abort"))
    assert await start(executor) is S.Aborted
    assert rig.states() == ["Running", "Aborting", "Aborted"]
    assert all(d.safe_states == [SafeAction.ABORT] for d in rig.devices.values())
    assert [c[2] for c in rig.devices["tank"].calls] == [1]


WAITS = """\
procedure: waits
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: w1, wait: 10 min}
      - {id: dose, command: tank.dose, args: {volume_ml: 1}}
      - {id: w2, wait: 10 min}
"""


async def test_a_persons_abort_interrupts_a_wait_and_calls_every_safe_state(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    run = start(executor)
    await rig.clock.sleep(4 * MIN)
    executor.command(C.Abort, actor="alice", reason="bag leaking")
    assert await run is S.Aborted
    assert rig.clock.now() == 4 * MIN  # the wait was interrupted, not waited out
    assert rig.step_ends() == [("w1", "interrupted")]
    assert all(d.safe_states == [SafeAction.ABORT] for d in rig.devices.values())
    assert rig.devices["tank"].calls == []
    abort = rig.kinds(EntryKind.BATCH_STATE)[1]
    assert (abort.actor, abort.payload["reason"]) == ("alice", "bag leaking")


async def test_pause_waits_for_the_step_boundary(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    run = start(executor)
    await rig.clock.sleep(4 * MIN)
    executor.command(C.Pause, actor="alice")
    assert executor.state is S.Pausing
    assert await executor.wait_for(S.Paused) is S.Paused
    assert rig.clock.now() == 10 * MIN  # the wait ran to its end
    assert rig.step_ends() == [("w1", "done")]
    await rig.clock.sleep(60 * MIN)  # paused: the next step does not start
    assert rig.devices["tank"].calls == []
    with pytest.raises(IllegalCommand):
        executor.command(C.Pause, actor="alice")
    executor.command(C.Resume, actor="alice")
    assert await run is S.Complete
    assert rig.devices["tank"].calls == [(70 * MIN, "dose", 1)]
    assert rig.states() == ["Running", "Pausing", "Paused", "Running", "Complete"]
    assert rig.clock.now() == 80 * MIN


async def test_stop_ends_the_batch_after_the_current_step(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    run = start(executor)
    await rig.clock.sleep(4 * MIN)
    executor.command(C.Stop, actor="alice")
    assert await run is S.Stopped
    assert rig.clock.now() == 10 * MIN
    assert rig.step_ends() == [("w1", "done")]
    assert rig.devices["tank"].calls == []
    assert rig.states() == ["Running", "Stopping", "Stopped"]


MIXING = """\
procedure: mixing
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: mixing, command: tank.mix, args: {seconds: 600}}
      - {id: after, command: tank.dose, args: {volume_ml: 1}}
"""


async def test_hold_lets_a_command_in_flight_finish(rig: Rig) -> None:
    executor = rig.make(make_procedure(MIXING))
    tank = rig.devices["tank"]
    run = start(executor)
    await rig.clock.sleep(2 * MIN)
    executor.command(C.Hold, actor="alice", reason="check the bag")
    assert await executor.wait_for(S.Held) is S.Held
    # The device command was not cancelled: it ran to its end, and the step is done.
    assert [c[1] for c in tank.calls] == ["mix-start", "mix-end"]
    assert rig.clock.now() == 10 * MIN
    assert rig.step_ends() == [("mixing", "done")]
    assert tank.safe_states == [SafeAction.HOLD]
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert [c[1] for c in tank.calls] == ["mix-start", "mix-end", "dose"]


async def test_a_failing_step_holds_and_runs_again_after_restart(rig: Rig) -> None:
    text = MIXING.replace("tank.mix, args: {seconds: 600}", "tank.dose, args: {volume_ml: 3}")
    executor = rig.make(make_procedure(text))
    tank = rig.devices["tank"]
    tank.busy = True
    run = start(executor)
    assert await executor.wait_for(S.Held) is S.Held
    deviation = rig.kinds(EntryKind.DEVIATION)[0]
    assert deviation.step == "mixing" and deviation.payload["error_type"] == "DeviceBusyError"
    result = next(e for e in rig.kinds(EntryKind.COMMAND_RESULT) if e.step == "mixing")
    assert result.payload["error_type"] == "DeviceBusyError"
    tank.busy = False
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert rig.step_ends() == [("mixing", "failed"), ("mixing", "done"), ("after", "done")]


async def test_a_safe_state_failure_is_journaled_and_the_others_still_run(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    rig.devices["tank"].safe_state_error = DeviceBusyError("tank: pump jammed")
    run = start(executor)
    await rig.clock.sleep(MIN)
    executor.command(C.Hold, actor="alice")
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.devices["heater"].safe_states == [SafeAction.HOLD]
    deviation = rig.kinds(EntryKind.DEVIATION)[0]
    assert deviation.device == "tank"
    assert deviation.payload["safe_state"] == "hold"
    assert "pump jammed" in str(deviation.payload["error"])
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


# -- interlocks ---------------------------------------------------------------------------

LONG = """\
procedure: long
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: soak, wait: 2 h}
      - {id: dose, command: tank.dose, args: {volume_ml: 1}}
"""


async def test_a_value_out_of_band_longer_than_its_delay_holds(rig: Rig) -> None:
    band = Interlock("heater.temperature", low=15, high=30, delay=5 * MIN, name="heater temp")
    executor = rig.make(make_procedure(LONG), interlocks=[band], monitor_period=MIN)
    values = rig.devices["heater"].memory.values
    run = start(executor)
    # Out for 4 min (less than the delay): no hold.
    await rig.clock.sleep_until(10 * MIN + 1)
    values["temperature"] = 35.0
    await rig.clock.sleep_until(14 * MIN + 1)
    values["temperature"] = 25.0
    await rig.clock.sleep_until(30 * MIN + 1)
    assert executor.state is S.Running
    # Out for good: holds once the delay has passed, at the first poll after it.
    values["temperature"] = 12.0
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 36 * MIN
    tripped = [e for e in rig.kinds(EntryKind.INTERLOCK) if e.payload.get("action") == "hold"]
    assert len(tripped) == 1
    assert tripped[0].payload["interlock"] == "band:heater temp"
    assert tripped[0].payload["value"] == 12.0
    hold = next(e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding")
    assert hold.actor == "system" and "heater temp" in str(hold.payload["reason"])
    events = [e.payload.get("event") for e in rig.kinds(EntryKind.INTERLOCK)]
    assert events[:3] == ["out of band", "back in band", "out of band"]
    assert rig.step_ends() == [("soak", "interrupted")]
    # A person's restart with the value back in band runs the wait again from its start.
    values["temperature"] = 22.0
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert rig.clock.now() == 36 * MIN + 2 * 60 * MIN


async def test_an_interlocking_alarm_holds_and_others_are_journaled(rig: Rig) -> None:
    executor = rig.make(
        make_procedure(LONG),
        interlocks=[AlarmInterlock("tank", frozenset({"OVERFILL"}))],
        monitor_period=MIN,
    )
    tank = rig.devices["tank"].memory.values
    run = start(executor)
    await rig.clock.sleep_until(5 * MIN + 1)
    tank["alarm"] = "LEVEL_LOW"
    await rig.clock.sleep_until(10 * MIN + 1)
    assert executor.state is S.Running
    tank["alarm"] = "LEVEL_LOW,OVERFILL"
    assert await executor.wait_for(S.Held) is S.Held
    alarms = rig.kinds(EntryKind.ALARM)
    assert [(e.payload["raised"], e.payload["cleared"]) for e in alarms] == [
        (["LEVEL_LOW"], []),
        (["OVERFILL"], []),
    ]
    tripped = rig.kinds(EntryKind.INTERLOCK)[0]
    assert tripped.payload["interlock"] == "alarm:tank:OVERFILL"
    # Restart while the alarm is still up: the re-read holds the batch again.
    executor.command(C.Restart, actor="alice")
    await rig.clock.sleep(0)
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.states()[-3:] == ["Restarting", "Holding", "Held"]
    tank["alarm"] = ""
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete


async def test_a_device_that_stops_answering_holds_by_itself(rig: Rig) -> None:
    executor = rig.make(
        make_procedure(LONG), monitor_period=MIN, idle_period=MIN, link_wait=30 * MIN
    )
    heater = rig.devices["heater"].memory
    run = start(executor)
    await rig.clock.sleep_until(20 * MIN + 30)
    heater.down = True
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 21 * MIN  # the next monitor poll
    tripped = rig.kinds(EntryKind.INTERLOCK)[0]
    assert (tripped.device, tripped.payload["interlock"]) == ("heater", "link:heater")
    hold = next(e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding")
    assert hold.actor == "system" and "link:heater" in str(hold.payload["reason"])
    # The batch waits for a person, however long; the link comes back meanwhile.
    assert heater.state is ConnectionState.RECONNECTING
    heater.down = False
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert rig.step_ends() == [("soak", "interrupted"), ("soak", "done"), ("dose", "done")]


async def test_devices_the_unit_procedure_does_not_use_are_checked_every_idle_period(
    rig: Rig,
) -> None:
    # LONG uses the tank only: the tank is checked every minute, the heater
    # (holding nothing) every idle period.
    executor = rig.make(make_procedure(LONG), monitor_period=MIN, idle_period=10 * MIN)
    tank, heater = rig.devices["tank"].memory, rig.devices["heater"].memory
    run = start(executor)
    await rig.clock.sleep_until(30 * MIN + 30)
    assert (tank.reads, heater.reads) == (31, 4)  # at 0, 1, ... 30 min; at 0, 10, 20, 30 min
    heater.down = True
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 40 * MIN  # the heater's next check
    heater.down = False
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


def test_the_idle_period_is_no_shorter_than_the_monitor_period(rig: Rig) -> None:
    with pytest.raises(ValueError, match="idle_period"):
        rig.make(make_procedure(LONG), monitor_period=MIN, idle_period=MIN / 2)


async def test_a_device_still_down_at_restart_holds_again(rig: Rig) -> None:
    executor = rig.make(
        make_procedure(LONG), monitor_period=MIN, idle_period=MIN, link_wait=10 * MIN
    )
    heater = rig.devices["heater"].memory
    run = start(executor)
    await rig.clock.sleep_until(5 * MIN + 30)
    heater.down = True
    await executor.wait_for(S.Held)
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    reasons = [str(e.payload.get("reason")) for e in rig.kinds(EntryKind.INTERLOCK)]
    still = [r for r in reasons if "still not answering" in r]
    assert len(still) == 1
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


async def test_cancelling_run_leaves_no_task_behind(rig: Rig) -> None:
    executor = rig.make(make_procedure(FULL), interlocks=[Interlock("tank.level", high=1e6)])
    run = start(executor)
    await rig.clock.sleep(45 * MIN)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # conftest fails the test if a task is left.


async def test_construction_checks_devices_and_prompter(rig: Rig) -> None:
    procedure = make_procedure(WAITS.replace("tank.dose", "pump.dose"))
    with pytest.raises(ConfigurationError, match="device 'pump' has no driver"):
        rig.make(procedure)
    with pytest.raises(ConfigurationError, match="no prompter"):
        Executor(
            Batch.create("B", make_procedure(FULL)),
            rig.devices,
            clock=rig.clock,
            journal=rig.journal,
        )
    with pytest.raises(ConfigurationError, match="device 'mixer'"):
        rig.make(make_procedure(WAITS), interlocks=[Interlock("mixer.speed", high=1)])


async def test_run_needs_a_person_and_commands_need_an_actor(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    with pytest.raises(CommandRefused):
        await executor.run(actor="system")
    with pytest.raises(CommandRefused):
        executor.command(C.Hold, actor=" ")
    with pytest.raises(ValueError, match="not a batch command"):
        executor.command("Pasue", actor="alice")


# -- prompts -------------------------------------------------------------------------------


class Scripted:
    """A prompter that answers from a list, signing as a named person."""

    def __init__(self, answers: list[Value]) -> None:
        self.answers = answers

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]:
        return self.answers.pop(0), Signer("jdoe", "Jane Doe")


PROMPTS = """\
procedure: prompts
version: "1"
unit_procedures:
  - name: main
    steps:
      - id: count
        prompt: Enter the cell count
        entry: {type: int, limits: [1, 10]}
        role: operator
"""


async def test_a_wrong_entry_is_asked_again_and_journaled(rig: Rig) -> None:
    executor = rig.make(make_procedure(PROMPTS), prompter=Scripted([42, "7", 7]))
    assert await start(executor) is S.Complete
    prompts = rig.kinds(EntryKind.PROMPT)
    assert [e.payload.get("rejected") for e in prompts] == [None, 42, "7"]
    assert all(e.actor == "jdoe" for e in prompts[1:])
    signature = rig.kinds(EntryKind.SIGNATURE)[0]
    assert (signature.actor, signature.payload["printed_name"]) == ("jdoe", "Jane Doe")
    assert signature.payload["simulated"] is False and signature.payload["value"] == 7


async def test_no_acceptable_entry_holds(rig: Rig) -> None:
    executor = rig.make(make_procedure(PROMPTS), prompter=Scripted([0, 0, 0, 5]))
    run = start(executor)
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.kinds(EntryKind.DEVIATION)[0].payload["error_type"] == "PromptDeclined"
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert executor.results["count"]["value"] == 5


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (None, True),
        (Entry(EntryType.INT, HERE, limits=(1, 10)), 5),
        (Entry(EntryType.FLOAT, HERE, limits=(2.0, 3.0)), 2.5),
        (Entry(EntryType.TEXT, HERE), "SIM-STEP_ID"),
        (Entry(EntryType.TEXT, HERE, pattern="^[A-Z0-9-]{6,}$"), "SIM-STEP-ID"),
        (Entry(EntryType.TEXT, HERE, pattern=r"^\d{4}-[a-f]{2}$"), None),
        (Entry(EntryType.TEXT, HERE, pattern=r"(ab|cd)x\1[^A]"), None),
    ],
)
def test_auto_signer_defaults_fit_the_entry(entry: Entry | None, expected: Value | None) -> None:
    value = default_answer(entry, "step_id")
    assert check_answer(entry, value) is None
    if expected is not None:
        assert value == expected


def test_example_for_patterns() -> None:
    for pattern in [r"^[A-Z]{3}\d+$", r"\w+@\w+\.com", r"[^0-9]{2}\s\S", r"(?:ab)+c?"]:
        example = example_for(pattern)
        assert example is not None, pattern
    assert example_for(r"(?=x)y") is None
    assert parse_alarms(" OVERFILL, DO_LOW;PH_HIGH ") == ("OVERFILL", "DO_LOW", "PH_HIGH")
    assert parse_alarms("") == ()


def test_interlock_definitions_are_checked() -> None:
    with pytest.raises(ValueError):
        Interlock("temperature", low=1)
    with pytest.raises(ValueError):
        Interlock("a.b")
    with pytest.raises(ValueError):
        Interlock("a.b", low=2, high=1)
    band = Interlock("a.b", low=1, high=2)
    assert not band.outside(1.5) and band.outside(3) and band.outside("x") and band.outside(True)


# -- random person commands ---------------------------------------------------------------

RANDOM = """\
procedure: random
version: "1"
unit_procedures:
  - name: one
    steps:
      - {id: d1, command: tank.dose, args: {volume_ml: 3}}
      - {id: w1, wait: 7 min}
      - id: u1
        wait_until: tank.level > 2
        timeout: 20 min
        poll: 3 min
      - {id: p1, prompt: Confirm, role: operator}
    rules:
      - {id: r1, every: 4 min, command: heater.dose, args: {volume_ml: 1}}
  - name: two
    steps:
      - {id: m1, command: tank.mix, args: {seconds: 300}}
      - {id: d2, command: tank.dose, args: {volume_ml: 5}}
      - {id: w2, wait: 5 min}
"""

PERSON_COMMANDS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=15 * 60),
        # Every command, weighted towards those that keep a batch going.
        st.sampled_from([*BatchCommand, C.Hold, C.Restart, C.Restart, C.Pause, C.Resume]),
        st.sampled_from(["alice", "alice", "alice", "system"]),
    ),
    max_size=8,
)


async def _random_run(  # noqa: PLR0915
    script: list[tuple[int, BatchCommand, str]], down_at: int | None
) -> None:
    rig = await open_rig(VirtualClock(epoch=EPOCH))
    try:
        executor = rig.make(make_procedure(RANDOM), monitor_period=2 * MIN, link_wait=5 * MIN)
        run = start(executor)
        if down_at is not None:
            tank = rig.devices["tank"].memory

            async def outage() -> None:
                await rig.clock.sleep(down_at)
                tank.down = True
                await rig.clock.sleep(10 * MIN)
                tank.down = False

            asyncio.get_running_loop().create_task(outage(), name="test-outage")
        for delay, command, actor in script:
            await rig.clock.sleep(delay)
            if run.done():
                break
            with contextlib.suppress(IllegalCommand, CommandRefused):
                executor.command(command, actor=actor)
        # The person lets the batch go on: resume a pause, then wait until it ends or
        # waits for a person in Held (time stands still there but for our own sleep).
        horizon = rig.clock.now() + 30 * 24 * 3600
        while not run.done() and rig.clock.now() < horizon:
            if executor.state is S.Paused:
                executor.command(C.Resume, actor="alice")
                continue
            sleeper = asyncio.get_running_loop().create_task(rig.clock.sleep(24 * 3600))
            waiter = asyncio.get_running_loop().create_task(executor.wait_for(S.Paused, S.Held))
            await asyncio.wait([run, sleeper, waiter], return_when=asyncio.FIRST_COMPLETED)
            for task in (sleeper, waiter):
                task.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
            if executor.state is S.Held:
                await rig.clock.sleep(3600)  # still held an hour later: waiting for a person
                assert executor.state is S.Held and not run.done()
                break
        if run.done():
            assert run.result() in FINAL
        else:
            assert executor.state is S.Held
            executor.command(C.Abort, actor="alice")
            assert await run is S.Aborted

        history = executor.machine.history
        for transition in history:
            if transition.command == "complete":
                assert COMPLETIONS[transition.old] is transition.new
            else:
                assert isinstance(transition.command, BatchCommand)
                assert TRANSITIONS[(transition.old, transition.command)] is transition.new
                if transition.command is C.Restart:
                    assert transition.actor != "system"
        journaled = [e for e in rig.kinds(EntryKind.BATCH_STATE) if "new" in e.payload]
        assert [(e.payload["old"], e.payload["new"]) for e in journaled] == [
            (t.old.value, t.new.value) for t in history
        ]
        order = [s.id for s in executor.procedure.steps()]
        done = [step for step, result in rig.step_ends() if result == "done"]
        assert done == order[: len(done)]
        if history[-1].new is S.Complete:
            assert done == order
    finally:
        await close_rig(rig)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not left, [t.get_name() for t in left]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=PERSON_COMMANDS, down_at=st.none() | st.integers(min_value=0, max_value=40 * 60))
def test_random_person_commands_never_break_the_run(
    script: list[tuple[int, BatchCommand, str]], down_at: int | None
) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_random_run(script, down_at))
    finally:
        loop.close()


# -- review 3: fail-safe behaviour ---------------------------------------------------------


async def test_an_unexpected_driver_error_in_the_monitor_holds(rig: Rig) -> None:
    tank = rig.devices["tank"]
    boom = [RuntimeError("driver bug: unexpected reply")]

    async def read(signals: Sequence[str]) -> dict[str, Value]:
        if boom and "status" in signals:  # the monitor's check
            raise boom.pop()
        return await FakeDevice.read(tank, signals)

    tank.read = read  # type: ignore[method-assign]
    executor = rig.make(make_procedure(LONG), monitor_period=MIN)
    run = start(executor)
    assert await executor.wait_for(S.Held) is S.Held
    deviation = rig.kinds(EntryKind.DEVIATION)[0]
    assert deviation.device == "tank" and deviation.payload["error_type"] == "RuntimeError"
    hold = next(e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Holding")
    assert hold.actor == "system" and "driver bug" in str(hold.payload["reason"])
    # The monitor lives on: after the restart, a value out of band still holds.
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Running)
    assert executor._monitor is not None and not executor._monitor.task.done()  # type: ignore[union-attr]
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


async def test_a_monitor_that_ends_while_the_batch_runs_holds(rig: Rig) -> None:
    executor = rig.make(make_procedure(LONG), monitor_period=MIN)

    async def dies(worker: Any) -> None:
        await rig.clock.sleep(MIN)
        raise AssertionError("monitor bug")

    executor._monitor_loop = dies  # type: ignore[method-assign]
    run = start(executor)
    assert await executor.wait_for(S.Held) is S.Held
    deviation = rig.kinds(EntryKind.DEVIATION)[0]
    assert deviation.payload["deviation"] == "monitor ended"
    assert "monitor bug" in str(deviation.payload["message"])
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


class InterlockJournalFails(MemoryJournal):
    def append(self, entry: JournalEntry) -> None:
        if entry.kind is EntryKind.INTERLOCK:
            raise OSError("database or disk is full")
        super().append(entry)


async def test_a_journal_failure_on_a_trip_still_holds(rig: Rig) -> None:
    rig.journal = InterlockJournalFails()
    band = Interlock("heater.temperature", low=30, high=40, delay=0)
    executor = rig.make(make_procedure(LONG), interlocks=[band], monitor_period=MIN)
    rig.devices["heater"].memory.values["temperature"] = 35.0
    run = start(executor)
    await rig.clock.sleep_until(10 * MIN + 1)
    rig.devices["heater"].memory.values["temperature"] = 80.0
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == 11 * MIN
    assert rig.devices["tank"].safe_states == [SafeAction.HOLD]
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


class HoldingJournalFails(MemoryJournal):
    def append(self, entry: JournalEntry) -> None:
        if entry.kind is EntryKind.BATCH_STATE and entry.payload.get("new") == "Holding":
            raise OSError("disk full")
        super().append(entry)


async def test_a_journal_failure_on_a_transition_still_interrupts(rig: Rig) -> None:
    rig.journal = HoldingJournalFails()
    executor = rig.make(make_procedure(LONG))
    run = start(executor)
    await rig.clock.sleep(MIN)
    executor.command(C.Hold, actor="alice")
    # The 2 h wait is interrupted at once although the Holding entry could not be written.
    assert await executor.wait_for(S.Held) is S.Held
    assert rig.clock.now() == MIN
    assert rig.step_ends() == [("soak", "interrupted")]
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


async def test_stop_while_holding_still_runs_the_hold_safe_states(rig: Rig) -> None:
    text = WAITS.replace(
        "      - {id: w2, wait: 10 min}\n",
        "      - {id: w2, wait: 10 min}\n    rules:\n"
        "      - {id: r, every: 30 min, command: tank.mix, args: {seconds: 600}}\n",
    )
    executor = rig.make(make_procedure(text))
    run = start(executor)
    loop = asyncio.get_running_loop()
    hold = loop.create_task(at(rig.clock, MIN, lambda: executor.command(C.Hold, actor="alice")))
    stop = loop.create_task(at(rig.clock, 2 * MIN, lambda: executor.command(C.Stop, actor="bob")))
    assert await run is S.Stopped
    await asyncio.gather(hold, stop)
    assert rig.states() == ["Running", "Holding", "Stopping", "Stopped"]
    assert rig.devices["tank"].safe_states == [SafeAction.HOLD]
    assert rig.devices["heater"].safe_states == [SafeAction.HOLD]


class SlowRead(FakeDevice):
    async def read(self, signals: Sequence[str]) -> dict[str, Value]:
        await self.clock.sleep(5)  # a slow link: the reply takes 5 s
        return await super().read(signals)


SLOW_ARG = """\
procedure: slow
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: w, wait: 1 min}
"""


@pytest.mark.parametrize(
    "step",
    [
        '      - {id: feed, command: tank.dose, args: {volume_ml: "=heater.setpoint"}}\n',
        '      - {id: warm, set: tank.setpoint, value: "=heater.temperature"}\n',
    ],
)
async def test_a_hold_while_arguments_are_read_sends_nothing(step: str) -> None:
    clock = VirtualClock(epoch=EPOCH)
    devices = {"tank": FakeDevice("tank", clock), "heater": SlowRead("heater", clock)}
    for device in devices.values():
        await device.connect()
    rig = Rig(clock, devices)
    try:
        executor = rig.make(make_procedure(SLOW_ARG + step), monitor_period=3600)
        run = start(executor)
        hold = at(clock, MIN + 2, lambda: executor.command(C.Hold, actor="alice"))
        asyncio.get_running_loop().create_task(hold)
        await executor.wait_for(S.Held)
        sent = [e for e in rig.kinds(EntryKind.COMMAND) if e.payload.get("method") != "safe_state"]
        assert sent == [] and devices["tank"].calls == []
        assert devices["tank"].memory.values["setpoint"] == 20.0
        executor.command(C.Abort, actor="alice")
        assert await run is S.Aborted
    finally:
        await close_rig(rig)


async def test_an_unexpected_error_in_the_restart_check_holds_again(rig: Rig) -> None:
    executor = rig.make(make_procedure(LONG), monitor_period=3600)
    run = start(executor)
    await rig.clock.sleep(MIN)
    executor.command(C.Hold, actor="alice")
    await executor.wait_for(S.Held)
    tank = rig.devices["tank"]

    def as_status(value: Value) -> Any:
        raise ValueError("unexpected status word 0x7fff")

    tank.as_status = as_status  # type: ignore[method-assign]
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    deviation = rig.kinds(EntryKind.DEVIATION)[-1]
    assert deviation.payload["error_type"] == "ValueError"
    executor.command(C.Abort, actor="alice")
    assert await run is S.Aborted


async def test_a_second_cancel_during_shutdown_leaves_no_task_behind(rig: Rig) -> None:
    text = WAITS.replace(
        "      - {id: w2, wait: 10 min}\n",
        "      - {id: w2, wait: 10 min}\n    rules:\n"
        "      - {id: r, every: 30 min, command: tank.mix, args: {seconds: 600}}\n",
    )
    executor = rig.make(make_procedure(text))
    run = start(executor)
    await rig.clock.sleep(MIN)  # the rule's mix is in flight
    run.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    workers = ("flexctl-monitor", "flexctl-rule", "flexctl-step")
    alive = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
    assert [name for name in alive if name.startswith(workers)] == []


ONE_DOSE = """\
procedure: seed
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: seed, command: tank.dose, args: {volume_ml: 50}}
      - {id: after, wait: 1 min}
"""


class LostReply(FakeDevice):
    lost = 1

    async def dose(self, volume_ml: float) -> Dosed:
        result = await super().dose(volume_ml)
        if self.lost:
            self.lost -= 1
            raise CommunicationTimeout(self.name, "dose", 5.0)
        return result


async def _lost_reply_rig() -> tuple[Rig, LostReply]:
    clock = VirtualClock(epoch=EPOCH)
    tank = LostReply("tank", clock)
    devices = {"tank": tank, "heater": FakeDevice("heater", clock)}
    for device in devices.values():
        await device.connect()
    return Rig(clock, devices), tank


@pytest.mark.parametrize("decision", ["resend", "done"])
async def test_a_command_of_unknown_outcome_is_not_resent_without_a_decision(
    decision: str,
) -> None:
    rig, tank = await _lost_reply_rig()
    try:
        executor = rig.make(make_procedure(ONE_DOSE))
        run = start(executor)
        await executor.wait_for(S.Held)
        with pytest.raises(CommandRefused):
            executor.command(C.Hold, actor="alice", resolve="done")
        # A plain restart does not send the dose again: a person must decide.
        executor.command(C.Restart, actor="alice")
        await executor.wait_for(S.Restarting)
        assert await executor.wait_for(S.Held) is S.Held
        assert len(tank.calls) == 1
        unknown = rig.kinds(EntryKind.DEVIATION)[-1]
        assert "outcome of seed unknown: a person must decide" in str(unknown.payload["message"])
        executor.command(C.Restart, actor="bob", reason="checked the scale", resolve=decision)
        assert await run is S.Complete
        decided = next(
            e for e in rig.kinds(EntryKind.DEVIATION) if e.payload.get("decision") == decision
        )
        assert decided.actor == "bob" and decided.step == "seed"
        assert len(tank.calls) == (2 if decision == "resend" else 1)
        assert rig.step_ends()[-2:] == [("seed", "done"), ("after", "done")]
        with pytest.raises(CommandRefused):  # nothing left to resolve
            executor.command(C.Restart, actor="bob", resolve="resend")
    finally:
        await close_rig(rig)


async def test_restart_rechecks_band_interlocks(rig: Rig) -> None:
    band = Interlock("heater.temperature", low=15, high=30, delay=0, name="heater temp")
    executor = rig.make(make_procedure(LONG), interlocks=[band], monitor_period=MIN)
    values = rig.devices["heater"].memory.values
    run = start(executor)
    await rig.clock.sleep_until(5 * MIN + 1)
    values["temperature"] = 40.0
    await executor.wait_for(S.Held)
    executor.command(C.Restart, actor="alice")  # still out of band
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    still = [e for e in rig.kinds(EntryKind.INTERLOCK) if "at restart" in str(e.payload)]
    assert len(still) == 1 and still[0].payload["value"] == 40.0
    values["temperature"] = 20.0
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete


async def test_a_failed_safe_state_is_named_and_retried_at_restart(rig: Rig) -> None:
    executor = rig.make(make_procedure(WAITS))
    tank = rig.devices["tank"]
    tank.safe_state_error = DeviceBusyError("tank: pump jammed")
    run = start(executor)
    await rig.clock.sleep(MIN)
    executor.command(C.Hold, actor="alice")
    await executor.wait_for(S.Held)
    held = next(e for e in rig.kinds(EntryKind.BATCH_STATE) if e.payload.get("new") == "Held")
    assert "safe state FAILED for tank" in str(held.payload["reason"])
    # Still failing: the restart is refused, naming the device.
    executor.command(C.Restart, actor="alice")
    await executor.wait_for(S.Restarting)
    assert await executor.wait_for(S.Held) is S.Held
    deviations = rig.kinds(EntryKind.DEVIATION)
    refused = next(e for e in deviations if e.payload["deviation"] == "restart refused")
    assert refused.device == "tank" and "tank" in str(refused.payload["message"])
    # the retry at restart, then the hold safe states of the new hold
    assert tank.safe_states == [SafeAction.HOLD] * 3
    # Fixed: the retry passes and the batch runs on.
    tank.safe_state_error = None
    executor.command(C.Restart, actor="alice")
    assert await run is S.Complete
    assert tank.safe_states == [SafeAction.HOLD] * 4
