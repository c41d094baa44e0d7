"""asyncua, subclassed for the supervisor's server: who is logged in, and a socket we bound.

- :class:`StoreUsers` logs people in against the users of the record store
  (scrypt password hashes); a refusal is audited. Anonymous sessions never get
  this far: the server offers the UserName token only.
- :class:`Session` records, for the duration of a Call request, which session
  (and so which user) calls, in :data:`calling`: asyncua hands a method only
  its arguments.
- :class:`UaServer` listens on a socket bound before it starts (port 0 gives a
  free port that the endpoint then names), refuses sessions on channels
  without message security unless asked to allow them
  (:mod:`~flexctl.northbound.ua_wire`), and shares the standard address space
  between servers of one process, as the twins' servers do.

asyncua's classes are subclassed, never patched, so other servers in the same
process are untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from flexctl.northbound.certificates import CertificateFiles
from flexctl.northbound.roles import roles_of
from flexctl.northbound.ua_wire import BoundBinaryServer
from flexctl.record.passwords import PasswordHashError, dummy_verify, verify_password
from flexctl.record.store import AuditRecord
from flexctl.record.users import UserStore, audit_actor, find_user
from simulators.servers import opcua_address_space

#: The session of the Call request being served (None outside one).
calling: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "flexctl_northbound_calling", default=None
)


class StoreUsers(UserManager):
    """Name and password against the store's users; enabled users with a role only.

    The password check is scrypt, on the event loop: asyncua asks for the user
    synchronously. It costs about 0.1 s per login at the default cost, once per
    session, never per request.
    """

    def __init__(self, store: UserStore) -> None:
        self.store = store

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        why = self._refusal(username or "", password or "")
        if why is None:
            return User(role=UserRole.User, name=username)
        self.store.audit(
            AuditRecord(
                utc=datetime.now(UTC),
                actor=audit_actor(username),
                action="authentication refused",
                object="opcua session",
                reason=why,
            )
        )
        return None

    def _refusal(self, user_id: str, password: str) -> str | None:
        """Why ``user_id`` may not log in with ``password``; None if they may."""
        user = find_user(self.store, user_id) if user_id else None
        if user is None:
            dummy_verify(password)  # as slow as a known id: timing does not tell ids apart
            return f"no user {audit_actor(user_id or None)!r}"
        try:
            if not verify_password(password, user.password_hash):
                return f"wrong password for {user_id!r}"
        except PasswordHashError as exc:
            return f"the stored password hash of {user_id!r} is unusable: {exc}"
        if user.disabled:
            return f"user {user_id!r} is disabled"
        if not roles_of(user.roles):
            return f"user {user_id!r} holds no operator, supervisor or qa role"
        return None


class Session(InternalSession):
    """A client's session that says who calls while a Call request is served."""

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token = calling.set(self)
        try:
            results: list[ua.CallMethodResult] = await super().call(params)
            return results
        finally:
            calling.reset(token)

    async def close_session(self, delete_subs: bool = True) -> None:
        await super().close_session(delete_subs)
        closed = getattr(self.iserver, "session_closed", None)
        if closed is not None:
            closed(self)


_ANONYMOUS = User(role=UserRole.Anonymous)


class _InternalServer(InternalServer):
    """Shared standard nodes; keeps its client sessions so that stop() closes them all."""

    def __init__(self, user_manager: UserManager, closed: Callable[[Session], None]) -> None:
        super().__init__(user_manager=user_manager)
        self.sessions: set[Session] = set()
        self._closed = closed

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        opcua_address_space.install(self.aspace, await opcua_address_space.standard_nodes())

    def create_session(
        self, name: str, user: User = _ANONYMOUS, external: bool = False
    ) -> InternalSession:
        session = Session(self, self.aspace, self.subscription_service, name, user, external)
        self.sessions.add(session)
        return session

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self._closed(session)


class UaServer(Server):
    """The asyncua server; see the module docstring.

    Args:
        sock: the bound listening socket.
        url: the endpoint URL clients are told (with the bound port).
        users: who may log in.
        certificate: the server's certificate and key; None offers no secure endpoint.
        insecure: also offer an endpoint without message security.
        application_uri: must match the certificate's SubjectAltName URI.
        trusted: DER client certificates accepted; None accepts any (people still log in).
        closed: called with each client session that ends.
    """

    def __init__(
        self,
        *,
        sock: socket.socket,
        url: str,
        users: UserManager,
        certificate: CertificateFiles | None,
        insecure: bool,
        application_uri: str,
        trusted: frozenset[bytes] | None,
        closed: Callable[[Session], None],
    ) -> None:
        self._internal = _InternalServer(users, closed)
        super().__init__(iserver=self._internal)
        self._sock = sock
        self._insecure = insecure
        self._certificate = certificate
        self.name = "flexctl supervisor"
        self.product_uri = "urn:flexctl"
        self.manufacturer_name = "flexctl"
        self._application_uri = application_uri
        self.set_endpoint(url)
        self.disable_clock()  # its once-a-second ticker writes a clock nobody needs
        self.allow_remote_admin(False)
        policies = []
        if certificate is not None:
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        if insecure:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        self.set_security_policy(policies)
        self.set_identity_tokens([ua.UserNameIdentityToken])  # no anonymous sessions
        if trusted is not None:
            self.set_certificate_validator(_TrustList(trusted))

    async def init(self, shelf_file: Path | None = None) -> None:
        await super().init(shelf_file)
        if self._certificate is not None:
            await self.load_certificate(self._certificate.certificate.read_bytes(), "pem")
            await self.load_private_key(self._certificate.private_key.read_bytes(), format="pem")

    async def start(self) -> None:
        # Server.start(), with our binary server on the socket we bound.
        await self._setup_server_nodes()
        await self.iserver.start()
        self.bserver = BoundBinaryServer(
            self.iserver, self._sock, self.limits, insecure=self._insecure
        )
        self.bserver.set_policies(self._policies)
        await self.bserver.start()

    async def stop(self) -> None:
        for session in list(self._internal.sessions):
            await session.close_session(True)
        await super().stop()
        # A connection closed just now still has asyncua tasks ending.
        await asyncio.sleep(0)


class _TrustList:
    """A certificate validator that accepts only the listed client certificates."""

    def __init__(self, trusted: frozenset[bytes]) -> None:
        self._trusted = trusted

    async def __call__(self, certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if certificate.public_bytes(serialization.Encoding.DER) not in self._trusted:
            raise ServiceError(StatusCodes.BadCertificateUntrusted)


def trusted_certificates(folder: Path) -> frozenset[bytes]:
    """The client certificates (PEM or DER files) in ``folder``, as DER."""
    found: set[bytes] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".pem", ".der", ".crt"):
            continue
        content = path.read_bytes()
        if content.lstrip().startswith(b"-----BEGIN CERTIFICATE"):
            cert = x509.load_pem_x509_certificate(content)
        elif content.lstrip().startswith(b"-----"):
            continue  # a key or a request kept beside the certificates
        else:
            cert = x509.load_der_x509_certificate(content)
        found.add(cert.public_bytes(serialization.Encoding.DER))
    return frozenset(found)
