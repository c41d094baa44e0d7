"""A twin model behind a real OPC UA server (asyncua), addressed by the profile.

Each profile signal is a variable node at its NodeId (parent objects made from
the dotted string id), read lazily from the model and written through it; each
command is a method node on its object. The server is strict where real ones
are: a write carrying timestamps is refused (BadWriteNotSupported), as
open62541 does. Faults act on the wire (see :mod:`simulators.servers.opcua_wire`).

asyncua's classes are subclassed, never patched, so other servers in the same
process are untouched. The standard address space is shared between twins
(see :mod:`simulators.servers.opcua_address_space`), so a start takes ~40 ms.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import NodeData
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from flexctl.errors import (
    ConfigurationError,
    DeviceBusyError,
    FlexctlError,
    OutOfRangeError,
    ProtocolError,
)
from flexctl.profile import Profile, Value
from flexctl.transports.opcua import OpcUaCommand, OpcUaSignal, OpcUaTransport
from flexctl.transports.opcua_endpoint import certificate_uri
from flexctl.transports.opcua_types import variant_type, variant_type_of
from simulators.models.base import TwinModel, UnknownTagError
from simulators.servers import opcua_address_space
from simulators.servers.base import TwinServer
from simulators.servers.opcua_wire import TwinBinaryServer, TwinProtocol

_DEFAULTS: dict[ua.VariantType, Value] = {
    ua.VariantType.Boolean: False,
    ua.VariantType.String: "",
    ua.VariantType.Float: 0.0,
    ua.VariantType.Double: 0.0,
}
_BASE_DATA_TYPE = ua.NodeId(ua.Int32(ObjectIds.BaseDataType))


def _refusal(code: int) -> UaStatusCodeError:
    """The exception asyncua turns into a ServiceFault carrying ``code``."""
    error: UaStatusCodeError = UaStatusCodeError(code)  # type: ignore[no-untyped-call]
    return error


def status_of(exc: FlexctlError) -> int:
    """The status code a real device answers a model's refusal with."""
    if isinstance(exc, OutOfRangeError):
        return StatusCodes.BadOutOfRange
    if isinstance(exc, DeviceBusyError):
        return StatusCodes.BadInvalidState
    if isinstance(exc, UnknownTagError):
        return StatusCodes.BadNodeIdUnknown
    if isinstance(exc, ProtocolError):
        return StatusCodes.BadTypeMismatch
    return StatusCodes.BadInternalError


