"""asyncua's binary server on a socket bound beforehand, refusing unsecured sessions.

asyncua opens a secure channel without security to anyone (the spec allows it
for discovery) and then serves a session on it even when no endpoint without
security is offered: a client that skips its own endpoint check would log in
with its password in clear text. So each connection's processor here answers
every service but discovery with BadSecurityModeRejected on a channel without
message security, unless such an endpoint is offered on purpose.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

#: What a channel without security may still ask: where the secure endpoints are.
DISCOVERY: Final = frozenset(
    ua.NodeId(ua.Int32(getattr(ObjectIds, f"{name}Request_Encoding_DefaultBinary")))
    for name in ("GetEndpoints", "FindServers", "FindServersOnNetwork")
)


class BoundBinaryServer(BinaryServer):
    """asyncua's binary server on a socket bound beforehand (port 0: a free port)."""

    def __init__(
        self,
        iserver: InternalServer,
        sock: socket.socket,
        limits: Any,
        *,
        insecure: bool,
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(iserver, host, port, limits)
        self._sock = sock
        self._insecure = insecure

    def _make_protocol(self) -> OPCUAProtocol:
        return _Protocol(
            self._insecure,
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._make_protocol, sock=self._sock)
        self.cleanup_task = loop.create_task(self._close_task_loop())


class _Protocol(OPCUAProtocol):
    """One client connection, with :class:`_Processor` in place of asyncua's."""

    def __init__(self, insecure: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._insecure = insecure

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is None:  # refused (too many connections)
            return
        # Replaced before any message arrives: the receive loop reads self.processor per message.
        self.processor = _Processor(self._insecure, self.iserver, self.transport, self.limits)
        self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]


class _Processor(UaProcessor):
    """asyncua's processor, but no session on a channel without message security."""

    def __init__(self, insecure: bool, *args: Any) -> None:
        super().__init__(*args)
        self._insecure = insecure

    async def _process_message(
        self, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any
    ) -> bool:
        mode = getattr(self._connection.security_policy, "Mode", ua.MessageSecurityMode.None_)
        if (
            not self._insecure
            and mode != ua.MessageSecurityMode.SignAndEncrypt
            and typeid not in DISCOVERY
        ):
            # Answered as a ServiceFault by process_message.
            raise ServiceError(StatusCodes.BadSecurityModeRejected)
        result: bool = await super()._process_message(  # type: ignore[no-untyped-call]
            typeid, requesthdr, seqhdr, body
        )
        return result
