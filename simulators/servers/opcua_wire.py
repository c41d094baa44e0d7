"""The OPC UA twin's wire: asyncua's binary server, with counting and faults in the path.

Subclasses of asyncua's server-side classes (never patches, so other servers in
the process are untouched). Per connection, asyncua's processor is replaced by
one that counts requests by service and answers the ``error`` fault, and it
writes through a tap where ``corrupt`` damages answers. ``stall`` drops answers
(before they are encoded), ``delay`` holds each incoming message before it is
processed.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any, Protocol

from asyncua import ua
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import struct_from_binary

from simulators.servers.faults import Faults

_SERVICES = {
    ua.NodeId(getattr(ObjectIds, f"{name}Request_Encoding_DefaultBinary")): name
    for name in (
        "Read",
        "Write",
        "Call",
        "Browse",
        "GetEndpoints",
        "CreateSession",
        "ActivateSession",
        "CloseSession",
        "TranslateBrowsePathsToNodeIds",
        "CreateSubscription",
        "Publish",
    )
}


class WireOwner(Protocol):
    """What the wire needs of the twin server that owns it."""

    faults: Faults
    requests: Counter[str]
    connections: set[TwinProtocol]


class TwinBinaryServer(BinaryServer):
    """asyncua's binary server on a socket the twin bound, making our connections."""

    def __init__(
        self, twin: WireOwner, iserver: InternalServer, sock: socket.socket, limits: Any
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(iserver, host, port, limits)
        self._twin = twin
        self._sock = sock

    def _make_protocol(self) -> OPCUAProtocol:
        return TwinProtocol(
            self._twin,
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )

    async def start(self) -> None:
        # No periodic cleanup task: stop() and drop_connections() reap closed connections.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make_protocol, sock=self._sock)


class TwinProtocol(OPCUAProtocol):
    """One client connection, with our processor between asyncua and the socket."""

    def __init__(self, twin: WireOwner, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._twin = twin
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is None:  # refused (too many connections)
            return
        assert isinstance(transport, asyncio.Transport)
        self.processor = _TwinProcessor(
            self._twin, self.iserver, _WireTap(transport, self._twin), self.limits
        )
        self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]
        self._twin.connections.add(self)

    def connection_lost(self, ex: BaseException | None) -> None:
        super().connection_lost(ex)
        self.closed = True

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The per-connection tasks asyncua started (cancelled once the connection is lost)."""
        return [t for t in (self._task, self._activation_watchdog_task) if t is not None]


class _TwinProcessor(UaProcessor):
    """Counts services and applies the ``delay``, ``error`` and ``stall`` faults."""

    def __init__(
        self, twin: WireOwner, iserver: InternalServer, wire: _WireTap, limits: Any
    ) -> None:
        super().__init__(iserver, wire, limits)
        self._twin = twin

    def send_response(
        self,
        requesthandle: Any,
        seqhdr: Any,
        response: Any,
        msgtype: bytes = ua.MessageType.SecureMessage,
    ) -> None:
        if self._twin.faults.stall:
            # Taken and processed, never answered. Dropped before encoding, so no
            # sequence number is spent and the channel is still good after the stall.
            return
        super().send_response(requesthandle, seqhdr, response, msgtype)  # type: ignore[no-untyped-call]

    async def process(self, header: Any, body: Any) -> bool:
        if header.MessageType == ua.MessageType.SecureOpen:
            self._twin.requests["OpenSecureChannel"] += 1
        delay = self._twin.faults.delay
        if delay > 0:
            await asyncio.sleep(delay)  # wall seconds, by definition of the fault
        result: bool = await super().process(header, body)  # type: ignore[no-untyped-call]
        return result

    async def _process_message(
        self, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any
    ) -> bool:
        service = _SERVICES.get(typeid) or typeid.to_string()
        self._twin.requests[service] += 1
        code = self._twin.faults.error
        if (
            code is not None
            and service in ("Read", "Write", "Call")
            and self.session is not None
            and self.session.is_activated()
        ):
            response = _error_response(service, body, code)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)
            return True
        result: bool = await super()._process_message(  # type: ignore[no-untyped-call]
            typeid, requesthdr, seqhdr, body
        )
        return result


def _error_response(service: str, body: Any, code: int) -> Any:
    """A response to ``service`` whose every result carries ``code``."""
    status = ua.StatusCode(ua.UInt32(code))
    if service == "Read":
        read = struct_from_binary(ua.ReadParameters, body)
        response: Any = ua.ReadResponse()
        response.Results = [ua.DataValue(StatusCode=status) for _ in read.NodesToRead]
    elif service == "Write":
        write = struct_from_binary(ua.WriteParameters, body)
        response = ua.WriteResponse()
        response.Results = [status for _ in write.NodesToWrite]
    else:
        call = struct_from_binary(ua.CallParameters, body)
        response = ua.CallResponse()
        response.Results = [ua.CallMethodResult(StatusCode=status) for _ in call.MethodsToCall]
    return response


class _WireTap:
    """The processor's view of its socket, where ``stall`` and ``corrupt`` act on answers."""

    def __init__(self, transport: asyncio.Transport, twin: WireOwner) -> None:
        self._transport = transport
        self._twin = twin

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        faults = self._twin.faults
        if faults.stall:
            return  # the frames without sequence numbers (Acknowledge, Error)
        if faults.take_corrupt():
            # Damage the message type, so the client cannot mistake the frame for a
            # valid answer (OPC UA without security has no checksum to catch a flipped value).
            data = b"\xde\xad\xbe" + data[3:]
        self._transport.write(data)
