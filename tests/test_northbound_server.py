"""The supervisor's OPC UA server, end to end: a real Executor on fake devices, a real client.

The executor runs on a VirtualClock over the fake drivers of test_executor;
the server listens on a free loopback port, and an asyncua Client logs in
with users of a SQLite store. Most tests use the loopback endpoint without
message security (allowed explicitly); test_northbound_security covers
Basic256Sha256 SignAndEncrypt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaStatusCodeError
from test_executor import EPOCH, Rig, close_rig, make_procedure, open_rig

from flexctl.clock import VirtualClock
from flexctl.northbound import NorthboundPrompter, SupervisorServer
from flexctl.northbound.address_space import NAMESPACE
from flexctl.northbound.view import describe_drivers
from flexctl.record.signing import Signatures
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import AuditRecord
from flexctl.record.users import BOOTSTRAP, add_user
from flexctl.supervisor.alarm_defs import AlarmDefinition, AlarmKind, AlarmPriority
from flexctl.supervisor.alarms import AlarmMonitor
from flexctl.supervisor.batch_state import BatchState
from flexctl.supervisor.executor import Executor
from tests.record_fakes import CHEAP, FakeStore

S = BatchState

PROCEDURE = """\
procedure: northbound
version: "1"
unit_procedures:
  - name: thaw
    steps:
      - id: scan_bag
        prompt: Scan the bag
        entry: {type: text, pattern: "^BAG-[0-9]{4}$"}
        role: operator
      - {id: dose1, command: tank.dose, args: {volume_ml: 5}}
      - {id: release, prompt: Release the thawed bag, role: qa, meaning: approved}
"""

#: user id -> (roles, password)
USERS: dict[str, tuple[tuple[str, ...], str]] = {
    "qa1": (("qa",), "qa-password-1"),
    "op1": (("operator",), "op-password-1"),
    "sup1": (("supervisor",), "sup-password-1"),
}
TIMEOUT = 10.0  # seconds: a bound on network readiness, never a wait in the logic


def add_users(store: SqliteStore) -> None:
    for user_id, (roles, password) in USERS.items():
        actor = BOOTSTRAP if user_id == "qa1" else "qa1"
        add_user(
            store,
            user_id,
            f"Person {user_id}",
            roles,
            password,
            actor=actor,
            reason="test",
            cost=CHEAP,
        )


@dataclass
class Served:
    server: SupervisorServer
    executor: Executor
    prompter: NorthboundPrompter
    store: SqliteStore
    rig: Rig

    def audits(self, action: str) -> list[AuditRecord]:
        return [e.record for e in self.store.audit_entries() if e.record.action == action]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificate folder for the session: the server's key is made once."""
    return tmp_path_factory.mktemp("pki")


@asynccontextmanager
async def serving(
    tmp_path: Path,
    pki: Path,
    *,
    insecure: bool = True,
    alarms: AlarmMonitor | None = None,
    procedure: str = PROCEDURE,
    **options: Any,
) -> AsyncIterator[Served]:
    rig = await open_rig(VirtualClock(epoch=EPOCH))
    store = SqliteStore(tmp_path / "x.db")
    try:
        add_users(store)
        prompter = NorthboundPrompter(Signatures(store, rig.clock))
        executor = rig.make(make_procedure(procedure), prompter=prompter, monitor_period=3600)
        server = SupervisorServer(
            lambda: describe_drivers(rig.devices),
            executor,
            store,
            certificate_dir=pki,
            allow_insecure_loopback=insecure,
            alarms=alarms,
            **options,
        )
        async with server:
            yield Served(server, executor, prompter, store, rig)
    finally:
        await close_rig(rig)
        store.close()


@asynccontextmanager
async def session(url: str, user: str | None, password: str = "") -> AsyncIterator[Client]:
    client = Client(url, timeout=TIMEOUT)
    if user is not None:
        client.set_user(user)
        client.set_password(password)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


def login(served: Served, user: str) -> Any:
    return session(served.server.endpoint, user, USERS[user][1])


async def batch_node(client: Client) -> tuple[int, Any]:
    ns = await client.get_namespace_index(NAMESPACE)
    return ns, client.get_node(ua.NodeId(ua.String("Line.Batch"), ua.Int16(ns)))


