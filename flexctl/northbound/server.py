"""The supervisor, served over OPC UA: the line, the batch, and the Batch methods.

:class:`SupervisorServer` joins the pieces: the address space
(:mod:`~flexctl.northbound.address_space`), what it shows (a
:class:`~flexctl.northbound.view.LineView`, and the batch's
:class:`~flexctl.northbound.progress.BatchProgress` as
:mod:`~flexctl.northbound.batch_view` shows it), and what its methods do
(:class:`~flexctl.northbound.methods.BatchMethods`).

How it learns what happens, without a single extra device request:

- the executor's journal and historian sink are wrapped by taps
  (:mod:`~flexctl.northbound.observe`) when the server first sees the
  executor, and put back when it lets go of it;
- the batch state machine's listener, and the prompter's, mark the view changed;
- :meth:`SupervisorServer.update_devices` takes values the caller read anyway,
  :meth:`SupervisorServer.refresh` takes a fresh line description (link states)
  and the runtime.

A change marks the view dirty; one publisher task writes what changed to the
nodes (asyncua's writes are coroutines, the observers are not). A method call
publishes before it answers, so a client reading right after sees its effect.

Security: the UserName token only (no anonymous session), checked against the
store's users; ``Basic256Sha256`` with ``SignAndEncrypt`` on a self-signed
certificate made at first start in ``certificate_dir``. An endpoint without
message security exists only with ``allow_insecure_loopback=True`` on a
loopback host (tests, a console on the same machine).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

import structlog

from flexctl.errors import FlexctlError
from flexctl.line_runtime import DeviceDescription, LineRuntime
from flexctl.northbound.address_space import Nodes
from flexctl.northbound.batch_view import batch_shown
from flexctl.northbound.calls import Caller, CallError
from flexctl.northbound.certificates import ensure_certificate
from flexctl.northbound.methods import BatchMethods
from flexctl.northbound.observe import JournalTap, SampleTap
from flexctl.northbound.progress import BatchProgress
from flexctl.northbound.prompter import NorthboundPrompter
from flexctl.northbound.roles import Action
from flexctl.northbound.runner import BatchRunner
from flexctl.northbound.uaserver import Session, StoreUsers, UaServer, trusted_certificates
from flexctl.northbound.view import Kind, LineView, Shown
from flexctl.profile import Value
from flexctl.record.journal import JournalEntry
from flexctl.record.signing import SigningSession
from flexctl.record.store import Sample
from flexctl.record.users import UserStore
from flexctl.supervisor.alarms import AlarmMonitor
from flexctl.supervisor.executor import Executor

log = structlog.get_logger("flexctl.northbound")

DEFAULT_ENDPOINT: Final = "opc.tcp://127.0.0.1:0/flexctl"
#: File stem of the server's certificate and key in the certificate folder.
CERTIFICATE_NAME: Final = "flexctl-supervisor"

LineSource = (
    LineRuntime | Mapping[str, DeviceDescription] | Callable[[], Mapping[str, DeviceDescription]]
)
ExecutorSource = Executor | Callable[[], Executor | None] | None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SupervisorServer:
    """The northbound OPC UA server of one line and its batch; see the module docstring.

    Args:
        line: the running line (its ``describe()``), a fixed description, or a
            callable giving a fresh one on each :meth:`refresh`.
        executor: the executor of the batch served, or a callable that returns
            the current one (None while there is none).
        store: the users who may log in and sign, and the audit trail.
        certificate_dir: where the server's certificate and key are kept
            (made at first start).
        endpoint: ``opc.tcp://host:port/path``; port 0 takes a free port
            (:attr:`endpoint` then names it).
        prompter: the prompts served; default: the executor's prompter when it
            is a :class:`NorthboundPrompter`.
        alarms: the alarm monitor AcknowledgeAlarm and ShelveAlarm act on.
        allow_insecure_loopback: also offer an endpoint without message
            security; refused unless the host is a loopback address.
        trusted_clients: a folder of client certificates; when given, only
            those may open a secure channel (people still log in).
        line_name: the line's name when ``line`` is not a LineRuntime.
    """

    def __init__(
        self,
        line: LineSource,
        executor: ExecutorSource,
        store: UserStore,
        *,
        certificate_dir: Path,
        endpoint: str = DEFAULT_ENDPOINT,
        prompter: NorthboundPrompter | None = None,
        alarms: AlarmMonitor | None = None,
        allow_insecure_loopback: bool = False,
        trusted_clients: Path | None = None,
        line_name: str = "line",
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError(f"endpoint must be opc.tcp://host[:port][/path], not {endpoint!r}")
        self._host = parts.hostname
        self._port = parts.port or 0
        self._path = parts.path or "/"
        if allow_insecure_loopback and not is_loopback(self._host):
            raise ValueError(
                f"allow_insecure_loopback is for loopback hosts only, not {self._host!r}: "
                "elsewhere every session is signed and encrypted"
            )
        self._insecure = allow_insecure_loopback
        self._describe = _describer(line)
        self._runtime = line if isinstance(line, LineRuntime) else None
        self._provider = _provider(executor)
        self.store = store
        self.certificate_dir = certificate_dir
        self.trusted_clients = trusted_clients
        self.prompter = prompter
        self.alarms = alarms
        name = line.line.name if isinstance(line, LineRuntime) else line_name
        self.view = LineView(name, self._describe())
        if isinstance(line, LineRuntime):
            for device, entry in line.line.devices.items():
                self.view.declare(device, entry.profile.signals)
        self.progress = BatchProgress()
        self.runner = BatchRunner()
        self.methods = BatchMethods(
            executor=self.current_executor,
            store=store,
            runner=self.runner,
            prompter=prompter,
            alarms=alarms,
        )
        self._attached: Executor | None = None
        self._taps: tuple[JournalTap, SampleTap] | None = None
        self._unsubscribe: list[Callable[[], None]] = []  # from the attached executor
        self._signing: dict[Session, SigningSession] = {}
        self._server: UaServer | None = None
        self._nodes: Nodes | None = None
        self._dirty = asyncio.Event()
        self._publishing = asyncio.Lock()
        self._publisher: asyncio.Task[None] | None = None
        self._url = ""
        if prompter is not None:
            prompter.on_change(self._changed)  # for the server's life

    # -- up and down --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL clients connect to (with the port bound); empty before :meth:`start`."""
        return self._url

    async def start(self) -> None:
        """Make the certificate if needed, build the address space, listen."""
        if self._server is not None:
            return
        uri = f"urn:flexctl:supervisor:{socket.gethostname()}"
        hosts = (self._host, "localhost", socket.gethostname())
        # Made once, then kept: a one-off RSA key generation before serving.
        certificate = ensure_certificate(self.certificate_dir, CERTIFICATE_NAME, uri, hosts)
        trusted = None
        if self.trusted_clients is not None:
            trusted = trusted_certificates(self.trusted_clients)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"opc.tcp://{host}:{sock.getsockname()[1]}{self._path}"
        server = UaServer(
            sock=sock,
            url=self._url,
            users=StoreUsers(self.store),
            certificate=certificate,
            insecure=self._insecure,
            application_uri=uri,
            trusted=trusted,
            closed=self._session_closed,
        )
        try:
            await server.init()
            nodes = Nodes(server)
            await nodes.build(self._handle)
            self._nodes = nodes
            self.current_executor()
            await self.publish()
            await server.start()
        except BaseException:
            sock.close()
            self._nodes = None
            try:
                await server.stop()
            except Exception:  # the first failure is the one to raise
                log.exception("northbound_stop_after_failed_start")
            raise
        self._server = server
        self._publisher = asyncio.get_running_loop().create_task(
            self._publish_loop(), name="flexctl-northbound-publisher"
        )
        log.info("northbound_serving", endpoint=self._url, insecure=self._insecure)

    async def stop(self) -> None:
        """Stop serving; a run started here is cancelled (its executor stops its workers).

        Safe to call twice. The executor's journal and historian are given back.
        """
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        await self.runner.close()
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        self._nodes = None
        self._detach()
        for session in self._signing.values():
            session.close()
        self._signing.clear()

    async def linger(self, seconds: float) -> None:
        """Show the batch as it ended, and go on serving ``seconds`` of wall time, so a
        console waiting for the final state reads it before its session drops."""
        if seconds <= 0:
            return
        self.refresh()
        await self.publish()
        await asyncio.sleep(seconds)  # wall time: for people and scripts to read it

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- what the caller feeds in ------------------------------------------------------------

    def update_devices(self, values: Mapping[str, Mapping[str, Value]]) -> None:
        """Take device values the supervisor has read anyway (device -> signal -> value)."""
        for device, readings in values.items():
            if self.view.update(device, readings) and "status" in readings:
                self._status(device, readings["status"])
        self._changed()

    def refresh(self) -> None:
        """Take a fresh line description (link states, sources) and move the runtime on."""
        self.current_executor()
        self.view.describe(self._describe())
        self._changed()

    async def publish(self) -> None:
        """Write what changed to the address space now."""
        nodes = self._nodes
        if nodes is None:
            return
        async with self._publishing:
            self._dirty.clear()
            await nodes.publish(self._shown())

    # -- the executor -----------------------------------------------------------------------

    def current_executor(self) -> Executor | None:
        """The executor served now; taps it the first time it is seen."""
        executor = self._provider()
        if executor is not self._attached:
            self._detach()
            if executor is not None:
                self._attach(executor)
        return executor

    def _attach(self, executor: Executor) -> None:
        journal = JournalTap(executor.journal, self._on_entry)
        historian = SampleTap(executor.historian, self._on_sample)
        self.progress = BatchProgress()
        for entry in journal.entries():  # catch up with a batch that ran before we looked
            self.progress.follow(entry, self.view)
        # The executor has no listener for its entries or readings: wrap its sinks
        # (a cleaner hook would be an Executor.observe(on_entry, on_sample)).
        executor.journal = journal
        executor.historian = historian
        self._taps = (journal, historian)
        self._attached = executor
        self._unsubscribe.append(executor.machine.on_change(lambda _t: self._changed()))
        if self.prompter is None and isinstance(executor.prompter, NorthboundPrompter):
            self.prompter = self.methods.prompter = executor.prompter
            executor.prompter.on_change(self._changed)  # for the server's life
        self._changed()

    def _detach(self) -> None:
        executor, taps = self._attached, self._taps
        self._attached = self._taps = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if executor is None or taps is None:
            return
        journal, historian = taps
        if executor.journal is journal:
            executor.journal = journal.inner
        if executor.historian is historian:
            executor.historian = historian.inner

    def _on_entry(self, entry: JournalEntry) -> None:
        self.progress.follow(entry, self.view)
        self._changed()

    def _on_sample(self, sample: Sample) -> None:
        if sample.value is None:
            return
        if self.view.update(sample.device, {sample.signal: sample.value}):
            if sample.signal == "status":
                self._status(sample.device, sample.value)
            self._changed()

    def _status(self, device: str, value: Value) -> None:
        view = self.view.devices[device]
        if self._attached is not None:
            driver = self._attached.drivers.get(device)
        else:
            driver = self._runtime.drivers.get(device) if self._runtime is not None else None
        if driver is None:
            view.status_reading = str(value)
            return
        try:
            view.status_reading = driver.as_status(value).value
        except FlexctlError:
            view.status_reading = str(value)

    # -- what is shown ------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            try:
                await self.publish()
            except Exception:  # the display failed; the batch goes on, the next change retries
                log.exception("northbound_publish_failed")

    def _shown(self) -> dict[str, tuple[Kind, Shown]]:
        shown: dict[str, tuple[Kind, Shown]] = {"Name": (Kind.String, self.view.name)}
        for path, item in self.view.shown().items():
            shown[f"Devices.{path}"] = item
        # The alarms given, else the batch's own (its executor's ISA-18.2 monitor).
        alarms = self.alarms
        if alarms is None and self._attached is not None:
            alarms = self._attached.alarms
        batch = batch_shown(self._attached, self.progress, self.prompter, alarms, self.view)
        shown.update({f"Batch.{key}": item for key, item in batch.items()})
        return shown

    # -- method calls -------------------------------------------------------------------

    async def _handle(self, action: Action, session: Session | None, args: list[object]) -> str:
        user = session.user.name if session is not None else None
        if session is None or not user:
            raise CallError("BadUserAccessDenied", "no logged-in user")
        signing = self._signing.get(session)
        if signing is None:
            signing = self._signing[session] = SigningSession(name=f"opcua-{session.name}")
        self.current_executor()
        try:
            return await self.methods.call(action, Caller(user, signing), args)
        finally:
            try:
                await self.publish()
            except Exception:  # the answer must not fail on a broken display
                log.exception("northbound_publish_failed")

    def _session_closed(self, session: Session) -> None:
        signing = self._signing.pop(session, None)
        if signing is not None:
            signing.close()


def _describer(line: LineSource) -> Callable[[], Mapping[str, DeviceDescription]]:
    if isinstance(line, LineRuntime):
        return line.describe
    if callable(line):
        return line
    fixed = dict(line)
    return lambda: fixed


def _provider(executor: ExecutorSource) -> Callable[[], Executor | None]:
    if executor is None or isinstance(executor, Executor):
        return lambda: executor
    return executor
