"""Start a twin server and a transport to it, for each transport kind.

One place that knows how each kind is wired (a TCP port, or a pty null modem),
so the demo command, the contract suite and the benchmarks treat all four alike.
This module sits at the top of the house: it joins the simulators (below the
wire) to the transports (above it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from flexctl.clock import Clock
from flexctl.profile import Profile
from flexctl.resources import shipped_profile
from flexctl.transports.base import Transport, TransportOptions
from flexctl.transports.registry import create_transport
from simulators.models.base import TwinModel
from simulators.servers.base import TwinServer
from simulators.servers.null_modem import NullModem

KINDS = ("opcua", "modbus-tcp", "modbus-rtu", "serial")

# profile family for each kind
FAMILY = {"opcua": "opcua", "modbus-tcp": "modbus", "modbus-rtu": "modbus", "serial": "serial"}


DEVICE_KINDS = ("bioreactor", "cell_processor", "thaw", "freezer", "demo")


def make_model(device: str, clock: Clock, seed: int = 0) -> TwinModel:
    """The twin model of a device kind, on ``clock``, deterministic for ``seed``."""
    if device == "bioreactor":
        from simulators.models.bioreactor import BioreactorModel

        return BioreactorModel(clock, seed)
    if device == "cell_processor":
        from simulators.models.cell_processor import CellProcessorModel

        return CellProcessorModel(clock, seed)
    if device == "thaw":
        from simulators.models.thaw import ThawModel

        return ThawModel(clock, seed)
    if device == "freezer":
        from simulators.models.freezer import FreezerModel

        return FreezerModel(clock, seed)
    if device == "demo":
        from simulators.models.demo import DemoModel

        return DemoModel(clock, seed)
    raise ValueError(f"no twin for {device!r} (expected one of {', '.join(DEVICE_KINDS)})")


@dataclass
class Pair:
    kind: str
    server: TwinServer
    transport: Transport
    link: NullModem | None


def make_server(
    kind: str, model: TwinModel, profile: Profile, link: NullModem | None
) -> TwinServer:
    if kind == "opcua":
        from simulators.servers.opcua_server import OpcUaTwinServer

        return OpcUaTwinServer(model, profile)
    if kind == "modbus-tcp":
        from simulators.servers.modbus_server import ModbusTcpTwinServer

        return ModbusTcpTwinServer(model, profile)
    if link is None:
        raise ValueError(f"{kind} twins need a null-modem link")
    if kind == "modbus-rtu":
        from simulators.servers.modbus_server import ModbusRtuTwinServer

        return ModbusRtuTwinServer(model, profile, link=link)
    if kind == "serial":
        from simulators.servers.serial_server import SerialTwinServer

        return SerialTwinServer(model, profile, link=link)
    raise ValueError(f"unknown twin kind {kind!r} (expected one of {', '.join(KINDS)})")


@asynccontextmanager
async def twin_pair(
    kind: str,
    model: TwinModel,
    clock: Clock,
    *,
    device: str = "demo",
    options: TransportOptions | None = None,
    connect: bool = True,
) -> AsyncIterator[Pair]:
    """A started server for ``model`` and a (connected) transport to it."""
    profile = shipped_profile(f"{device}.{FAMILY[kind]}")
    async with AsyncExitStack() as stack:
        link: NullModem | None = None
        if kind in ("modbus-rtu", "serial"):
            link = await stack.enter_async_context(NullModem())
        server = make_server(kind, model, profile, link)
        await stack.enter_async_context(server)
        transport = create_transport(profile, server.endpoint, clock=clock, options=options)
        stack.push_async_callback(transport.close)
        if connect:
            await transport.connect()
        yield Pair(kind, server, transport, link)