class OpcUaTwinServer(TwinServer):
    """Serve ``model`` over OPC UA where ``profile`` says; see the module docstring.

    ``users`` (name to password) refuses anonymous sessions; ``certificate`` and
    ``private_key`` (PEM or DER files) add a Basic256Sha256 SignAndEncrypt endpoint.
    ``requests`` counts what clients asked, by service (``Read``, ``Write``, ``Call``,
    ``OpenSecureChannel`` ...), so tests can see how many requests crossed the wire.
    """

    def __init__(
        self,
        model: TwinModel,
        profile: Profile,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
    ) -> None:
        super().__init__(model, profile)
        if (certificate is None) != (private_key is None):
            raise ValueError("give both certificate and private_key, or neither")
        self.host = host
        self.port = port
        self.users = dict(users) if users is not None else None
        # Read now, not on the loop (asyncua would read them through a worker thread).
        self._certificate = None if certificate is None else certificate.read_bytes()
        self._private_key = None if private_key is None else private_key.read_bytes()
        self._signals = [OpcUaTransport.parse_signal(s) for s in profile.signals.values()]
        self._commands = [OpcUaTransport.parse_command(c) for c in profile.commands.values()]
        self._plan = _Plan(self._signals, self._commands)  # config errors now, not at start
        self.requests: Counter[str] = Counter()
        # Signal name -> the status code its value is served with (absent: Good).
        self._status: dict[str, int] = {}
        self._server: _TwinUaServer | None = None
        #: Open client connections (drop_connections() closes them).
        self.connections: set[TwinProtocol] = set()

    def set_status(self, signal: str, code: int | None) -> None:
        """Serve ``signal``'s value with status ``code`` (None: Good again).

        A failed sensor's last value comes as UncertainLastUsableValue, a
        drifting one as UncertainSensorNotAccurate: the value is still there.
        """
        if signal not in self.profile.signals:
            raise KeyError(signal)
        if code is None:
            self._status.pop(signal, None)
        else:
            self._status[signal] = code

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"opc.tcp://{host}:{self.port}/flexctl/{self.profile.device}"

    async def start(self) -> None:
        if self._server is not None:
            return
        # Bind first: with port 0 the kernel picks a port, kept for every later start.
        # Clients that connect before the server is ready wait in the listen backlog.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        self.port = sock.getsockname()[1]
        server = _TwinUaServer(self, sock)
        try:
            await server.init()
            await self._populate(server)
            await server.start()
        except BaseException:
            sock.close()
            await server.stop()
            raise
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop()
        await self._reap()

    async def drop_connections(self) -> None:
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.close()
        await self._reap()

    async def _reap(self) -> None:
        """Wait until every closed connection's tasks have ended (tests check for leaks)."""
        await asyncio.sleep(0)  # lets connection_lost run for sockets closed just now
        closed = [p for p in self.connections if p.closed]
        await asyncio.gather(*(t for p in closed for t in p.tasks()), return_exceptions=True)
        self.connections.difference_update(closed)

    # -- address space -----------------------------------------------------------

    async def _populate(self, server: _TwinUaServer) -> None:
        """Namespaces, then objects, variables and methods, parents before children."""
        namespaces = {s.node.NamespaceIndex for s in self._signals}
        namespaces |= {c.method.NamespaceIndex for c in self._commands}
        namespaces |= {c.object.NamespaceIndex for c in self._commands}
        for index in range(2, max(namespaces, default=1) + 1):
            uri = f"urn:flexctl:twin:{self.profile.device}" + (f":{index}" if index > 2 else "")
            await server.register_namespace(uri)
        plan = self._plan
        objects = server.get_objects_node()
        for node_id, item in plan.ordered():
            parent_id = plan.parent(node_id)
            parent = objects if parent_id is None else server.get_node(parent_id)
            name = ua.QualifiedName(_browse_name(node_id, item), node_id.NamespaceIndex)
            if isinstance(item, OpcUaSignal):
                await self._add_variable(server, parent, node_id, name, item)
            elif isinstance(item, OpcUaCommand):
                await self._add_method(parent, node_id, name, item)
            else:
                await parent.add_object(node_id, name)

    async def _add_variable(
        self,
        server: Server,
        parent: Node,
        node_id: ua.NodeId,
        name: ua.QualifiedName,
        sig: OpcUaSignal,
    ) -> None:
        default = _DEFAULTS.get(sig.vtype, 0)
        node = await parent.add_variable(node_id, name, default, varianttype=sig.vtype)
        if sig.spec.writable:
            await node.set_writable()
        server.set_attribute_value_callback(node_id, self._reader(sig))
        server.set_attribute_value_setter(node_id, self._writer(sig))

    async def _add_method(
        self, parent: Node, node_id: ua.NodeId, name: ua.QualifiedName, cmd: OpcUaCommand
    ) -> None:
        types = cmd.arg_types or ()
        inputs = [
            ua.Argument(
                Name=arg,
                DataType=ua.NodeId(ua.Int32(variant_type(types[i]).value))
                if types
                else _BASE_DATA_TYPE,
                ValueRank=-1,
            )
            for i, arg in enumerate(cmd.spec.args)
        ]
        returns = cmd.spec.raw.get("returns") or []
        outputs = [
            ua.Argument(Name=str(r), DataType=_BASE_DATA_TYPE, ValueRank=-1) for r in returns
        ]
        await parent.add_method(node_id, name, self._method(cmd), inputs, outputs)

    def _reader(self, sig: OpcUaSignal) -> Callable[[ua.NodeId, AttributeIds], ua.DataValue]:
        model, spec, vtype, statuses = self.model, sig.spec, sig.vtype, self._status

        def read(node_id: ua.NodeId, attr: AttributeIds) -> ua.DataValue:
            # The model integrates its physics up to now on each read.
            try:
                wire = spec.encode(model.read(spec.name))
            except FlexctlError as exc:
                return ua.DataValue(StatusCode=ua.StatusCode(ua.UInt32(status_of(exc))))
            code = statuses.get(spec.name)
            status = None if code is None else ua.StatusCode(ua.UInt32(code))
            return ua.DataValue(ua.Variant(wire, vtype), StatusCode=status)  # None means Good

        return read

    def _writer(self, sig: OpcUaSignal) -> Callable[[NodeData, AttributeIds, ua.DataValue], None]:
        model, spec, device = self.model, sig.spec, self.profile.device

        def write(node: NodeData, attr: AttributeIds, data: ua.DataValue) -> None:
            # asyncua ignores a setter's return value; a raised status code becomes the
            # answer to the Write request (a ServiceFault carrying that code).
            if data.SourceTimestamp is not None or data.ServerTimestamp is not None:
                raise _refusal(StatusCodes.BadWriteNotSupported)
            if not spec.writable:
                raise _refusal(StatusCodes.BadNotWritable)
            wire = None if data.Value is None else data.Value.Value
            try:
                model.write(spec.name, spec.decode(wire, device))
            except FlexctlError as exc:
                raise _refusal(status_of(exc)) from None

        return write

    def _method(self, cmd: OpcUaCommand) -> Callable[..., Any]:
        model, name, types = self.model, cmd.name, cmd.arg_types

        # async, so asyncua runs it on the loop and not in its thread pool
        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
            if types is not None and (
                len(args) != len(types)
                or any(a.VariantType != variant_type(t) for a, t in zip(args, types, strict=False))
            ):
                return ua.StatusCode(ua.UInt32(StatusCodes.BadTypeMismatch))
            try:
                results = model.call(name, [a.Value for a in args])
            except FlexctlError as exc:
                return ua.StatusCode(ua.UInt32(status_of(exc)))
            return [ua.Variant(v, variant_type_of(v)) for v in results]

        return call


# -- address-space plan ------------------------------------------------------------

