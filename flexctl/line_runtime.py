"""Bring a line up: its twins, transports and drivers, connected and ready for a supervisor.

:class:`LineRuntime` turns a loaded :class:`~flexctl.line.Line` into one
connected driver per device::

    async with LineRuntime(shipped_line("sim"), clock, seed=7) as runtime:
        status = await runtime.drivers["bioreactor"].status()

A device with ``twin: true`` gets its simulator twin, started in this process
(``twins="in-process"``, the default): the model on the runtime's clock, seeded
from the line seed and the device's name, behind its real protocol (TCP on a
free loopback port, a pty null modem for serial and Modbus RTU). With
``twins="external"`` the twins run in another process (``flexctl sim serve``)
and their endpoints come from the JSON file it writes. A device with an
``endpoint:`` is hardware: only its transport and driver are made.

All drivers connect at once; if any cannot, everything opened is closed again
and one :class:`~flexctl.errors.NotConnectedError` names each device that
failed, with its cause. Closing stops drivers, then servers, then null modems
(the reverse of opening) and leaves no task, thread or file descriptor behind.

Like :mod:`flexctl.twins`, this module sits at the top of the house: it joins
the simulators (below the wire) to the drivers (above it).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import re
import stat
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from drivers.base import Driver
from flexctl.clock import Clock
from flexctl.errors import ConfigurationError, FlexctlError, NotConnectedError, Where
from flexctl.line import Line, LineDevice
from flexctl.transports.base import TransportOptions
from flexctl.transports.registry import create_transport
from flexctl.twins import make_model, make_server
from simulators.models.base import TwinModel, UnknownTagError
from simulators.servers.base import TwinServer
from simulators.servers.null_modem import NullModem

TwinMode = Literal["in-process", "external"]
TWIN_MODES: tuple[TwinMode, ...] = ("in-process", "external")

#: Where ``flexctl sim serve`` writes its endpoints, and where external mode reads them.
DEFAULT_ENDPOINTS_FILE = Path("flexctl-twins.json")

#: Transport kinds whose twin sits on the far end of a pty null modem.
PTY_KINDS = frozenset({"serial", "modbus-rtu"})

ENDPOINTS_FORMAT = "flexctl-twins/1"

#: Endpoint schemes served over TCP, and over a tty, by the twins.
TCP_SCHEMES = frozenset({"opc.tcp", "modbus-tcp"})
TTY_SCHEMES = frozenset({"serial", "modbus-rtu"})

#: The slave side of a pseudo-terminal (Linux ``/dev/pts/N``; macOS and BSD ``/dev/ttysNNN``).
_PTY_PATH = re.compile(r"^/dev/(?:pts/\d+|ttys\d+)$")


def device_seed(seed: int, device: str) -> int:
    """The seed of one device's twin: stable across runs and machines, distinct per device."""
    digest = hashlib.sha256(f"{seed}:{device}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def twin_devices(line: Line) -> dict[str, LineDevice]:
    """The devices of ``line`` that are simulated (``twin: true``), in line order."""
    return {name: device for name, device in line.devices.items() if device.twin}


class LineTwins:
    """The twins of a line's simulated devices, served in this process.

    Used by :class:`LineRuntime` (in-process twins) and by ``flexctl sim serve``
    (twins for a supervisor in another process). ``endpoints`` is what a
    transport connects to, per device.
    """

    def __init__(self, line: Line, clock: Clock, *, seed: int = 0) -> None:
        self.line = line
        self.clock = clock
        self.seed = seed
        self._models: dict[str, TwinModel] = {}
        self._servers: dict[str, TwinServer] = {}
        self._links: dict[str, NullModem] = {}
        self._stack: AsyncExitStack | None = None

    @property
    def models(self) -> Mapping[str, TwinModel]:
        return MappingProxyType(self._models)

    @property
    def servers(self) -> Mapping[str, TwinServer]:
        return MappingProxyType(self._servers)

    @property
    def links(self) -> Mapping[str, NullModem]:
        """The null modem of each serial and Modbus RTU twin (``cut()`` pulls its cable)."""
        return MappingProxyType(self._links)

    @property
    def endpoints(self) -> dict[str, str]:
        return {name: server.endpoint for name, server in self._servers.items()}

    async def start(self) -> None:
        """Start every twin; on a failure close what was started and raise.

        A profile naming a tag the twin lacks is a ConfigurationError at the
        device's line entry; a twin that cannot serve (no free port, no pty) is
        a NotConnectedError naming the device.
        """
        if self._stack is not None:
            raise RuntimeError(f"the twins of line {self.line.name} are already started")
        stack = AsyncExitStack()
        try:
            for name, device in twin_devices(self.line).items():
                await self._start_one(stack, name, device)
        except BaseException:
            await stack.aclose()
            self._forget()
            raise
        self._stack = stack

    async def _start_one(self, stack: AsyncExitStack, name: str, device: LineDevice) -> None:
        model = make_model(device.driver, self.clock, device_seed(self.seed, name))
        try:
            link: NullModem | None = None
            if device.kind in PTY_KINDS:
                link = await stack.enter_async_context(NullModem())
                self._links[name] = link
            try:
                server = make_server(device.kind, model, device.profile, link)
            except UnknownTagError as exc:
                raise ConfigurationError(device.where, f"device {name}: twin: {exc}") from None
            await stack.enter_async_context(server)
        except (OSError, FlexctlError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise NotConnectedError(
                name, f"its {device.kind} twin cannot start", causes={"twin": exc}
            ) from exc
        self._models[name] = model
        self._servers[name] = server

    async def close(self) -> None:
        """Stop every server, then its null modem, in reverse order. Safe to call twice."""
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            self._forget()

    def _forget(self) -> None:
        self._models.clear()
        self._servers.clear()
        self._links.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class DeviceDescription:
    """One device of a running line, as a console or a batch record shows it.

    ``origin`` is ``twin`` (simulated in this process), ``external twin``
    (simulated in another process) or ``hardware``. ``source`` is the
    transport's source, with any password masked; None while the line is down.
    """

    name: str
    driver: str
    profile: str
    kind: str
    origin: Literal["twin", "external twin", "hardware"]
    source: str | None
    state: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LineRuntime:
    """A line's drivers, connected, with the twins of its simulated devices.

    Args:
        line: the loaded line.
        clock: process time for the drivers, transports and in-process twins.
        seed: the line seed; each twin's own seed derives from it and the
            device name (:func:`device_seed`).
        options: timeouts and backoff for every transport.
        twins: ``in-process`` starts the twins here; ``external`` connects to
            twins served by ``flexctl sim serve``.
        endpoints: external mode only: the endpoints file that command wrote
            (default ``./flexctl-twins.json``), that file already read
            (:class:`ServedTwins`), or a mapping device -> endpoint. Every
            endpoint must be on this machine (:func:`check_external_twins`).
    """

    def __init__(
        self,
        line: Line,
        clock: Clock,
        *,
        seed: int = 0,
        options: TransportOptions | None = None,
        twins: TwinMode = "in-process",
        endpoints: Path | str | Mapping[str, str] | ServedTwins | None = None,
    ) -> None:
        if twins not in TWIN_MODES:
            raise ValueError(f"twins={twins!r}: expected one of {', '.join(TWIN_MODES)}")
        if endpoints is not None and twins != "external":
            raise ValueError("endpoints are for twins='external' only")
        self.line = line
        self.clock = clock
        self.seed = seed
        self.options = options
        self.twin_mode: TwinMode = twins
        self._endpoints_from = endpoints if endpoints is not None else DEFAULT_ENDPOINTS_FILE
        self._twins: LineTwins | None = None
        self._drivers: dict[str, Driver] = {}
        self._stack: AsyncExitStack | None = None

    # -- what a supervisor uses -------------------------------------------------

    @property
    def drivers(self) -> Mapping[str, Driver]:
        """Every device's driver, by device name (empty while the line is down)."""
        return MappingProxyType(self._drivers)

    @property
    def servers(self) -> Mapping[str, TwinServer]:
        """The in-process twins' servers (for fault injection); empty otherwise."""
        return self._twins.servers if self._twins is not None else MappingProxyType({})

    @property
    def models(self) -> Mapping[str, TwinModel]:
        """The in-process twins' models; empty otherwise."""
        return self._twins.models if self._twins is not None else MappingProxyType({})

    @property
    def links(self) -> Mapping[str, NullModem]:
        """The in-process twins' null modems (serial and Modbus RTU devices)."""
        return self._twins.links if self._twins is not None else MappingProxyType({})

    @property
    def is_open(self) -> bool:
        return self._stack is not None

    def describe(self) -> dict[str, DeviceDescription]:
        """Per device: driver, profile, transport kind, origin, source and link state."""
        described = {}
        for name, device in self.line.devices.items():
            driver = self._drivers.get(name)
            origin: Literal["twin", "external twin", "hardware"] = "hardware"
            if device.twin:
                origin = "twin" if self.twin_mode == "in-process" else "external twin"
            described[name] = DeviceDescription(
                name=name,
                driver=device.driver,
                profile=device.profile.name,
                kind=device.kind,
                origin=origin,
                source=driver.source if driver is not None else None,
                state=str(driver.transport.state) if driver is not None else "disconnected",
            )
        return described

    # -- up and down --------------------------------------------------------------

    async def open(self) -> None:
        """Start the twins, make every transport and driver, connect them all.

        Raises NotConnectedError (naming each device that failed) after closing
        everything it had opened; ConfigurationError for a bad endpoints file.
        """
        if self._stack is not None:
            raise RuntimeError(f"line {self.line.name} is already up")
        stack = AsyncExitStack()
        try:
            await self._open(stack)
        except BaseException:
            await stack.aclose()
            self._forget()
            raise
        self._stack = stack

    async def _open(self, stack: AsyncExitStack) -> None:
        if self.twin_mode == "in-process":
            twins = LineTwins(self.line, self.clock, seed=self.seed)
            await stack.enter_async_context(twins)
            self._twins = twins
            twin_endpoints = twins.endpoints
        else:
            twin_endpoints = _external_endpoints(self._endpoints_from, self.line)
        for name, device in self.line.devices.items():
            endpoint = twin_endpoints[name] if device.twin else device.endpoint
            assert endpoint is not None  # the line loader: a twin or an endpoint
            transport = create_transport(
                device.profile, endpoint, clock=self.clock, device=name, options=self.options
            )
            driver = device.driver_class()(name, transport, self.clock)
            # Pushed before connecting: closing a driver that never connected is harmless.
            stack.push_async_callback(driver.close)
            self._drivers[name] = driver
        await self._connect_all()

    async def _connect_all(self) -> None:
        names = list(self._drivers)
        results = await asyncio.gather(
            *(driver.connect() for driver in self._drivers.values()), return_exceptions=True
        )
        failed: dict[str, BaseException] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                failed[name] = result
            elif isinstance(result, BaseException):  # a connect cancelled on its own
                raise result
        if failed:
            raise NotConnectedError(
                f"line {self.line.name}",
                f"{len(failed)} of {len(names)} devices did not connect ({', '.join(failed)})",
                causes=failed,
            )

    async def close(self) -> None:
        """Close drivers, then twin servers, then null modems. Safe to call twice."""
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.aclose()
        finally:
            self._forget()

    def _forget(self) -> None:
        self._drivers.clear()
        self._twins = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- the endpoints file shared with ``flexctl sim serve`` --------------------------


def write_endpoints(
    path: Path, line: Line, endpoints: Mapping[str, str], *, seed: int, speed: float
) -> None:
    """Write the twins' endpoints for a supervisor in another process (atomically)."""
    document = {
        "format": ENDPOINTS_FORMAT,
        "line": line.name,
        "seed": seed,
        "speed": speed,
        "pid": os.getpid(),
        "endpoints": dict(endpoints),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


@dataclass(frozen=True)
class ServedTwins:
    """An endpoints file of ``flexctl sim serve``, read once and parsed.

    ``document`` is the whole file (seed, speed, pid...); ``endpoints`` the checked
    endpoint of each twin of the line. Planning a run and opening its line use the
    same object, so what was checked is what is connected to.
    """

    path: Path
    document: Mapping[str, Any]
    endpoints: Mapping[str, str]

    @property
    def pid(self) -> object:
        return self.document.get("pid")


def read_endpoints(path: Path, line: Line) -> dict[str, str]:
    """The endpoint of each twin of ``line``, from a file ``flexctl sim serve`` wrote.

    ConfigurationError (naming the file, and the line and column of bad JSON)
    if it is missing, malformed, for another line, or lacks one of its twins.
    Nothing here checks where the endpoints lead: see :func:`check_external_twins`.
    """
    return dict(load_served_twins(path, line).endpoints)


def load_served_twins(path: Path, line: Line) -> ServedTwins:
    """The endpoints file at ``path``, read once (errors as :func:`read_endpoints`)."""
    where = Where(str(path))
    hint = f"start the twins with: flexctl sim serve --line {line.name} --endpoints {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(where, f"no twin endpoints file ({hint})") from None
    except OSError as exc:
        raise ConfigurationError(where, f"cannot read the twin endpoints: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            Where(str(path), exc.lineno, exc.colno), f"not a twin endpoints file: {exc.msg}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("endpoints"), dict):
        raise ConfigurationError(
            where, "not a twin endpoints file: expected an object with 'endpoints'"
        )
    if document.get("line") != line.name:
        raise ConfigurationError(
            where, f"the twins there serve line {document.get('line')!r}, not {line.name!r}"
        )
    endpoints = _checked_endpoints(document["endpoints"], line, where, hint)
    return ServedTwins(path, MappingProxyType(document), MappingProxyType(endpoints))


def check_external_twins(served: ServedTwins | Mapping[str, str]) -> list[str]:
    """Why these external twins cannot be trusted to be twins; [] if they can.

    A twin served by another process is trusted only on this machine: each TCP
    endpoint must be on a loopback address (127.0.0.0/8, ::1, ``localhost``) and
    each serial endpoint an existing pseudo-terminal (a null modem, never a real
    port). For an endpoints file, the process that wrote it (``pid``) must be
    alive. A device the line calls a twin could otherwise be real equipment.
    """
    problems: list[str] = []
    if isinstance(served, ServedTwins):
        why = _pid_problem(served.pid)
        if why is not None:
            problems.append(why)
        endpoints: Mapping[str, str] = served.endpoints
    else:
        endpoints = served
    for name, endpoint in endpoints.items():
        why = endpoint_problem(endpoint)
        if why is not None:
            problems.append(f"twin {name}: {why}")
    return problems


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` is not a twin on this machine, or None if it is."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError as exc:
        return f"endpoint {endpoint!r} cannot be parsed ({exc})"
    if parts.scheme in TCP_SCHEMES:
        if host is None:
            return f"endpoint {endpoint!r} names no host"
        if host.lower() == "localhost":
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"host {host!r} is not a loopback address (127.0.0.0/8, ::1, localhost)"
        if not address.is_loopback:
            return f"host {host} is not a loopback address (127.0.0.0/8, ::1, localhost)"
        return None
    if parts.scheme in TTY_SCHEMES:
        path = parts.path
        if parts.netloc or not _PTY_PATH.match(path):
            return f"{path or endpoint} is not a pseudo-terminal (/dev/pts/N)"
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return f"pseudo-terminal {path} does not exist"
        if not stat.S_ISCHR(mode):
            return f"{path} is not a terminal device"
        return None
    return f"endpoint scheme {parts.scheme!r} is not one a twin serves"


def _pid_problem(pid: object) -> str | None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return f"no process id of 'flexctl sim serve' in the file (pid {pid!r})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"the process that served these twins (pid {pid}) is not running: stale file"
    except PermissionError:
        return f"the process that served these twins (pid {pid}) belongs to another user"
    except OSError as exc:
        return f"cannot check the process that served these twins (pid {pid}): {exc}"
    return None


def _external_endpoints(
    source: Path | str | Mapping[str, str] | ServedTwins, line: Line
) -> dict[str, str]:
    """The checked endpoints of external twins; ConfigurationError if any is untrusted."""
    served: ServedTwins | Mapping[str, str]
    if isinstance(source, ServedTwins):
        served, where = source, Where(str(source.path))
    elif isinstance(source, Path | str):
        served = load_served_twins(Path(source), line)
        where = Where(str(served.path))
    else:
        served = _checked_endpoints(source, line, line.where, "give an endpoint for every twin")
        where = line.where
    problems = check_external_twins(served)
    if problems:
        raise ConfigurationError(
            where, "external twins refused (not on this machine): " + "; ".join(problems)
        )
    endpoints = served.endpoints if isinstance(served, ServedTwins) else served
    return {name: endpoints[name] for name in twin_devices(line)}


def _checked_endpoints(
    raw: Mapping[str, Any], line: Line, where: Where, hint: str
) -> dict[str, str]:
    missing = [name for name in twin_devices(line) if name not in raw]
    if missing:
        raise ConfigurationError(where, f"no endpoint for twin(s) {', '.join(missing)} ({hint})")
    endpoints: dict[str, str] = {}
    for name in twin_devices(line):
        endpoint = raw[name]
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigurationError(where, f"endpoint of {name} must be text")
        endpoints[name] = endpoint
    return endpoints
