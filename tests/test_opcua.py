"""OPC UA beyond the shared contract: batching, typed writes, profiles, security, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import cert_gen
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, ObjectIdentifier, UniformResourceIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID

from flexctl.clock import Clock, VirtualClock
from flexctl.errors import (
    CommunicationTimeout,
    ConfigurationError,
    DeviceBusyError,
    NotConnectedError,
    OutOfRangeError,
    ProtocolError,
    Where,
)
from flexctl.profile import Profile, Value, parse_profile
from flexctl.resources import shipped_profile
from flexctl.transports.base import ConnectionState, Transport, TransportOptions
from flexctl.transports.opcua import OpcUaTransport
from flexctl.transports.opcua_types import variant_type_of
from flexctl.transports.registry import check_profile, create_transport
from flexctl.yamlpos import load_text, require_mapping
from simulators.models.base import UnknownTagError
from simulators.models.demo import CHANNELS, DemoModel
from simulators.servers.opcua_server import OpcUaTwinServer

OPTIONS = TransportOptions(timeout=0.5, connect_timeout=2.0, backoff_initial=0.2, backoff_max=2.0)
RECOVER_S = 15.0  # wall seconds a test may wait for a link to come back; never a sleep

ALL_TYPES = """\
device: types
transport: opcua
signals:
  b:   {node: "ns=2;s=Types.Bool", type: bool, writable: true}
  i16: {node: "ns=2;s=Types.Int16", type: int16, writable: true}
  u16: {node: "ns=2;s=Types.UInt16", type: uint16, writable: true}
  i32: {node: "ns=2;s=Types.Int32", type: int32, writable: true}
  u32: {node: "ns=2;s=Types.UInt32", type: uint32, writable: true}
  i64: {node: "ns=2;s=Types.Int64", type: int64, writable: true}
  u64: {node: "ns=2;s=Types.UInt64", type: uint64, writable: true}
  f32: {node: "ns=2;s=Types.Float", type: float32, writable: true}
  f64: {node: "ns=2;s=Types.Double", type: float64, writable: true}
  s:   {node: "ns=2;s=Types.String", type: string, writable: true}
  e:   {node: "ns=2;i=42", type: int32, enum: [stopped, slow, fast], writable: true}
commands:
  echo: {method: "ns=2;s=Types.Echo", args: [a, b], arg_types: [int64, string]}
