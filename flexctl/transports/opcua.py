"""OPC UA transport: many signals in one Read request, typed writes, method calls.

asyncua is used as a codec and a socket, nothing more. The base class owns
timeouts and reconnecting, so the asyncua client runs without its connection
supervisor: we run the connect sequence ourselves (asyncua 2.x's
``Client.connect()`` always starts a supervisor that probes and reconnects on
its own, plus a subscription watchdog) and learn of a closed socket through
the client's observer hook.

One task of ours keeps an idle link honest: after ``keepalive_s`` of silence
it reads the server state, so a dead link is noticed between requests (an
interlock must not wait for the next poll) and the server does not expire the
session. It only reports a loss; the base class reconnects.

The same task renews the secure channel once 75 % of its lifetime is gone, and
nothing else does. A renewal inside a request could be cut short when the
request is cancelled (a batch Hold), which leaves asyncua's open-channel
exchange half done and refuses every later renewal; the keep-alive task is
only ever cancelled when its client is being thrown away. A renewal that fails
or times out is a lost link: the base reconnects on a fresh channel.

A read whose value is not Good (Bad, or Uncertain such as
UncertainLastUsableValue from a failed sensor) is a ProtocolError carrying the
status code: a GMP record must not take a doubtful value as a measurement.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.crypto.uacrypto import CertProperties
from asyncua.observer import NULL_OBSERVER, Observer
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography.exceptions import InvalidSignature

from flexctl.clock import Clock
from flexctl.errors import (
    ConfigurationError,
    DeviceBusyError,
    FlexctlError,
    NotConnectedError,
    ProtocolError,
    Where,
)
from flexctl.profile import (
    GENERIC_COMMAND_KEYS,
    GENERIC_SIGNAL_KEYS,
    CommandSpec,
    Profile,
    SignalSpec,
    Value,
    canonical_type,
    check_keys,
    check_value,
    where_in,
)
from flexctl.transports.base import (
    CommandAddress,
    SignalAddress,
    Transport,
    TransportOptions,
)
from flexctl.transports.opcua_endpoint import Endpoint, KeyFile, parse_endpoint
from flexctl.transports.opcua_types import (
    LINK_LOST_CODES,
    parse_node_id,
    plain,
    status_name,
    variant_type,
    variant_type_of,
)

log = structlog.get_logger("flexctl.transport.opcua")

#: asyncua's own request timeout is only a safety net under the base class's.
LIBRARY_TIMEOUT_FACTOR = 4.0
#: What asyncua and the socket raise besides timeouts (mapped once, in _failure).
#: asyncua's decoder raises whatever malformed bytes provoke, hence the wide net.
LIBRARY_ERRORS = (
    OSError,
    UaError,
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    ArithmeticError,
    InvalidSignature,
)
#: Ten minutes, what most servers grant; the keep-alive stops it expiring while idle.
SESSION_TIMEOUT_MS = 600_000
CLIENT_APPLICATION_URI = "urn:flexctl:client"
_SERVER_STATE = ua.ReadParameters(
    NodesToRead=[
        ua.ReadValueId(
            NodeId=ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_State)),
            AttributeId=AttributeIds.Value,
        )
    ]
)


@dataclass(frozen=True)
class OpcUaSignal(SignalAddress):
    """A signal at a variable node, with its OPC UA type."""

    node: ua.NodeId
    vtype: ua.VariantType
    # Built once, reused by every Read request (asyncua never mutates it).
    read_id: ua.ReadValueId = field(compare=False, repr=False)


@dataclass(frozen=True)
class OpcUaCommand(CommandAddress):
    """A command as a method node on the object that owns it."""

    method: ua.NodeId
    object: ua.NodeId
    #: OPC UA argument types; None sends each argument by its Python type.
    arg_types: tuple[str, ...] | None = None


class OpcUaTransport(Transport):
    """A link to one OPC UA server (see the module docstring)."""

    family = "opcua"
    schemes = ("opc.tcp",)
    signal_keys: ClassVar[frozenset[str]] = frozenset({"node"})
    command_keys: ClassVar[frozenset[str]] = frozenset({"method", "object", "arg_types"})
    profile_keys: ClassVar[frozenset[str]] = frozenset()
    #: Wall seconds of silence before the link is probed (capped at a third of the
    #: session timeout the server grants).
    keepalive_s: float = 10.0

    def __init__(
        self,
        profile: Profile,
        endpoint: str,
        *,
        clock: Clock,
        device: str | None = None,
        options: TransportOptions | None = None,
    ) -> None:
        # Parsed before the base sees it, so a password never reaches a log line or an error.
        self._endpoint: Endpoint = parse_endpoint(endpoint, profile.where)
        super().__init__(
            profile, self._endpoint.redacted, clock=clock, device=device, options=options
        )
        self._client: Client | None = None
        self._renew_at = math.inf
        self._last_reply = 0.0
        self._keepalive: asyncio.Task[None] | None = None
        #: Secure-channel renewals done (diagnostics, like ``reconnects``).
        self.renewals = 0
        self._library_timeout = LIBRARY_TIMEOUT_FACTOR * max(
            self.options.timeout, self.options.connect_timeout
        )

    # -- profile -----------------------------------------------------------------

    @classmethod
    def parse_signal(cls, spec: SignalSpec) -> OpcUaSignal:
        what = f"signal {spec.name}"
        check_keys(spec.raw, GENERIC_SIGNAL_KEYS | cls.signal_keys, spec.where, what)
        if "node" not in spec.raw:
            raise ConfigurationError(
                spec.where, f"{what}: missing key 'node' (a NodeId such as 'ns=2;s=Name')"
            )
        node = parse_node_id(spec.raw["node"], where_in(spec.raw, "node", spec.where), what)
        return OpcUaSignal(
            spec=spec,
            node=node,
            vtype=variant_type(spec.wire_type),
            read_id=ua.ReadValueId(NodeId=node, AttributeId=AttributeIds.Value),
        )

    @classmethod
    def parse_command(cls, spec: CommandSpec) -> OpcUaCommand:
        what = f"command {spec.name}"
        raw = spec.raw
        check_keys(raw, GENERIC_COMMAND_KEYS | cls.command_keys, spec.where, what)
        if "method" not in raw:
            raise ConfigurationError(
                spec.where, f"{what}: missing key 'method' (the method's NodeId)"
            )
        method = parse_node_id(raw["method"], where_in(raw, "method", spec.where), what)
        if "object" in raw:
            owner = parse_node_id(raw["object"], where_in(raw, "object", spec.where), what)
        else:
            owner = _owner_of(method, where_in(raw, "method", spec.where), what)
        arg_types = None
        if "arg_types" in raw:
            arg_types = _arg_types(raw["arg_types"], spec, where_in(raw, "arg_types", spec.where))
        return OpcUaCommand(spec=spec, method=method, object=owner, arg_types=arg_types)

    # -- link --------------------------------------------------------------------

    async def _open(self) -> None:
        if self._client is not None or self._keepalive is not None:
            await self._close()  # never two sessions, or two keep-alive tasks, for one link
        endpoint = self._endpoint
        client = Client(endpoint.url, timeout=self._library_timeout, auto_reconnect=False)
        client.name = client.description = f"flexctl {self.device}"
        client.application_uri = CLIENT_APPLICATION_URI
        client.session_timeout = SESSION_TIMEOUT_MS
        self._client = client
        client.uaclient.observer = _LinkWatch(lambda: self._socket_lost(client))
        try:
            if endpoint.security is not None:
                sec = endpoint.security
                client.application_uri = sec.application_uri or CLIENT_APPLICATION_URI
                await client.set_security(
                    sec.policy,
                    _cert(sec.certificate),
                    _cert(sec.private_key),
                    server_certificate=(
                        None if sec.server_certificate is None else _cert(sec.server_certificate)
                    ),
                    mode=sec.mode,
                )
            # Client.connect() without its supervisor and watchdog tasks (see module docstring).
            await client.connect_socket()
            await client.send_hello()
            await client.open_secure_channel()
            await client.create_session()
            await client.activate_session(username=endpoint.username, password=endpoint.password)
        except TimeoutError:
            raise  # the base class owns timeouts
        except UaStatusCodeError as exc:
            raise NotConnectedError(
                self.device, f"connect to {self.endpoint}: {status_name(exc.code)}"
            ) from exc
        except LIBRARY_ERRORS as exc:
            raise NotConnectedError(
                self.device, f"connect to {self.endpoint}: {exc or type(exc).__name__}"
            ) from exc
        self._renew_at = self._channel_renewal_due(client)
        self._last_reply = asyncio.get_running_loop().time()
        self._keepalive = asyncio.get_running_loop().create_task(
            self._keep_alive(client), name=f"flexctl-opcua-keepalive-{self.device}"
        )

    async def _close(self) -> None:
        client, self._client = self._client, None
        self._renew_at = math.inf
        task, self._keepalive = self._keepalive, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if client is None:
            return
        # Our own hang-up is not a lost link.
        client.uaclient.observer = NULL_OBSERVER
        try:
            if client.uaclient.state is UaClientState.CONNECTED:
                # Say goodbye so the server frees the session now, not at its timeout,
                # but never wait longer for that than for any other reply.
                async with asyncio.timeout(self.options.timeout):
                    await client.close_session()
                await client.close_secure_channel()
        except LIBRARY_ERRORS as exc:  # TimeoutError is an OSError
            log.debug("close: goodbye not answered", device=self.device, error=repr(exc))
        finally:
            client.disconnect_socket()

    async def _keep_alive(self, client: Client) -> None:
        """Probe the server after a silence and renew the channel when due.

        Reports a dead link or a failed renewal as lost (the base reconnects).
        """
        loop = asyncio.get_running_loop()
        interval = min(self.keepalive_s, client.session_timeout / 1000.0 / 3.0)
        while True:
            now = loop.time()
            wait = min(self._last_reply + interval, self._renew_at) - now
            if wait > 0:
                await asyncio.sleep(wait)  # wire time, not process time
                continue
            renew = now >= self._renew_at
            what = "secure channel renewal" if renew else "keep-alive"
            try:
                async with asyncio.timeout(self.options.timeout):
                    if renew:
                        await self._renew_channel(client)
                    else:
                        await client.uaclient.read(_SERVER_STATE)
            except LIBRARY_ERRORS as exc:  # TimeoutError is an OSError
                if client is self._client:
                    self._link_lost(
                        NotConnectedError(self.device, f"{what}: {exc or type(exc).__name__}")
                    )
                return
            self._last_reply = loop.time()

    def _socket_lost(self, client: Client) -> None:
        if client is self._client:
            self._link_lost(NotConnectedError(self.device, "connection closed by peer"))

    def _session(self) -> Client:
        client = self._client
        if client is None:
            raise NotConnectedError(self.device, "no session")
        return client

    def _channel_renewal_due(self, client: Client) -> float:
        lifetime_s = client.secure_channel_timeout / 1000.0
        return asyncio.get_running_loop().time() + 0.75 * lifetime_s

    async def _renew_channel(self, client: Client) -> None:
        """Renew the secure channel (from the keep-alive task only: see the module docstring)."""
        self._renew_at = math.inf  # until it has worked; a failure is a lost link anyway
        await client.open_secure_channel(renew=True)
        client.uaclient.revolve_security_token()
        if client is self._client:
            self._renew_at = self._channel_renewal_due(client)
        self.renewals += 1

    # -- requests ----------------------------------------------------------------

    async def _read(self, addresses: Sequence[SignalAddress]) -> list[Any]:
        signals = [_as(OpcUaSignal, a) for a in addresses]
        client = self._session()
        params = ua.ReadParameters(NodesToRead=[s.read_id for s in signals])
        try:
            results = await client.uaclient.read(params)
            self._last_reply = asyncio.get_running_loop().time()
        except TimeoutError:
            raise
        except LIBRARY_ERRORS as exc:
            raise self._failure(_read_what(signals), exc) from exc
        if len(results) != len(signals):
            raise ProtocolError(
                self.device, f"{_read_what(signals)}: {len(results)} results for {len(signals)}"
            )
        values: list[Any] = []
        for signal, result in zip(signals, results, strict=True):
            status = result.StatusCode
            if status is not None and not status.is_good():
                if status.is_bad():
                    raise self._refused(f"read {signal.name}", status.value)
                # Uncertain: a last usable value, a sensor out of calibration ...
                raise ProtocolError(
                    self.device,
                    f"read {signal.name}: value is uncertain, not Good",
                    code=status.value,
                    status=status_name(status.value),
                )
            values.append(None if result.Value is None else result.Value.Value)
        return values

    async def _write(self, address: SignalAddress, wire: Value) -> None:
        signal = _as(OpcUaSignal, address)
        client = self._session()
        # Value only: no StatusCode, no timestamps (strict servers refuse them).
        data = ua.DataValue(Value=ua.Variant(wire, signal.vtype), StatusCode=None)
        item = ua.WriteValue(NodeId=signal.node, AttributeId=AttributeIds.Value, Value=data)
        what = f"write {signal.name}"
        try:
            results = await client.uaclient.write(ua.WriteParameters(NodesToWrite=[item]))
            self._last_reply = asyncio.get_running_loop().time()
        except TimeoutError:
            raise
        except LIBRARY_ERRORS as exc:
            raise self._failure(what, exc) from exc
        if len(results) != 1:
            raise ProtocolError(self.device, f"{what}: {len(results)} results for 1")
        if results[0].is_bad():
            raise self._refused(what, results[0].value)

    async def _call(self, command: CommandAddress, args: Sequence[Value]) -> list[Value]:
        cmd = _as(OpcUaCommand, command)
        what = f"call {cmd.name}"
        request = ua.CallMethodRequest(
            ObjectId=cmd.object, MethodId=cmd.method, InputArguments=_arguments(cmd, args)
        )
        client = self._session()
        try:
            results = await client.uaclient.call([request])
            self._last_reply = asyncio.get_running_loop().time()
        except TimeoutError:
            raise
        except LIBRARY_ERRORS as exc:
            raise self._failure(what, exc) from exc
        if len(results) != 1:
            raise ProtocolError(self.device, f"{what}: {len(results)} results for 1")
        result = results[0]
        if result.StatusCode is not None and result.StatusCode.is_bad():
            raise self._refused(what, result.StatusCode.value)
        try:
            return [plain(v.Value) for v in result.OutputArguments or []]
        except TypeError as exc:
            raise ProtocolError(self.device, f"{what}: {exc}") from None

    # -- errors ------------------------------------------------------------------

    def _failure(self, what: str, exc: Exception) -> FlexctlError:
        """Map an asyncua or socket exception (other than a timeout) into flexctl's tree."""
        if isinstance(exc, UaStatusCodeError):
            return self._refused(what, exc.code)
        if isinstance(exc, OSError):
            return NotConnectedError(self.device, f"{what}: {exc or type(exc).__name__}")
        # asyncua's decoder raises whatever the bytes provoke on a malformed reply.
        return ProtocolError(self.device, f"{what}: bad reply ({type(exc).__name__}: {exc})")

    def _refused(self, what: str, code: int) -> FlexctlError:
        """The error for a Bad status code the server answered with."""
        name = status_name(code)
        if code in LINK_LOST_CODES:
            return NotConnectedError(self.device, f"{what}: {name}")
        if code == StatusCodes.BadInvalidState:
            return DeviceBusyError(f"{self.device}: {what}: device busy ({name})")
        return ProtocolError(self.device, what, code=code, status=name)


