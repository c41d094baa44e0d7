"""The console's OPC UA side: one signed-and-encrypted session, reads and raw method calls.

The asyncua client runs on an event loop of its own thread, so that the
console's main thread may block on a person's typing (readline, getpass,
Ctrl-C) while the session's keep-alive and secure-channel renewal go on.
Every call from the main thread is a bounded wait on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from flexctl.errors import FlexctlError
from flexctl.northbound.address_space import NAMESPACE
from flexctl.northbound.certificates import (
    CertificateFiles,
    application_uri_of,
    make_certificate,
)

T = TypeVar("T")

#: File stem of the console's client certificate in its certificate folder.
CLIENT_NAME: Final = "flexctl-console"
TIMEOUT: Final = 10.0  # seconds: network answers; a bound, never a pace

#: What the console reads of the Batch object, in this order.
BATCH_FIELDS: Final = (
    "BatchId",
    "Procedure",
    "State",
    "PackMLState",
    "AllowedCommands",
    "UnitProcedure",
    "Step",
    "Runtime",
    "PendingPrompts",
    "ActiveAlarms",
)
DEVICE_FIELDS: Final = ("Status", "Link", "Alarms")


_LOGIN_REFUSED: Final = frozenset(
    {"BadUserAccessDenied", "BadIdentityTokenRejected", "BadIdentityTokenInvalid"}
)


class ConsoleError(FlexctlError):
    """The supervisor cannot be reached, refused the login, or the session was lost."""


@dataclass(frozen=True)
class Reply:
    """A method's answer: ``ok``, the status code's name, and the server's message."""

    ok: bool
    status: str
    message: str


@dataclass
class Device:
    """One device as read: status, link, alarm codes and its values (None: no value yet)."""

    name: str
    status: str = ""
    link: str = ""
    alarms: tuple[str, ...] = ()
    values: dict[str, object] = field(default_factory=dict)


@dataclass
class Snapshot:
    """The line's name, the Batch variables (by name) and the devices, read at once."""

    line: str
    batch: dict[str, object]
    devices: list[Device]

    def text(self, name: str) -> str:
        value = self.batch.get(name)
        return "" if value is None else str(value)

    def texts(self, name: str) -> list[str]:
        value = self.batch.get(name)
        return [str(v) for v in value] if isinstance(value, list | tuple) else []


def client_certificate(folder: Path) -> tuple[CertificateFiles, str]:
    """The console's certificate and key in ``folder`` (made on first use) and its URI."""
    files = CertificateFiles(folder / f"{CLIENT_NAME}.pem", folder / f"{CLIENT_NAME}.key.pem")
    if files.certificate.is_file() and files.private_key.is_file():
        uri = application_uri_of(files.certificate.read_bytes())
        if uri is not None:
            return files, uri
    uri = f"urn:flexctl:console:{socket.gethostname()}"
    return make_certificate(folder, CLIENT_NAME, uri, (socket.gethostname(),), client=True), uri