"""

# Values at the edges of each type (float32 values chosen to be exact in 32 bits).
EDGES: dict[str, list[Value]] = {
    "b": [True, False],
    "i16": [-(2**15), 2**15 - 1],
    "u16": [0, 2**16 - 1],
    "i32": [-(2**31), 2**31 - 1],
    "u32": [0, 2**32 - 1],
    "i64": [-(2**63), 2**63 - 1],
    "u64": [0, 2**64 - 1],
    "f32": [-1.5, 2.0**100],
    "f64": [-1e-300, 1.7976931348623157e308],
    "s": ["", "Zelle µL — 細胞"],
    "e": ["fast", "stopped"],
}


class TableModel:
    """A model that stores whatever it is given (for type round trips)."""

    def __init__(self, profile: Profile) -> None:
        self.values: dict[str, Value] = {
            name: (spec.enum[0] if spec.enum else _zero(spec.type))
            for name, spec in profile.signals.items()
        }

    def tags(self) -> frozenset[str]:
        return frozenset(self.values)

    def methods(self) -> frozenset[str]:
        return frozenset({"echo"})

    def read(self, tag: str) -> Value:
        return self.values[tag]

    def write(self, tag: str, value: Value) -> None:
        self.values[tag] = value

    def call(self, method: str, args: Sequence[Value]) -> list[Value]:
        if method != "echo":
            raise UnknownTagError(method)
        return [*args, 2.5, True]


def _zero(type_name: str) -> Value:
    zeros: dict[str, Value] = {"bool": False, "string": "", "float32": 0.0, "float64": 0.0}
    return zeros.get(type_name, 0)


def profile_from(text: str, name: str = "test.opcua.yaml") -> Profile:
    top = require_mapping(load_text(text, name), Where(name, 1, 1), "profile")
    return parse_profile(top, name.removesuffix(".yaml"))


@asynccontextmanager
async def serving(
    profile: Profile, model: object, **kwargs: object
) -> AsyncIterator[OpcUaTwinServer]:
    server = OpcUaTwinServer(model, profile, **kwargs)  # type: ignore[arg-type]
    async with server:
        yield server


@asynccontextmanager
async def linked(
    profile: Profile, endpoint: str, clock: Clock, *, connect: bool = True
) -> AsyncIterator[Transport]:
    transport = create_transport(profile, endpoint, clock=clock, options=OPTIONS)
    try:
        if connect:
            await transport.connect()
        yield transport
    finally:
        await transport.close()


@asynccontextmanager
async def demo(clock: VirtualClock) -> AsyncIterator[tuple[OpcUaTwinServer, Transport]]:
    profile = shipped_profile("demo.opcua")
    async with (
        serving(profile, DemoModel(clock)) as server,
        linked(profile, server.endpoint, clock) as transport,
    ):
        yield server, transport


@asynccontextmanager
async def demo_probed(
    clock: VirtualClock, keepalive_s: float = 0.05
) -> AsyncIterator[tuple[OpcUaTwinServer, OpcUaTransport]]:
    """The demo twin and a transport whose keep-alive task wakes every ``keepalive_s``."""
    profile = shipped_profile("demo.opcua")
    async with serving(profile, DemoModel(clock)) as server:
        transport = create_transport(profile, server.endpoint, clock=clock, options=OPTIONS)
        assert isinstance(transport, OpcUaTransport)
        transport.keepalive_s = keepalive_s  # wall seconds
        try:
            await transport.connect()
            yield server, transport
        finally:
            await transport.close()


class Renewals:
    """Watches a transport's channel renewals: when one starts, and how each ends."""

    def __init__(self, transport: OpcUaTransport, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = asyncio.Event()
        self.ended: asyncio.Queue[BaseException | None] = asyncio.Queue()
        renew = transport._renew_channel

        async def watched(client: Client) -> None:
            self.started.set()
            try:
                await renew(client)
            except BaseException as exc:
                self.ended.put_nowait(exc)
                raise
            self.ended.put_nowait(None)

        monkeypatch.setattr(transport, "_renew_channel", watched)

    async def next(self) -> BaseException | None:
        async with asyncio.timeout(RECOVER_S):
            return await self.ended.get()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop (never sleep) until ``condition()`` holds."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def keepalive_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("flexctl-opcua-keepalive") and not t.done()
    ]


def open_connections(server: OpcUaTwinServer) -> int:
    return sum(1 for p in server.connections if not p.closed)


async def wait_for_state(transport: Transport, state: ConnectionState) -> None:
    """Wait (on an event, under a wall timeout) until the transport reaches ``state``."""
    reached = asyncio.Event()
    unsubscribe = transport.on_state(lambda s: reached.set() if s is state else None)
    try:
        if transport.state is not state:
            async with asyncio.timeout(RECOVER_S):
                await reached.wait()
    finally:
        unsubscribe()


# -- the wire ----------------------------------------------------------------------