async def read(client: Client, path: str) -> Any:
    ns = await client.get_namespace_index(NAMESPACE)
    return await client.get_node(ua.NodeId(ua.String(f"Line.{path}"), ua.Int16(ns))).read_value()


async def call(client: Client, method: str, *args: Any) -> str:
    """Call a Batch method; raises the UaStatusCodeError of a Bad result."""
    ns, batch = await batch_node(client)
    result: str = await batch.call_method(f"{ns}:{method}", *args)
    return result


async def call_raw(client: Client, method: str, *args: ua.Variant) -> ua.CallMethodResult:
    """Call a Batch method and return its result as sent, Bad code and message included."""
    ns = await client.get_namespace_index(NAMESPACE)
    request = ua.CallMethodRequest(
        ObjectId=ua.NodeId(ua.String("Line.Batch"), ua.Int16(ns)),
        MethodId=ua.NodeId(ua.String(f"Line.Batch.{method}"), ua.Int16(ns)),
        InputArguments=list(args),
    )
    (result,) = await client.uaclient.call([request])
    return result


def code_of(exc: UaStatusCodeError) -> str:
    return ua.StatusCode(exc.code).name


async def prompt_waiting(prompter: NorthboundPrompter, step: str) -> None:
    """Until ``step``'s prompt waits (woken by the prompter, no polling)."""
    changed = asyncio.Event()
    unsubscribe = prompter.on_change(changed.set)
    try:
        async with asyncio.timeout(TIMEOUT):
            while step not in [p.step for p in prompter.pending()]:
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()


async def started(served: Served, user: str = "op1") -> None:
    async with login(served, user) as client:
        assert await call(client, "Start") == "Start: Idle -> Running"
    await prompt_waiting(served.prompter, "scan_bag")


# -- logging in -------------------------------------------------------------------------