class _LinkWatch(Observer):
    """Tells the transport when asyncua's socket goes down, even between requests."""

    _NO_TIMING: ClassVar[AbstractContextManager[None]] = nullcontext()

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost

    def observe_request(self, request: Any) -> AbstractContextManager[None]:
        return self._NO_TIMING  # the base Observer times every request; we need none

    def on_state_change(self, state: UaClientState) -> None:
        if state is UaClientState.DISCONNECTED:
            self._on_lost()


A = TypeVar("A", OpcUaSignal, OpcUaCommand)


def _as(kind: type[A], address: SignalAddress | CommandAddress) -> A:
    if not isinstance(address, kind):
        raise ConfigurationError(
            address.spec.where,
            f"{address.name} is not an OPC UA address ({type(address).__name__})",
        )
    return address


def _read_what(signals: Sequence[OpcUaSignal]) -> str:
    names = ", ".join(s.name for s in signals[:4])
    return f"read {names}{' ...' if len(signals) > 4 else ''}"


def _owner_of(method: ua.NodeId, where: Where, what: str) -> ua.NodeId:
    """The object that owns a method: its string id without the last dot segment."""
    identifier = method.Identifier
    if isinstance(identifier, str) and "." in identifier:
        return ua.NodeId(ua.String(identifier.rpartition(".")[0]), method.NamespaceIndex)
    raise ConfigurationError(
        where,
        f"{what}: cannot tell the object from method {method.to_string()!r}; "
        "add 'object: <NodeId>'",
    )


def _arg_types(raw: Any, spec: CommandSpec, where: Where) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise ConfigurationError(where, f"command {spec.name}: arg_types must be a list of types")
    if len(raw) != len(spec.args):
        raise ConfigurationError(
            where,
            f"command {spec.name}: {len(raw)} arg_types for {len(spec.args)} args",
        )
    return tuple(canonical_type(t, where) for t in raw)


def _arguments(command: OpcUaCommand, args: Sequence[Value]) -> list[ua.Variant]:
    """Method arguments as Variants: by the profile's arg_types, else by Python type."""
    if command.arg_types is None:
        return [ua.Variant(v, variant_type_of(v)) for v in args]
    return [
        ua.Variant(check_value(t, v, f"{command.name}({name})"), variant_type(t))
        for t, v, name in zip(command.arg_types, args, command.spec.args, strict=True)
    ]


def _cert(key: KeyFile) -> CertProperties:
    return CertProperties(key.content, key.extension, key.password)