async def test_batched_read_of_twenty_nodes_is_one_request(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        channels = [t.signal(f"ch{i:02d}") for i in range(CHANNELS)]
        before = server.requests["Read"]
        values = await t.read(channels)
        assert server.requests["Read"] - before == 1
        assert len(values) == CHANNELS
        assert all(isinstance(v, float) for v in values)


async def test_concurrent_requests_share_one_session(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        names = ["temperature_sp", "label", "level", "cycles"]
        got = await asyncio.gather(*(t.read_one(t.signal(n)) for n in names))
        assert got == [20.0, "demo", -5, 0]
        assert server.requests["CreateSession"] == 1


async def test_typed_writes_carry_no_timestamps(vclock: VirtualClock) -> None:
    model = DemoModel(vclock)
    profile = shipped_profile("demo.opcua")
    async with (
        serving(profile, model) as server,
        linked(profile, server.endpoint, vclock) as t,
    ):
        # The twin is strict like open62541: a timestamped write is refused ...
        client = Client(server.endpoint)
        async with client:
            node = client.get_node("ns=2;s=Demo.Level")
            with pytest.raises(UaStatusCodeError) as refused:
                await node.write_value(ua.Variant(7, ua.VariantType.Int16))  # adds a timestamp
            assert refused.value.code == StatusCodes.BadWriteNotSupported
        # ... and the transport's value-only, typed write lands.
        await t.write(t.signal("level"), 7)
        await t.write(t.signal("temperature_sp"), 21)  # an int is sent as the Double it is
        assert model.read("level") == 7
        assert model.read("temperature_sp") == 21.0


async def test_every_value_type_round_trips(vclock: VirtualClock) -> None:
    profile = profile_from(ALL_TYPES)
    model = TableModel(profile)
    async with (
        serving(profile, model) as server,
        linked(profile, server.endpoint, vclock) as t,
    ):
        for name, edges in EDGES.items():
            for value in edges:
                await t.write(t.signal(name), value)
                assert await t.read_one(t.signal(name)) == value, name
        assert model.values["e"] == "stopped"
        async with Client(server.endpoint) as raw:  # an enum travels as its index
            assert await raw.get_node("ns=2;i=42").read_value() == 0
        everything = await t.read([t.signal(n) for n in EDGES])
        assert everything == [edges[-1] for edges in EDGES.values()]
        assert await t.call(t.command("echo"), [7, "x"]) == [7, "x", 2.5, True]


async def test_out_of_type_values_are_refused_before_the_wire(vclock: VirtualClock) -> None:
    profile = profile_from(ALL_TYPES)
    async with (
        serving(profile, TableModel(profile)) as server,
        linked(profile, server.endpoint, vclock) as t,
    ):
        before = server.requests["Write"]
        with pytest.raises(OutOfRangeError):
            await t.write(t.signal("u16"), -1)
        with pytest.raises(OutOfRangeError):
            await t.write(t.signal("i16"), "12")
        with pytest.raises(OutOfRangeError):
            await t.call(t.command("echo"), ["seven", "x"])
        assert server.requests["Write"] == before


async def test_refusals_map_to_typed_errors(vclock: VirtualClock) -> None:
    async with demo(vclock) as (_, t):
        with pytest.raises(ProtocolError) as too_hot:
            await t.write(t.signal("temperature_sp"), 51.0)
        assert too_hot.value.code == StatusCodes.BadOutOfRange
        assert too_hot.value.status == "BadOutOfRange"
        with pytest.raises(ProtocolError) as too_long:
            await t.write(t.signal("label"), "x" * 17)
        assert too_long.value.code == StatusCodes.BadOutOfRange
        await t.call(t.command("start"), [5.0])
        with pytest.raises(DeviceBusyError):
            await t.call(t.command("start"), [5.0])
        assert t.state is ConnectionState.CONNECTED


async def test_channel_is_renewed_by_the_keep_alive(
    vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_probed(vclock) as (server, t):
        renewals = Renewals(t, monkeypatch)
        opened = server.requests["OpenSecureChannel"]
        t._renew_at = 0.0  # as if 75 % of the channel's lifetime had passed
        assert await renewals.next() is None
        assert server.requests["OpenSecureChannel"] == opened + 1
        assert t._renew_at > asyncio.get_running_loop().time()  # the next one is planned
        assert t.renewals == 1
        assert await t.read_one(t.signal("label")) == "demo"
        assert t.reconnects == 0


async def test_a_request_never_renews_the_channel(vclock: VirtualClock) -> None:
    async with demo_probed(vclock, keepalive_s=60.0) as (server, t):
        opened = server.requests["OpenSecureChannel"]
        for _ in range(3):
            await asyncio.sleep(0)  # the keep-alive task is asleep for its 60 s
        t._renew_at = 0.0  # due, but only the keep-alive renews, and not for a minute
        assert await t.read_one(t.signal("temperature_sp")) == 20.0
        await t.write(t.signal("level"), 3)
        assert server.requests["OpenSecureChannel"] == opened


async def test_a_cancelled_request_does_not_stop_renewals(
    vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_probed(vclock) as (server, t):
        renewals = Renewals(t, monkeypatch)
        server.faults.delay = 0.2  # every message, the renewal's too
        t._renew_at = 0.0
        async with asyncio.timeout(RECOVER_S):
            await renewals.started.wait()
        step = asyncio.ensure_future(t.read_one(t.signal("temperature")))
        for _ in range(5):
            await asyncio.sleep(0)
        step.cancel()  # the step that polled is cancelled (a batch Hold) mid-renewal
        await asyncio.gather(step, return_exceptions=True)
        assert await renewals.next() is None
        server.faults.clear()
        t._renew_at = 0.0
        assert await renewals.next() is None  # and the one after that still works
        assert t._client is not None
        assert t._client.uaclient.protocol is not None
        assert t._client.uaclient.protocol._open_secure_channel_exchange is None
        assert await t.read_one(t.signal("label")) == "demo"
        assert (t.renewals, t.reconnects) == (2, 0)


async def test_a_failed_renewal_is_a_lost_link_and_the_new_channel_renews(
    vclock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with demo_probed(vclock) as (server, t):
        renewals = Renewals(t, monkeypatch)
        server.faults.stall = True
        t._renew_at = 0.0
        assert await renewals.next() is not None  # timed out
        await wait_for_state(t, ConnectionState.RECONNECTING)
        assert "secure channel renewal" in str(t.last_error)
        server.faults.clear()
        await wait_for_state(t, ConnectionState.CONNECTED)
        t._renew_at = 0.0
        assert await renewals.next() is None
        assert await t.read_one(t.signal("label")) == "demo"
        assert t.reconnects == 1


async def test_an_open_over_a_live_link_closes_it_first(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        assert isinstance(t, OpcUaTransport)
        first = t._client
        async with t._link_lock:  # as an open racing another would
            await t._open()
        assert t._client is not first
        assert len(keepalive_tasks()) == 1
        await until(lambda: open_connections(server) == 1, "the first session closed")
        assert await t.read_one(t.signal("label")) == "demo"


async def test_connect_during_a_reconnect_makes_one_session(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        await server.drop_connections()
        await wait_for_state(t, ConnectionState.RECONNECTING)
        await t.connect()
        assert t.state is ConnectionState.CONNECTED
        assert len(keepalive_tasks()) == 1
        await until(lambda: open_connections(server) == 1, "one session")
        assert await t.read_one(t.signal("label")) == "demo"
    assert not keepalive_tasks()


@pytest.mark.parametrize(
    "code", [StatusCodes.UncertainLastUsableValue, StatusCodes.UncertainSensorNotAccurate]
)
async def test_uncertain_values_are_refused_with_their_status(
    code: int, vclock: VirtualClock
) -> None:
    async with demo(vclock) as (server, t):
        server.set_status("temperature", code)  # the value is there, its quality is not
        with pytest.raises(ProtocolError, match="uncertain") as caught:
            await t.read([t.signal("label"), t.signal("temperature")])
        assert caught.value.code == code
        assert caught.value.status == ua.StatusCode(ua.UInt32(code)).name
        assert "read temperature" in str(caught.value)
        assert t.state is ConnectionState.CONNECTED
        assert await t.read_one(t.signal("label")) == "demo"
        server.set_status("temperature", None)
        assert isinstance(await t.read_one(t.signal("temperature")), float)
        server.faults.error = code  # a status without a value: refused the same way
        with pytest.raises(ProtocolError, match="uncertain"):
            await t.read_one(t.signal("label"))


def test_an_untyped_argument_too_big_for_int64_is_refused_before_the_wire() -> None:
    assert variant_type_of(2**63 - 1) is ua.VariantType.Int64
    with pytest.raises(OutOfRangeError, match="Int64"):
        variant_type_of(2**63)


async def test_twin_registers_its_namespace_at_index_2(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, _):
        client = Client(server.endpoint)
        async with client:
            namespaces = await client.get_namespace_array()
            assert namespaces[2] == "urn:flexctl:twin:demo"
            pump = client.get_node("ns=2;s=Demo.Pump")
            names = {(await child.read_browse_name()).Name for child in await pump.get_children()}
            assert {"Running", "Rate", "Cycles", "Start", "Stop"} <= names


async def test_server_restarts_on_the_same_endpoint(vclock: VirtualClock) -> None:
    profile = shipped_profile("demo.opcua")
    server = OpcUaTwinServer(DemoModel(vclock), profile)
    await server.start()
    endpoint = server.endpoint
    assert ":0/" not in endpoint
    await server.stop()
    await server.stop()  # twice is fine
    async with server, linked(profile, endpoint, vclock) as t:
        assert server.endpoint == endpoint
        assert await t.read_one(t.signal("label")) == "demo"


# -- profiles ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "line", "fragment"),
    [
        ('{node: "ns=2;s=X.T", nodes: 3}', 4, "unknown key 'nodes'"),
        ('{node: "ns=x;s=X.T"}', 4, "is not a NodeId"),
        ('{node: "garbage"}', 4, "is not a NodeId"),
        ("{node: 17}", 4, "expected a NodeId"),
        ('{node: "nsu=urn:x;s=T"}', 4, "namespace URIs"),
        ("{type: float64}", 4, "missing key 'node'"),
        ('\n    node: "ns=2;s="', 5, "empty identifier"),
    ],
)
def test_bad_signal_addresses_say_file_line_and_what(signal: str, line: int, fragment: str) -> None:
    text = f"device: x\ntransport: opcua\nsignals:\n  t: {signal}\n"
    with pytest.raises(ConfigurationError) as caught:
        check_profile(profile_from(text, "bad.opcua.yaml"))
    assert caught.value.file == "bad.opcua.yaml"
    assert caught.value.line == line
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"bad.opcua.yaml:{line}")


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ('{method: "ns=2;i=5"}', "cannot tell the object"),
        ('{method: "ns=2;s=X.Go", args: [a], arg_types: [int64, bool]}', "2 arg_types for 1"),
        ('{method: "ns=2;s=X.Go", args: [a], arg_types: [integer]}', "unknown type"),
        ('{method: "ns=2;s=X.Go", objekt: "ns=2;s=X"}', "unknown key 'objekt'"),
        ("{args: []}", "missing key 'method'"),
    ],
)
def test_bad_commands_say_file_line_and_what(command: str, fragment: str) -> None:
    text = f"device: x\ntransport: opcua\ncommands:\n  go: {command}\n"
    with pytest.raises(ConfigurationError) as caught:
        check_profile(profile_from(text, "bad.opcua.yaml"))
    assert caught.value.line == 4
    assert fragment in str(caught.value)


def test_method_object_is_derived_or_given() -> None:
    text = (
        "device: x\ntransport: opcua\ncommands:\n"
        '  a: {method: "ns=2;s=Line.Pump.Start"}\n'
        '  b: {method: "ns=3;i=7", object: "ns=3;i=6"}\n'
    )
    profile = profile_from(text)
    a = OpcUaTransport.parse_command(profile.command("a"))
    b = OpcUaTransport.parse_command(profile.command("b"))
    assert a.object == ua.NodeId.from_string("ns=2;s=Line.Pump")
    assert b.object == ua.NodeId.from_string("ns=3;i=6")


def test_twin_refuses_what_it_cannot_serve(vclock: VirtualClock) -> None:
    standard = 'device: x\ntransport: opcua\nsignals:\n  t: {node: "i=2258"}\n'
    with pytest.raises(ConfigurationError, match="namespace 2"):
        OpcUaTwinServer(TableModel(profile_from(standard)), profile_from(standard))
    twice = (
        'device: x\ntransport: opcua\nsignals:\n  t: {node: "ns=2;s=A"}\n  u: {node: "ns=2;s=A"}\n'
    )
    with pytest.raises(ConfigurationError, match="t's too"):
        OpcUaTwinServer(TableModel(profile_from(twice)), profile_from(twice))


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("opc.tcp://127.0.0.1:4840/?secure=1", "unknown option 'secure'"),
        ("opc.tcp://127.0.0.1:4840/?security=Basic256Sha256,SignAndEncrypt", "expected Policy"),
        ("opc.tcp://127.0.0.1:4840/?security=Rot13,Sign,a.pem,b.pem", "unknown policy"),
        ("opc.tcp://127.0.0.1:4840/?security=Basic256Sha256,Encrypt,a.pem,b.pem", "mode"),
        ("opc.tcp://127.0.0.1:4840/?security=Basic256Sha256,Sign,/no/a.pem,b.pem", "cannot read"),
        ("opc.tcp://127.0.0.1:port/", "port"),
    ],
)
def test_bad_endpoints_are_configuration_errors(
    endpoint: str, fragment: str, vclock: VirtualClock
) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        create_transport(shipped_profile("demo.opcua"), endpoint, clock=vclock)


def test_credentials_never_show(vclock: VirtualClock) -> None:
    endpoint = "opc.tcp://operator:s3cret@127.0.0.1:4840/flexctl/demo"
    t = create_transport(shipped_profile("demo.opcua"), endpoint, clock=vclock)
    assert "s3cret" not in t.source
    assert "s3cret" not in t.endpoint
    assert t.source == "opc.tcp://operator:***@127.0.0.1:4840/flexctl/demo"


# -- security ----------------------------------------------------------------------

USERS = {"operator": "s3cret"}


def with_user(endpoint: str, user: str, password: str) -> str:
    return endpoint.replace("opc.tcp://", f"opc.tcp://{user}:{password}@")


async def test_users_refuse_anonymous_and_accept_the_right_one(vclock: VirtualClock) -> None:
    profile = shipped_profile("demo.opcua")
    async with serving(profile, DemoModel(vclock), users=USERS) as server:
        async with linked(profile, server.endpoint, vclock, connect=False) as anonymous:
            with pytest.raises(NotConnectedError, match="BadIdentityTokenRejected"):
                await anonymous.connect()
        wrong = with_user(server.endpoint, "operator", "guess")
        async with linked(profile, wrong, vclock, connect=False) as t:
            with pytest.raises(NotConnectedError, match="BadUserAccessDenied"):
                await t.connect()
            assert t.state is ConnectionState.DISCONNECTED
        right = with_user(server.endpoint, "operator", "s3cret")
        async with linked(profile, right, vclock) as t:
            assert await t.read_one(t.signal("label")) == "demo"


def make_certificate(folder: Path, name: str, uri: str, usage: ObjectIdentifier) -> Path:
    """A self-signed application certificate ``name``.pem and its key ``name``.key.pem."""
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [UniformResourceIdentifier(uri), DNSName("localhost")], [usage]
    )
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key.pem").write_bytes(cert_gen.dump_private_key_as_pem(key))
    return folder / f"{name}.pem"


