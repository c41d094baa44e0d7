"""Self-signed OPC UA application certificates, made with ``cryptography``.

The server makes its own certificate and key at first start
(:func:`ensure_certificate`) and keeps them: a client that trusted the
certificate once keeps trusting it after a restart. The key file is readable by
its owner only. The certificate carries the application URI in its
SubjectAltName, as OPC UA requires (OPC 10000-6 6.2.2), and the host names the
server is reached by.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Validity of a new certificate.
DAYS = 5 * 365
KEY_BITS = 2048


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate and its private key, both PEM files."""

    certificate: Path
    private_key: Path


def make_certificate(
    folder: Path,
    name: str,
    application_uri: str,
    hosts: tuple[str, ...] = ("localhost",),
    *,
    client: bool = False,
) -> CertificateFiles:
    """Write a new self-signed certificate ``name.pem`` and key ``name.key.pem`` into ``folder``.

    Args:
        folder: where both files go (made if missing).
        name: file stem and common name.
        application_uri: the application's URI (SubjectAltName URI).
        hosts: DNS names or IP addresses the application is reached by.
        client: a client certificate (clientAuth) rather than a server's (serverAuth).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client clock a little behind
        .not_valid_after(now + timedelta(days=DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(application_uri, hosts)), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    certificate = builder.sign(key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    files = CertificateFiles(folder / f"{name}.pem", folder / f"{name}.key.pem")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is created owner-only, never world-readable even for a moment.
    descriptor = os.open(files.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key_pem)
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return files


def ensure_certificate(
    folder: Path, name: str, application_uri: str, hosts: tuple[str, ...]
) -> CertificateFiles:
    """The server certificate in ``folder``, made on first use and kept afterwards.

    A kept certificate whose application URI is another is replaced: the
    server could not present it (clients check the URI against the session's).
    """
    files = CertificateFiles(folder / f"{name}.pem", folder / f"{name}.key.pem")
    if (
        files.certificate.is_file()
        and files.private_key.is_file()
        and application_uri_of(files.certificate.read_bytes()) == application_uri
    ):
        return files
    return make_certificate(folder, name, application_uri, hosts)


def application_uri_of(pem: bytes) -> str | None:
    """The first SubjectAltName URI of a PEM certificate, or None."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = alt.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _alt_names(uri: str, hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names