class Connection:
    """A logged-in session to a supervisor; see the module docstring.

    Use :meth:`open`; :meth:`close` when done (safe twice).
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="flexctl-console-ua", daemon=True
        )
        self._thread.start()
        self._client: Client | None = None
        self._ns = 0
        self._devices: dict[str, list[str]] = {}  # device -> its value names
        self._lost = False

    @classmethod
    def open(cls, endpoint: str, user: str, password: str, pki: Path) -> Connection:
        """Connect with Basic256Sha256 SignAndEncrypt and log in as ``user``.

        Raises:
            ConsoleError: unreachable, no secure endpoint, or the login refused.
        """
        connection = cls(endpoint)
        try:
            connection._run(connection._connect(user, password, pki), TIMEOUT * 3)
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Log out and stop the client's loop."""
        if self._client is not None:
            client, self._client = self._client, None
            # Already gone: nothing to log out of.
            with contextlib.suppress(ConsoleError, UaError, OSError):
                self._run(client.disconnect(), TIMEOUT)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    def alive(self) -> bool:
        """False once the session was lost."""
        return self._client is not None and not self._lost

    # -- what the console does ------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The Batch variables and every device, in one read request."""
        return self._run(self._snapshot(), TIMEOUT)

    def read_batch(self, name: str) -> object:
        """One Batch variable (``State``); None when it has no value."""
        values = self._run(self._read([f"Batch.{name}"]), TIMEOUT)
        return values[0]

    def call(self, method: str, *args: ua.Variant) -> Reply:
        """Call a Batch method; a refusal is a Reply too, with the server's message.

        asyncua's ``call_method`` raises on a Bad status and drops the message the
        server sends as the Status output; the raw call keeps it.
        """
        return self._run(self._call(method, list(args)), TIMEOUT)

    # -- on the client's loop -----------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise ConsoleError(f"{self.endpoint}: no answer within {timeout:g} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._lost = True
            raise ConsoleError(f"{self.endpoint}: connection lost ({exc})") from None
        except UaError as exc:  # a closed channel, a Bad read: the session is no use
            self._lost = True
            raise ConsoleError(f"{self.endpoint}: {type(exc).__name__}: {exc}") from None

    async def _connect(self, user: str, password: str, pki: Path) -> None:
        files, uri = client_certificate(pki)
        client = Client(self.endpoint, timeout=TIMEOUT)
        client.application_uri = uri
        client.name = "flexctl console"
        client.set_user(user)
        client.set_password(password)
        try:
            # The server's certificate is taken from its endpoint list (not pinned).
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(files.certificate),
                str(files.private_key),
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            await client.connect()
        except (ConnectionRefusedError, socket.gaierror) as exc:
            client.disconnect_socket()
            raise ConsoleError(f"cannot reach the supervisor at {self.endpoint}: {exc}") from None
        except (TimeoutError, OSError) as exc:
            client.disconnect_socket()
            raise ConsoleError(
                f"cannot reach the supervisor at {self.endpoint}: {type(exc).__name__} {exc}"
            ) from None
        except UaStatusCodeError as exc:
            client.disconnect_socket()
            code = ua.StatusCode(exc.code).name
            if code in _LOGIN_REFUSED:
                raise ConsoleError(
                    f"login refused for {user!r} at {self.endpoint} (wrong user or password, "
                    "or the user is disabled)"
                ) from None
            raise ConsoleError(f"{self.endpoint} refused the session: {code}") from None
        except (UaError, ValueError) as exc:
            client.disconnect_socket()
            raise ConsoleError(
                f"{self.endpoint}: no Basic256Sha256 SignAndEncrypt session: {exc}"
            ) from None
        self._client = client
        self._ns = await client.get_namespace_index(NAMESPACE)
        await self._browse_devices()

    def _node_id(self, path: str) -> ua.NodeId:
        return ua.NodeId(ua.String(f"Line.{path}" if path else "Line"), ua.Int16(self._ns))

    def _need_client(self) -> Client:
        if self._client is None:
            raise ConsoleError(f"not connected to {self.endpoint}")
        return self._client

    async def _browse_devices(self) -> None:
        client = self._need_client()
        devices = client.get_node(self._node_id("Devices"))
        found: dict[str, list[str]] = {}
        for device in await devices.get_children():
            name = str((await device.read_browse_name()).Name)
            values = client.get_node(self._node_id(f"Devices.{name}.Values"))
            try:
                signals = [
                    str((await v.read_browse_name()).Name) for v in await values.get_children()
                ]
            except UaStatusCodeError:  # a device without values (yet)
                signals = []
            found[name] = signals
        self._devices = found

    async def _read(self, paths: Sequence[str]) -> list[object]:
        client = self._need_client()
        ids = [self._node_id(p) for p in paths]
        values = await client.uaclient.read_attributes(ids, AttributeIds.Value)
        return [_value_of(v) for v in values]

    async def _snapshot(self) -> Snapshot:
        paths = ["Name"] + [f"Batch.{name}" for name in BATCH_FIELDS]
        for device, signals in self._devices.items():
            paths += [f"Devices.{device}.{f}" for f in DEVICE_FIELDS]
            paths += [f"Devices.{device}.Values.{s}" for s in signals]
        values = dict(zip(paths, await self._read(paths), strict=True))
        devices = []
        for name, signals in self._devices.items():
            alarms = values[f"Devices.{name}.Alarms"]
            devices.append(
                Device(
                    name,
                    status=_text(values[f"Devices.{name}.Status"]),
                    link=_text(values[f"Devices.{name}.Link"]),
                    alarms=tuple(str(a) for a in alarms) if isinstance(alarms, list) else (),
                    values={s: values[f"Devices.{name}.Values.{s}"] for s in signals},
                )
            )
        batch = {name: values[f"Batch.{name}"] for name in BATCH_FIELDS}
        return Snapshot(_text(values["Name"]), batch, devices)

    async def _call(self, method: str, args: list[ua.Variant]) -> Reply:
        client = self._need_client()
        request = ua.CallMethodRequest(
            ObjectId=self._node_id("Batch"),
            MethodId=self._node_id(f"Batch.{method}"),
            InputArguments=args,
        )
        (result,) = await client.uaclient.call([request])
        outputs = result.OutputArguments or []
        message = str(outputs[0].Value) if outputs and outputs[0].Value is not None else ""
        status = result.StatusCode
        return Reply(status.is_good(), status.name, message or status.name)


def _value_of(data: ua.DataValue) -> object:
    if data.StatusCode is not None and not data.StatusCode.is_good():
        return None
    return data.Value.Value if data.Value is not None else None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def variant(value: object) -> ua.Variant:
    """A console value as the Variant of its type (an answer, a reason, a duration)."""
    types: Mapping[type, ua.VariantType] = {
        bool: ua.VariantType.Boolean,
        int: ua.VariantType.Int64,
        float: ua.VariantType.Double,
        str: ua.VariantType.String,
    }
    return ua.Variant(value, types[type(value)])
