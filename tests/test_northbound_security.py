"""The northbound server's message security: Basic256Sha256 SignAndEncrypt, certificates, trust."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from test_northbound_server import (
    TIMEOUT,
    USERS,
    call,
    prompt_waiting,
    read,
    serving,
)

from flexctl.northbound.certificates import (
    CertificateFiles,
    application_uri_of,
    ensure_certificate,
    make_certificate,
)
from flexctl.northbound.server import CERTIFICATE_NAME
from flexctl.supervisor.batch_state import BatchState

CLIENT_URI = "urn:flexctl:test:console"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


def console_certificate(folder: Path) -> CertificateFiles:
    return make_certificate(folder, "console", CLIENT_URI, client=True)


async def secure_client(url: str, pki: Path, files: CertificateFiles, user: str) -> Client:
    """A client with its own certificate that trusts the server's (from the server's folder)."""
    client = Client(url, timeout=TIMEOUT)
    client.application_uri = CLIENT_URI
    client.set_user(user)
    client.set_password(USERS[user][1])
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(files.certificate),
        str(files.private_key),
        server_certificate=str(pki / f"{CERTIFICATE_NAME}.pem"),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


async def test_sign_and_encrypt_with_a_client_certificate_end_to_end(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki, insecure=False) as served:
        files = console_certificate(tmp_path / "client")
        client = await secure_client(served.server.endpoint, pki, files, "op1")
        await client.connect()
        try:
            policy = client.security_policy
            assert policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
            assert policy.URI.endswith("#Basic256Sha256")
            assert await call(client, "Start") == "Start: Idle -> Running"
            await prompt_waiting(served.prompter, "scan_bag")
            await call(client, "AnswerPrompt", "scan_bag", "BAG-0007", USERS["op1"][1])
            await prompt_waiting(served.prompter, "release")
            assert await read(client, "Batch.Step") == "release"
        finally:
            await client.disconnect()
        assert served.executor.results["scan_bag"]["signer"] == "op1"
        assert served.executor.state is BatchState.Running


async def test_by_default_only_signed_and_encrypted_endpoints_are_offered(
    tmp_path: Path, pki: Path
) -> None:
    async with serving(tmp_path, pki, insecure=False) as served:
        client = Client(served.server.endpoint, timeout=TIMEOUT)
        endpoints = await client.connect_and_get_server_endpoints()
        assert {(e.SecurityPolicyUri.rpartition("#")[2], e.SecurityMode) for e in endpoints} == {
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)
        }
        for endpoint in endpoints:
            assert [t.TokenType for t in endpoint.UserIdentityTokens] == [ua.UserTokenType.UserName]
        plain = Client(served.server.endpoint, timeout=TIMEOUT)
        plain.set_user("op1")
        plain.set_password(USERS["op1"][1])
        with pytest.raises(UaError, match="BadSecurityModeRejected"):
            await plain.connect()
        plain.disconnect_socket()


async def test_no_session_on_a_channel_without_security_even_for_a_client_that_insists(
    tmp_path: Path, pki: Path
) -> None:
    """asyncua alone would serve it; a client that skips its endpoint check is refused here."""
    async with serving(tmp_path, pki, insecure=False) as served:
        rogue = Client(served.server.endpoint, timeout=TIMEOUT)
        await rogue.connect_socket()
        try:
            await rogue.send_hello()
            await rogue.open_secure_channel()  # allowed: discovery needs it
            assert await rogue.get_endpoints()
            params = ua.CreateSessionParameters(
                ClientDescription=ua.ApplicationDescription(ApplicationUri="urn:rogue"),
                EndpointUrl=served.server.endpoint,
                SessionName="rogue",
                ClientNonce=bytes(32),
                RequestedSessionTimeout=60000,
            )
            with pytest.raises(UaStatusCodeError) as refused:
                await rogue.uaclient.create_session(params)
            assert ua.StatusCode(refused.value.code).name == "BadSecurityModeRejected"
        finally:
            rogue.disconnect_socket()


async def test_trusted_clients_refuses_an_unknown_client_certificate(
    tmp_path: Path, pki: Path
) -> None:
    trusted = tmp_path / "trusted"
    make_certificate(trusted, "other-console", "urn:flexctl:test:other", client=True)
    files = console_certificate(tmp_path / "client")
    async with serving(tmp_path, pki, insecure=False, trusted_clients=trusted) as served:
        client = await secure_client(served.server.endpoint, pki, files, "op1")
        with pytest.raises(UaStatusCodeError) as refused:
            await client.connect()
        client.disconnect_socket()
        assert ua.StatusCode(refused.value.code).name == "BadCertificateUntrusted"
    # Once its certificate is trusted (the list is read at start), the console gets in.
    (trusted / "console.pem").write_bytes(files.certificate.read_bytes())
    (tmp_path / "again").mkdir()
    async with serving(tmp_path / "again", pki, insecure=False, trusted_clients=trusted) as served:
        client = await secure_client(served.server.endpoint, pki, files, "op1")
        await client.connect()
        try:
            assert await read(client, "Batch.State") == "Idle"
        finally:
            await client.disconnect()


def test_the_server_certificate_is_made_once_and_kept(tmp_path: Path) -> None:
    uri = "urn:flexctl:supervisor:test"
    first = ensure_certificate(tmp_path, "server", uri, ("127.0.0.1", "localhost"))
    pem = first.certificate.read_bytes()
    assert application_uri_of(pem) == uri
    assert stat.S_IMODE(first.private_key.stat().st_mode) == 0o600
    again = ensure_certificate(tmp_path, "server", uri, ("127.0.0.1",))
    assert again == first and again.certificate.read_bytes() == pem
    moved = ensure_certificate(tmp_path, "server", "urn:other", ("127.0.0.1",))
    assert application_uri_of(moved.certificate.read_bytes()) == "urn:other"