async def test_an_anonymous_session_is_refused(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served:
        with pytest.raises(UaStatusCodeError) as refused:
            async with session(served.server.endpoint, None):
                pass
        assert code_of(refused.value) == "BadIdentityTokenRejected"


async def test_a_wrong_password_is_refused_and_audited(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served:
        with pytest.raises(UaStatusCodeError) as refused:
            async with session(served.server.endpoint, "op1", "not-the-password"):
                pass
        assert code_of(refused.value) == "BadUserAccessDenied"
        (audit,) = served.audits("authentication refused")
        assert audit.actor == "op1" and audit.reason == "wrong password for 'op1'"
        assert "not-the-password" not in repr(served.store.audit_entries())


async def test_a_disabled_user_cannot_log_in(tmp_path: Path, pki: Path) -> None:
    from flexctl.record.users import disable_user

    async with serving(tmp_path, pki) as served:
        disable_user(served.store, "op1", actor="qa1", reason="left the company")
        with pytest.raises(UaStatusCodeError):
            async with login(served, "op1"):
                pass
        assert served.audits("authentication refused")[-1].reason == "user 'op1' is disabled"


# -- the address space -------------------------------------------------------------------


async def test_the_line_its_devices_and_the_batch_can_be_browsed(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served, login(served, "op1") as client:
        ns = await client.get_namespace_index(NAMESPACE)
        line = await client.nodes.objects.get_child(f"{ns}:Line")

        async def names(node: Any) -> list[str]:
            return sorted([(await c.read_browse_name()).Name for c in await node.get_children()])

        assert await names(line) == ["Batch", "Devices", "Name"]
        devices = await line.get_child(f"{ns}:Devices")
        assert await names(devices) == ["heater", "tank"]
        tank = await devices.get_child(f"{ns}:tank")
        assert await names(tank) == [
            "Alarms", "Driver", "Link", "Origin", "Profile", "Source", "Status", "Transport",
        ]  # fmt: skip
        assert await read(client, "Devices.tank.Driver") == "fake"
        assert await read(client, "Devices.tank.Link") == "connected"
        assert await read(client, "Devices.tank.Status") == "UNKNOWN"
        batch = await line.get_child(f"{ns}:Batch")
        assert await names(batch) == sorted(
            [
                "BatchId", "Procedure", "State", "PackMLState", "AllowedCommands",
                "UnitProcedure", "Step", "Runtime", "PendingPrompts", "ActiveAlarms",
                "Start", "Pause", "Resume", "Hold", "Restart", "Stop", "Abort", "Reset",
                "AcknowledgeAlarm", "ShelveAlarm", "AnswerPrompt",
            ]
        )  # fmt: skip
        assert await read(client, "Batch.State") == "Idle"
        assert await read(client, "Batch.PackMLState") == 4
        assert await read(client, "Batch.AllowedCommands") == ["Start"]
        assert await read(client, "Batch.BatchId") == "B-001"
        assert await read(client, "Batch.Procedure") == "northbound 1"
        assert await read(client, "Batch.PendingPrompts") == []
        inputs = await (await batch.get_child(f"{ns}:AnswerPrompt")).get_child("0:InputArguments")
        assert [a.Name for a in await inputs.read_value()] == ["Step", "Value", "Password"]


async def test_clients_cannot_write_the_variables(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served, login(served, "qa1") as client:
        ns = await client.get_namespace_index(NAMESPACE)
        state = client.get_node(ua.NodeId(ua.String("Line.Batch.State"), ua.Int16(ns)))
        with pytest.raises(UaStatusCodeError):
            await state.write_value(ua.DataValue(ua.Variant("Complete", ua.VariantType.String)))
        assert await state.read_value() == "Idle"


async def test_device_values_come_from_the_cache_never_from_the_device(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served, login(served, "op1") as client:
        tank = served.rig.devices["tank"].memory
        served.server.update_devices({"tank": {"level": 12.5, "status": "busy"}})
        await served.server.publish()
        reads = tank.reads
        for _ in range(3):
            assert await read(client, "Devices.tank.Values.level") == 12.5
        assert await read(client, "Devices.tank.Status") == "BUSY"
        assert tank.reads == reads  # three client reads, no device read
        served.server.update_devices({"tank": {"level": 13}})  # an int into a Double
        await served.server.publish()
        assert await read(client, "Devices.tank.Values.level") == 13.0


# -- batch commands and roles ------------------------------------------------------------------


async def test_hold_as_operator_abort_refused_for_operator_then_abort_as_qa(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served:
        await started(served)
        async with login(served, "op1") as client:
            assert await read(client, "Batch.State") == "Running"
            assert await read(client, "Batch.Step") == "scan_bag"
            assert await read(client, "Batch.UnitProcedure") == "thaw"
            (text,) = await read(client, "Batch.PendingPrompts")
            assert text.startswith("scan_bag: Scan the bag | operator, performed")

            assert await call(client, "Hold", "bag clamp check") == "Hold: Running -> Holding"
            async with asyncio.timeout(TIMEOUT):
                await served.executor.wait_for(S.Held)
            assert await read(client, "Batch.PendingPrompts") == []  # the hold took it away

            with pytest.raises(UaStatusCodeError) as refused:
                await call(client, "Abort", "operator tries")
            assert code_of(refused.value) == "BadUserAccessDenied"
            assert served.executor.state is S.Held
        (audit,) = served.audits("access refused")
        assert (audit.actor, audit.object) == ("op1", "opcua:Abort")
        assert audit.batch == "B-001"

        async with login(served, "qa1") as client:
            assert await call(client, "Abort", "bag damaged") == "Abort: Held -> Aborting"
            async with asyncio.timeout(TIMEOUT):
                await served.executor.wait_for(S.Aborted)
            await served.server.publish()
            assert await read(client, "Batch.State") == "Aborted"
            assert await read(client, "Batch.PackMLState") == 9
        calls = served.audits("opcua call")
        assert [(a.actor, a.object, a.old_value, a.new_value) for a in calls] == [
            ("op1", "opcua:Start", {"state": "Idle"}, {"state": "Running"}),
            ("op1", "opcua:Hold", {"state": "Running"}, {"state": "Holding"}),
            ("qa1", "opcua:Abort", {"state": "Held"}, {"state": "Aborting"}),
        ]
        assert calls[2].reason == "bag damaged" and calls[2].batch == "B-001"
        journaled = [
            (e.actor, e.payload.get("new"), e.payload.get("reason"))
            for e in served.rig.journal.entries()
            if e.payload.get("command") in ("Hold", "Abort")
        ]
        assert journaled == [
            ("op1", "Holding", "bag clamp check"),
            ("qa1", "Aborting", "bag damaged"),
        ]


async def test_an_illegal_command_is_bad_invalid_state_with_the_reason(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served, login(served, "sup1") as client:
        result = await call_raw(client, "Resume")
        assert ua.StatusCode(result.StatusCode.value).name == "BadInvalidState"
        (message,) = [v.Value for v in result.OutputArguments]
        assert message == "Resume is not allowed while the batch is Idle (allowed: Start)"
        (audit,) = served.audits("opcua call refused")
        assert audit.actor == "sup1" and audit.reason == message


async def test_arguments_are_checked(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served, login(served, "qa1") as client:
        cases = {
            "BadArgumentsMissing": await call_raw(client, "Abort"),
            "BadTooManyArguments": await call_raw(client, "Hold", ua.Variant("a"), ua.Variant("b")),
            "BadTypeMismatch": await call_raw(client, "Hold", ua.Variant(3.0)),
            "BadInvalidArgument": await call_raw(client, "Abort", ua.Variant("  ")),
        }
        for status, result in cases.items():
            assert ua.StatusCode(result.StatusCode.value).name == status
        assert served.executor.state is S.Idle


# -- prompts -----------------------------------------------------------------------------------


async def test_a_prompt_answered_with_the_right_password_lets_the_batch_go_on(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served:
        await started(served)
        async with login(served, "op1") as client:
            with pytest.raises(UaStatusCodeError) as refused:
                await call(client, "AnswerPrompt", "scan_bag", "BAG-0042", "wrong-password")
            assert code_of(refused.value) == "BadUserAccessDenied"
            assert [p.step for p in served.prompter.pending()] == ["scan_bag"]  # still waiting
            (audit,) = served.audits("signature refused")
            assert audit.actor == "op1" and audit.reason == "wrong password for 'op1'"

            result = await call_raw(
                client, "AnswerPrompt", ua.Variant("scan_bag"), ua.Variant("bag 42"),
                ua.Variant(USERS["op1"][1]),
            )  # fmt: skip
            assert ua.StatusCode(result.StatusCode.value).name == "BadInvalidArgument"
            assert "does not match" in result.OutputArguments[0].Value

            text = await call(client, "AnswerPrompt", "scan_bag", "BAG-0042", USERS["op1"][1])
            assert text.startswith("scan_bag: signed by Person op1 (op1)")
        await prompt_waiting(served.prompter, "release")
        assert served.executor.results["scan_bag"] == {"value": "BAG-0042", "signer": "op1"}
        assert served.executor.results["dose1"]["total_ml"] == 5.0
        (signed,) = served.audits("signed")
        assert signed.actor == "op1" and signed.object == "prompt:thaw/scan_bag"

        async with login(served, "op1") as client:  # a QA prompt: not for an operator
            with pytest.raises(UaStatusCodeError) as refused:
                await call(client, "AnswerPrompt", "release", True, USERS["op1"][1])
            assert code_of(refused.value) == "BadUserAccessDenied"
        assert served.audits("access refused")[-1].reason.startswith("prompt release asks for qa")
        async with login(served, "qa1") as client:
            await call(client, "AnswerPrompt", "release", True, USERS["qa1"][1])
        async with asyncio.timeout(TIMEOUT):
            await served.executor.wait_for(S.Complete)
        signatures = [e for e in served.rig.journal.entries() if e.kind.value == "signature"]
        assert [(e.step, e.actor, e.payload["simulated"]) for e in signatures] == [
            ("scan_bag", "op1", False),
            ("release", "qa1", False),
        ]
        assert [s.user_id for s in served.prompter.signed] == ["op1", "qa1"]


async def test_no_prompt_of_that_step_is_bad_not_found(tmp_path: Path, pki: Path) -> None:
    async with serving(tmp_path, pki) as served, login(served, "op1") as client:
        result = await call_raw(
            client, "AnswerPrompt", ua.Variant("scan_bag"), ua.Variant("BAG-0001"),
            ua.Variant(USERS["op1"][1]),
        )  # fmt: skip
        assert ua.StatusCode(result.StatusCode.value).name == "BadNotFound"


# -- alarms ------------------------------------------------------------------------------------


def temperature_alarm() -> AlarmMonitor:
    definition = AlarmDefinition(
        name="TAH-101",
        signal="heater.temperature",
        kind=AlarmKind.High,
        limit=37.5,
        priority=AlarmPriority.High,
        message="Culture temperature high",
    )
    return AlarmMonitor([definition])


async def test_alarms_are_acknowledged_by_an_operator_and_shelved_by_a_supervisor(
    tmp_path: Path, pki: Path
) -> None:
    monitor = temperature_alarm()
    async with serving(tmp_path, pki, alarms=monitor) as served:
        monitor.update({"heater.temperature": 38.0}, served.rig.clock.now())
        served.server.refresh()
        await served.server.publish()
        async with login(served, "op1") as client:
            assert await read(client, "Batch.ActiveAlarms") == [
                "TAH-101 [High] Unacknowledged: Culture temperature high"
            ]
            text = await call(client, "AcknowledgeAlarm", "TAH-101", "seen, heater checked")
            assert text == "TAH-101: Unacknowledged -> Acknowledged"
            with pytest.raises(UaStatusCodeError) as refused:
                await call(client, "ShelveAlarm", "TAH-101", "nuisance", 600.0)
            assert code_of(refused.value) == "BadUserAccessDenied"
            result = await call_raw(
                client, "AcknowledgeAlarm", ua.Variant("TAH-999"), ua.Variant("why")
            )
            assert ua.StatusCode(result.StatusCode.value).name == "BadNotFound"
        async with login(served, "sup1") as client:
            text = await call(client, "ShelveAlarm", "TAH-101", "probe swap", 600.0)
            assert text.startswith("TAH-101: Acknowledged -> Shelved until ")
            assert await read(client, "Batch.ActiveAlarms") == []
        acts = [(a.actor, a.object, a.new_value) for a in served.audits("opcua call")]
        assert acts[0] == (
            "op1",
            "opcua:AcknowledgeAlarm",
            {"alarm": "TAH-101", "state": "Acknowledged"},
        )
        assert acts[1][:2] == ("sup1", "opcua:ShelveAlarm")
        assert isinstance(acts[1][2], dict) and acts[1][2]["state"] == "Shelved"


async def test_the_batchs_own_alarms_are_acknowledged_through_its_executor_and_journaled(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served:  # no monitor given: the executor's own
        served.executor.alarms = temperature_alarm()
        served.executor.alarms.update({"heater.temperature": 38.0}, served.rig.clock.now())
        served.server.refresh()
        await served.server.publish()
        async with login(served, "op1") as client:
            assert await read(client, "Batch.ActiveAlarms") == [
                "TAH-101 [High] Unacknowledged: Culture temperature high"
            ]
            await call(client, "AcknowledgeAlarm", "TAH-101", "seen, heater checked")
        journaled = [e for e in served.rig.journal.entries() if e.payload.get("alarm") == "TAH-101"]
        assert [(e.actor, e.payload["event"], e.payload["reason"]) for e in journaled] == [
            ("op1", "Acknowledge", "seen, heater checked")
        ]


# -- lifecycle ---------------------------------------------------------------------------------


async def test_stopping_the_server_gives_the_executor_its_sinks_back(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served:
        journal = served.executor.journal
        assert journal is not served.rig.journal  # tapped while served
    assert served.executor.journal is served.rig.journal
    assert served.executor.historian is None


def test_insecure_endpoints_are_for_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback hosts only"):
        SupervisorServer(
            {},
            None,
            FakeStore(),
            certificate_dir=tmp_path,
            endpoint="opc.tcp://0.0.0.0:4840/flexctl",
            allow_insecure_loopback=True,
        )


async def test_a_subscription_sees_each_state_change(tmp_path: Path, pki: Path) -> None:
    changes: asyncio.Queue[str] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node: Any, value: str, data: Any) -> None:
            changes.put_nowait(value)

    async with serving(tmp_path, pki) as served, login(served, "op1") as client:
        ns = await client.get_namespace_index(NAMESPACE)
        state = client.get_node(ua.NodeId(ua.String("Line.Batch.State"), ua.Int16(ns)))
        subscription = await client.create_subscription(20, Handler())
        await subscription.subscribe_data_change(state)

        async def next_state() -> str:
            return await asyncio.wait_for(changes.get(), TIMEOUT)

        assert await next_state() == "Idle"
        await call(client, "Start")
        seen = [await next_state()]
        await call(client, "Hold")
        async with asyncio.timeout(TIMEOUT):
            await served.executor.wait_for(S.Held)
        while seen[-1] != "Held":
            seen.append(await next_state())
        assert seen[0] == "Running" and seen[-1] == "Held"
        await subscription.delete()