_Item = OpcUaSignal | OpcUaCommand | None  # None: an object made to hold children


class _Plan:
    """Every node the profile needs, with the parent each hangs from."""

    def __init__(self, signals: Sequence[OpcUaSignal], commands: Sequence[OpcUaCommand]) -> None:
        self.items: dict[ua.NodeId, _Item] = {}
        for sig in signals:
            self._claim(sig.node, sig)
        for cmd in commands:
            self._claim(cmd.method, cmd)
        for cmd in commands:
            if isinstance(self.items.get(cmd.object), OpcUaSignal | OpcUaCommand):
                raise ConfigurationError(
                    cmd.spec.where, f"command {cmd.name}: its object is not an object node"
                )
            self.items.setdefault(cmd.object, None)
        for node_id in list(self.items):
            ancestor = _dotted_parent(node_id)
            while ancestor is not None:
                self.items.setdefault(ancestor, None)
                ancestor = _dotted_parent(ancestor)

    def _claim(self, node_id: ua.NodeId, item: OpcUaSignal | OpcUaCommand) -> None:
        if node_id.NamespaceIndex < 2:
            raise ConfigurationError(
                item.spec.where,
                f"{item.name}: a twin serves its nodes in namespace 2 and up, "
                f"not {node_id.to_string()!r}",
            )
        other = self.items.get(node_id)
        if other is not None:
            raise ConfigurationError(
                item.spec.where, f"{item.name}: node {node_id.to_string()} is {other.name}'s too"
            )
        self.items[node_id] = item

    def parent(self, node_id: ua.NodeId) -> ua.NodeId | None:
        """The parent node id, None for the Objects folder."""
        item = self.items[node_id]
        if isinstance(item, OpcUaCommand):
            return item.object
        return _dotted_parent(node_id)

    def ordered(self) -> list[tuple[ua.NodeId, _Item]]:
        """Parents before their children."""
        done: set[ua.NodeId] = set()
        order: list[tuple[ua.NodeId, _Item]] = []

        def visit(node_id: ua.NodeId) -> None:
            if node_id in done:
                return
            done.add(node_id)
            parent = self.parent(node_id)
            if parent is not None:
                visit(parent)
            order.append((node_id, self.items[node_id]))

        for node_id in self.items:
            visit(node_id)
        return order


def _dotted_parent(node_id: ua.NodeId) -> ua.NodeId | None:
    identifier = node_id.Identifier
    if isinstance(identifier, str) and "." in identifier:
        return ua.NodeId(ua.String(identifier.rpartition(".")[0]), node_id.NamespaceIndex)
    return None


def _browse_name(node_id: ua.NodeId, item: _Item) -> str:
    identifier = node_id.Identifier
    if isinstance(identifier, str):
        return identifier.rpartition(".")[2]
    return item.name if item is not None else str(identifier)


# -- asyncua, subclassed -----------------------------------------------------------


class _TwinUaServer(Server):
    """An asyncua Server on a socket we bound, with our protocol, faults and users."""

    def __init__(self, twin: OpcUaTwinServer, sock: socket.socket) -> None:
        users = None if twin.users is None else _Users(twin.users)
        super().__init__(iserver=_TwinInternalServer(user_manager=users))
        self._twin = twin
        self._sock = sock
        self.name = f"flexctl twin {twin.profile.device}"
        self.set_endpoint(twin.endpoint)
        # Its once-a-second ticker writes a clock nobody reads and makes stop() wait for it.
        self.disable_clock()
        # Let the write setter see the timestamps the client sent (strict servers refuse them).
        self.set_force_server_timestamp(False)
        self.allow_remote_admin(False)
        policies = [ua.SecurityPolicyType.NoSecurity]
        if twin._certificate is not None:
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        self.set_security_policy(policies)
        # Name and password when there are users, else anonymous only.
        tokens: list[type] = [
            ua.AnonymousIdentityToken if twin.users is None else ua.UserNameIdentityToken
        ]
        self.set_identity_tokens(tokens)

    async def init(self, shelf_file: Path | None = None) -> None:
        await super().init(shelf_file)
        twin = self._twin
        uri = f"urn:flexctl:twin:{twin.profile.device}:server"
        if twin._certificate is not None and twin._private_key is not None:
            uri = certificate_uri(twin._certificate) or uri
            await self.load_certificate(twin._certificate, _format(twin._certificate))
            await self.load_private_key(twin._private_key, format=_format(twin._private_key))
        await self.set_application_uri(uri)

    async def start(self) -> None:
        # Server.start(), with our binary server in place of asyncua's.
        await self._setup_server_nodes()
        await self.iserver.start()
        self.bserver = TwinBinaryServer(self._twin, self.iserver, self._sock, self.limits)
        self.bserver.set_policies(self._policies)
        await self.bserver.start()


class _TwinInternalServer(InternalServer):
    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        opcua_address_space.install(self.aspace, await opcua_address_space.standard_nodes())


class _Users(UserManager):
    """Name and password, compared in constant time; nobody else gets in."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        expected = self._users.get(username or "")
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


def _format(content: bytes) -> str:
    return "pem" if content.lstrip().startswith(b"-----") else "der"
