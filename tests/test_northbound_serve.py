"""``serve_batch`` from start to end, a line of twins behind the server, and signing lockout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError
from test_executor import EPOCH, close_rig, make_procedure, open_rig
from test_northbound_server import (
    TIMEOUT,
    USERS,
    add_users,
    call,
    code_of,
    prompt_waiting,
    read,
    serving,
    session,
)

from flexctl.clock import VirtualClock
from flexctl.line import shipped_line
from flexctl.line_runtime import LineRuntime
from flexctl.northbound import NorthboundPrompter, SupervisorServer, serve_batch
from flexctl.northbound.view import describe_drivers
from flexctl.record.signing import Signatures
from flexctl.record.sqlite_store import SqliteStore
from flexctl.supervisor.batch_state import BatchState

ONE_STEP = """\
procedure: one
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: ok, prompt: Confirm the bag is closed, role: operator}
      - {id: dose, command: tank.dose, args: {volume_ml: 2}}
"""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


async def test_serve_batch_serves_until_the_run_started_by_a_client_ends(
    tmp_path: Path, pki: Path
) -> None:
    rig = await open_rig(VirtualClock(epoch=EPOCH))
    store = SqliteStore(tmp_path / "x.db")
    try:
        add_users(store)
        prompter = NorthboundPrompter(Signatures(store, rig.clock))
        executor = rig.make(make_procedure(ONE_STEP), prompter=prompter, monitor_period=3600)
        listening: asyncio.Future[SupervisorServer] = asyncio.get_running_loop().create_future()
        served = asyncio.get_running_loop().create_task(
            serve_batch(
                executor,
                store,
                line=lambda: describe_drivers(rig.devices, "twin"),
                certificate_dir=pki,
                allow_insecure_loopback=True,
                ready=listening.set_result,
            )
        )
        server = await asyncio.wait_for(listening, TIMEOUT)
        async with session(server.endpoint, "op1", USERS["op1"][1]) as client:
            assert await read(client, "Devices.tank.Origin") == "twin"
            await call(client, "Start")
            await prompt_waiting(prompter, "ok")
            await call(client, "AnswerPrompt", "ok", True, USERS["op1"][1])
            assert await asyncio.wait_for(served, TIMEOUT) is BatchState.Complete
        assert server.endpoint and executor.journal is rig.journal  # given back
    finally:
        await close_rig(rig)
        store.close()


async def test_a_signing_session_locks_after_three_wrong_passwords(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki) as served:
        async with session(served.server.endpoint, "op1", USERS["op1"][1]) as client:
            await call(client, "Start")
            await prompt_waiting(served.prompter, "scan_bag")
            for _ in range(3):
                with pytest.raises(UaStatusCodeError) as refused:
                    await call(client, "AnswerPrompt", "scan_bag", "BAG-0001", "wrong")
                assert code_of(refused.value) == "BadUserAccessDenied"
            with pytest.raises(UaStatusCodeError):  # locked, even with the right password
                await call(client, "AnswerPrompt", "scan_bag", "BAG-0001", USERS["op1"][1])
        actions = [e.record.action for e in served.store.audit_entries()]
        assert actions.count("signature refused") == 4 and "session locked" in actions
        # A new session (the person logs in again) signs.
        async with session(served.server.endpoint, "op1", USERS["op1"][1]) as client:
            await call(client, "AnswerPrompt", "scan_bag", "BAG-0001", USERS["op1"][1])
        await prompt_waiting(served.prompter, "release")


async def test_a_line_of_twins_shows_its_devices_and_the_values_given(
    tmp_path: Path, pki: Path
) -> None:
    clock = VirtualClock(epoch=EPOCH)
    store = SqliteStore(tmp_path / "x.db")
    try:
        add_users(store)
        async with (
            LineRuntime(shipped_line("sim"), clock, seed=3) as runtime,
            SupervisorServer(
                runtime, None, store, certificate_dir=pki, allow_insecure_loopback=True
            ) as server,
            session(server.endpoint, "sup1", USERS["sup1"][1]) as client,
        ):
            ns = await client.get_namespace_index("urn:flexctl:northbound")
            devices = client.get_node(ua.NodeId(ua.String("Line.Devices"), ua.Int16(ns)))
            names = {(await d.read_browse_name()).Name for d in await devices.get_children()}
            assert names == {"bioreactor", "processor", "thaw", "freezer"}
            assert await read(client, "Name") == "sim"
            assert await read(client, "Devices.bioreactor.Transport") == "opcua"
            assert await read(client, "Devices.bioreactor.Origin") == "twin"
            assert await read(client, "Devices.freezer.Link") == "connected"
            temperature = client.get_node(
                ua.NodeId(ua.String("Line.Devices.bioreactor.Values.temperature"), ua.Int16(ns))
            )
            before = await temperature.read_data_value(raise_on_bad_status=False)
            assert before.StatusCode is not None
            assert before.StatusCode.name == "BadWaitingForInitialData"  # declared, not read yet
            reading = await runtime.drivers["bioreactor"].read(["temperature", "status"])
            server.update_devices({"bioreactor": reading})
            await server.publish()
            assert await temperature.read_value() == reading["temperature"]
            assert await read(client, "Devices.bioreactor.Status") == "IDLE"
            assert await read(client, "Batch.State") == ""
            with pytest.raises(UaStatusCodeError) as refused:
                await call(client, "Hold")
            assert code_of(refused.value) == "BadInvalidState"  # no batch loaded
    finally:
        await clock.aclose()
        store.close()
