"""Parse an OPC UA endpoint: ``opc.tcp://[user:password@]host:port/path[?security=...]``.

Credentials come from the userinfo, message security from the ``security``
query in asyncua's ``set_security_string`` format
(``Policy,Mode,client_cert,client_key[,server_cert]``, a key password as
``key.pem::password``). Certificate files are read here, once, when the
transport is built: a missing file is a configuration error at load time, not
a connection failure hours later, and no file is read on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from asyncua import ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from flexctl.errors import ConfigurationError, Where

DEFAULT_PORT = 4840
MODES = ("Sign", "SignAndEncrypt")


@dataclass(frozen=True)
class KeyFile:
    """A certificate or key read from disk, with the format asyncua needs to load it."""

    content: bytes = field(repr=False)
    extension: str  # "pem" or "der"
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Security:
    """Message security for the secure channel."""

    policy: type[security_policies.SecurityPolicy]
    mode: ua.MessageSecurityMode
    certificate: KeyFile
    private_key: KeyFile
    server_certificate: KeyFile | None
    #: The client certificate's ApplicationUri; servers check it against CreateSession.
    application_uri: str | None


@dataclass(frozen=True)
class Endpoint:
    """An endpoint split into what asyncua needs; ``redacted`` is safe to log."""

    url: str
    redacted: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: Security | None = None


def parse_endpoint(endpoint: str, where: Where) -> Endpoint:
    """Split ``endpoint``; ConfigurationError (at ``where``) when it is malformed."""
    parts = urlsplit(endpoint)
    if parts.scheme != "opc.tcp":
        raise ConfigurationError(where, f"endpoint scheme must be opc.tcp, got {parts.scheme!r}")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(where, "endpoint: the port is not a number") from None
    if not host:
        raise ConfigurationError(where, "endpoint: no host")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = urlunsplit(("opc.tcp", netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"security"})
    if unknown:
        raise ConfigurationError(
            where, f"endpoint: unknown option {unknown[0]!r} (expected: security)"
        )
    security = None
    if "security" in query:
        security = _parse_security(query["security"][-1], where)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    user = f"{username}:***@" if username is not None else ""
    redacted = urlunsplit(
        ("opc.tcp", user + netloc, parts.path, "security=..." if security else "", "")
    )
    return Endpoint(url, redacted, username, password, security)


def _parse_security(text: str, where: Where) -> Security:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 5):
        raise ConfigurationError(
            where,
            "endpoint security: expected Policy,Mode,client_cert,client_key[,server_cert], "
            f"got {len(parts)} part(s)",
        )
    policy = getattr(security_policies, f"SecurityPolicy{parts[0]}", None)
    if parts[0] == "None" or not isinstance(policy, type):
        raise ConfigurationError(where, f"endpoint security: unknown policy {parts[0]!r}")
    if parts[1] not in MODES:
        raise ConfigurationError(
            where, f"endpoint security: mode must be one of {', '.join(MODES)}, got {parts[1]!r}"
        )
    key_path, _, key_password = parts[3].partition("::")
    certificate = _read(parts[2], where)
    private_key = _read(key_path, where, key_password or None)
    _check_key(private_key, where)
    return Security(
        policy=policy,
        mode=getattr(ua.MessageSecurityMode, parts[1]),
        certificate=certificate,
        private_key=private_key,
        server_certificate=_read(parts[4], where) if len(parts) == 5 else None,
        application_uri=_application_uri(certificate, where),
    )


def _read(path_text: str, where: Where, password: str | None = None) -> KeyFile:
    path = Path(path_text).expanduser()
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            where, f"endpoint security: cannot read {path}: {exc.strerror}"
        ) from None
    extension = "pem" if path.suffix.lower() == ".pem" or content.startswith(b"-----") else "der"
    return KeyFile(content, extension, password)


def _check_key(key: KeyFile, where: Where) -> None:
    """Load the private key once now, so a wrong file or password fails at load time."""
    password = None if key.password is None else key.password.encode()
    try:
        if key.extension == "pem":
            serialization.load_pem_private_key(key.content, password)
        else:
            serialization.load_der_private_key(key.content, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(where, f"endpoint security: private key: {exc}") from None


def _application_uri(certificate: KeyFile, where: Where) -> str | None:
    """The URI in the certificate's subjectAltName, which must match our ApplicationUri."""
    try:
        return certificate_uri(certificate.content)
    except ValueError:
        raise ConfigurationError(
            where, "endpoint security: the client certificate is not an X.509 certificate"
        ) from None


def certificate_uri(content: bytes) -> str | None:
    """The application URI in a PEM or DER certificate; ValueError if it is not one."""
    if content.lstrip().startswith(b"-----"):
        cert = x509.load_pem_x509_certificate(content)
    else:
        cert = x509.load_der_x509_certificate(content)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