async def test_basic256sha256_sign_and_encrypt_end_to_end(
    tmp_path: Path, vclock: VirtualClock
) -> None:
    server_cert = make_certificate(
        tmp_path, "server", "urn:flexctl:test:server", ExtendedKeyUsageOID.SERVER_AUTH
    )
    client_cert = make_certificate(
        tmp_path, "client", "urn:flexctl:test:client", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    profile = shipped_profile("demo.opcua")
    model = DemoModel(vclock)
    async with serving(
        profile,
        model,
        users=USERS,
        certificate=server_cert,
        private_key=tmp_path / "server.key.pem",
    ) as server:
        security = (
            f"?security=Basic256Sha256,SignAndEncrypt,{client_cert},{tmp_path}/client.key.pem"
        )
        endpoint = with_user(server.endpoint, "operator", "s3cret") + security
        async with linked(profile, endpoint, vclock) as t:
            assert isinstance(t, OpcUaTransport)
            assert t._client is not None
            policy = t._client.security_policy
            assert policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
            assert policy.URI.endswith("#Basic256Sha256")
            await t.write(t.signal("temperature_sp"), 30.0)
            assert await t.read([t.signal("temperature_sp"), t.signal("label")]) == [30.0, "demo"]
            assert await t.call(t.command("start"), [2.0]) == [1]
        assert model.read("running") is True


async def test_security_asked_of_a_server_without_it_is_not_connected(
    tmp_path: Path, vclock: VirtualClock
) -> None:
    cert = make_certificate(
        tmp_path, "client", "urn:flexctl:test:client", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    profile = shipped_profile("demo.opcua")
    async with serving(profile, DemoModel(vclock)) as server:
        endpoint = (
            f"{server.endpoint}?security=Basic256Sha256,Sign,{cert},{tmp_path}/client.key.pem"
        )
        async with linked(profile, endpoint, vclock, connect=False) as t:
            with pytest.raises(NotConnectedError, match="No matching endpoints"):
                await t.connect()


# -- faults, as the transport sees them ---------------------------------------------


async def test_stall_is_a_communication_timeout(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        server.faults.stall = True
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("label"))
        server.faults.clear()
        await wait_for_state(t, ConnectionState.CONNECTED)


async def test_delay_beyond_the_timeout_is_a_communication_timeout(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        server.faults.delay = 0.05
        assert await t.read_one(t.signal("label")) == "demo"
        server.faults.delay = OPTIONS.timeout * 2
        with pytest.raises(CommunicationTimeout):
            await t.read_one(t.signal("label"))
        server.faults.clear()


async def test_corrupt_frame_is_a_lost_link_then_recovers(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        server.faults.corrupt = 1
        with pytest.raises(NotConnectedError):
            await t.read_one(t.signal("label"))
        await wait_for_state(t, ConnectionState.CONNECTED)
        assert await t.read_one(t.signal("label")) == "demo"


@pytest.mark.parametrize("service", ["read", "write", "call"])
async def test_error_fault_answers_every_service_with_its_code(
    service: str, vclock: VirtualClock
) -> None:
    async with demo(vclock) as (server, t):
        server.faults.error = StatusCodes.BadInternalError
        with pytest.raises(ProtocolError) as caught:
            if service == "read":
                await t.read([t.signal("label"), t.signal("level")])
            elif service == "write":
                await t.write(t.signal("level"), 1)
            else:
                await t.call(t.command("stop"))
        assert caught.value.code == StatusCodes.BadInternalError
        assert caught.value.status == "BadInternalError"
        assert t.state is ConnectionState.CONNECTED


async def test_busy_and_session_codes_are_typed(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        server.faults.error = StatusCodes.BadInvalidState
        with pytest.raises(DeviceBusyError):
            await t.call(t.command("stop"))
        server.faults.error = StatusCodes.BadSessionIdInvalid
        with pytest.raises(NotConnectedError):
            await t.read_one(t.signal("label"))
        assert t.state is not ConnectionState.CONNECTED
        server.faults.clear()
        await wait_for_state(t, ConnectionState.CONNECTED)


async def test_dropped_connection_is_noticed_without_a_request(vclock: VirtualClock) -> None:
    async with demo(vclock) as (server, t):
        lost = asyncio.Event()
        t.on_state(lambda s: lost.set() if s is ConnectionState.RECONNECTING else None)
        await server.drop_connections()
        async with asyncio.timeout(RECOVER_S):
            await lost.wait()
        with pytest.raises(NotConnectedError):
            await t.read_one(t.signal("label"))
        await wait_for_state(t, ConnectionState.CONNECTED)
        assert await t.read_one(t.signal("label")) == "demo"
        assert t.reconnects == 1


async def test_idle_link_is_probed_and_a_stall_noticed(vclock: VirtualClock) -> None:
    profile = shipped_profile("demo.opcua")
    async with serving(profile, DemoModel(vclock)) as server:
        t = create_transport(profile, server.endpoint, clock=vclock, options=OPTIONS)
        assert isinstance(t, OpcUaTransport)
        t.keepalive_s = 0.05  # wall seconds; the probe's own timeout is OPTIONS.timeout
        lost = asyncio.Event()
        t.on_state(lambda s: lost.set() if s is ConnectionState.RECONNECTING else None)
        try:
            await t.connect()
            server.faults.stall = True  # no request of ours is pending: only the probe sees it
            async with asyncio.timeout(RECOVER_S):
                await lost.wait()
            assert "keep-alive" in str(t.last_error)
            server.faults.clear()
            await wait_for_state(t, ConnectionState.CONNECTED)
            assert await t.read_one(t.signal("label")) == "demo"
        finally:
            await t.close()


def test_unusable_private_key_is_a_configuration_error(
    tmp_path: Path, vclock: VirtualClock
) -> None:
    cert = make_certificate(tmp_path, "client", "urn:x", ExtendedKeyUsageOID.CLIENT_AUTH)
    (tmp_path / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    endpoint = f"opc.tcp://127.0.0.1:4840/?security=Basic256Sha256,Sign,{cert},"
    profile = shipped_profile("demo.opcua")
    with pytest.raises(ConfigurationError, match="private key"):
        create_transport(profile, endpoint + f"{tmp_path}/broken.pem", clock=vclock)
    with pytest.raises(ConfigurationError, match="private key"):  # not encrypted: no password
        create_transport(profile, endpoint + f"{tmp_path}/client.key.pem::pw", clock=vclock)
