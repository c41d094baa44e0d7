"""Modbus TCP and RTU read latency: flexctl's transports next to bare pymodbus, in one run.

Both read the same twin server (DemoModel on a RealClock, the shipped
``demo.modbus`` profile) in the same run. Each sample is the wall time of one
request as an asyncio caller sees it: one signal (``temperature``, input
registers 0-1) or the batch of twenty channels (input registers 10-49).

- ``flexctl_*``: ``read_one`` / ``read`` on ModbusTcpTransport or
  ModbusRtuTransport (planning, decoding, the base class's timeout and
  in-flight bookkeeping, the RTU bus lock included).
- ``raw_*``: a bare pymodbus client reading the same registers
  (``read_input_registers``), replies not decoded.

TCP: both clients are connected at once and the series alternate sample by
sample. RTU: a serial port has one owner, so the two open the driver end of the
null modem in turn, over several rounds; each sample starts after a pause of
twice the RTU silent interval (t3.5), so a sample measures one request on an
idle bus, for flexctl (which enforces t3.5) and pymodbus (which does not) alike.

Usage: python bench/transports_modbus.py [--samples N] [--kinds modbus-tcp,modbus-rtu]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient

from flexctl.clock import RealClock
from flexctl.resources import shipped_profile
from flexctl.transports.base import Transport, TransportOptions
from flexctl.transports.modbus import ModbusTcpTransport
from flexctl.transports.modbus_rtu import ModbusRtuTransport
from simulators.models.demo import CHANNELS, DemoModel
from simulators.servers.modbus_server import ModbusRtuTwinServer, ModbusTcpTwinServer
from simulators.servers.null_modem import NullModem

ONE = "temperature"
BATCH = [f"ch{i:02d}" for i in range(CHANNELS)]
ONE_REGISTERS = (0, 2)  # input registers of ONE
BATCH_REGISTERS = (10, 2 * CHANNELS)
WARMUP = 50
ROUNDS = 8
KEYS = ("flexctl_one", "flexctl_batch20", "raw_one", "raw_batch20")

Sample = Callable[[], Awaitable[object]]


async def _timed(sample: Sample, pause: float) -> float:
    if pause:
        await asyncio.sleep(pause)  # an idle bus before each request (wire time)
    start = time.perf_counter()
    await sample()
    return time.perf_counter() - start


def _samplers(transport: Transport, client: ModbusBaseClient | None) -> dict[str, Sample]:
    one = transport.signal(ONE)
    batch = [transport.signal(name) for name in BATCH]
    samplers: dict[str, Sample] = {
        "flexctl_one": lambda: transport.read_one(one),
        "flexctl_batch20": lambda: transport.read(batch),
    }
    if client is not None:
        samplers["raw_one"] = lambda: _raw(client, *ONE_REGISTERS)
        samplers["raw_batch20"] = lambda: _raw(client, *BATCH_REGISTERS)
    return samplers


async def _raw(client: ModbusBaseClient, address: int, count: int) -> object:
    reply = await client.read_input_registers(address, count=count, device_id=1)
    if reply.isError() or len(reply.registers) != count:
        raise RuntimeError(f"bad reply {reply}")
    return reply


async def _tcp(samples: int) -> dict[str, list[float]]:
    clock = RealClock()
    profile = shipped_profile("demo.modbus")
    series: dict[str, list[float]] = {key: [] for key in KEYS}
    async with ModbusTcpTwinServer(DemoModel(clock), profile) as server:
        transport = ModbusTcpTransport(
            profile, server.endpoint, clock=clock, options=TransportOptions()
        )
        client = AsyncModbusTcpClient(
            server.host, port=server.port, retries=0, reconnect_delay=0, timeout=5.0
        )
        await transport.connect()
        if not await client.connect():
            raise RuntimeError("bare pymodbus client cannot connect")
        try:
            samplers = _samplers(transport, client)
            for sample in samplers.values():
                for _ in range(WARMUP):
                    await sample()
            for _ in range(samples):  # alternate, so drift hits all series alike
                for key, sample in samplers.items():
                    series[key].append(await _timed(sample, 0.0))
        finally:
            client.close()
            await transport.close()
    return series


async def _rtu(samples: int) -> dict[str, list[float]]:
    clock = RealClock()
    profile = shipped_profile("demo.modbus")
    series: dict[str, list[float]] = {key: [] for key in KEYS}
    per_round = max(1, samples // ROUNDS)
    async with (
        NullModem() as link,
        ModbusRtuTwinServer(DemoModel(clock), profile, link=link) as server,
    ):
        transport = ModbusRtuTransport(
            profile, server.endpoint, clock=clock, options=TransportOptions()
        )
        pause = 2.0 * transport.serial.frame_gap
        for _ in range(ROUNDS):
            await transport.connect()
            try:
                flexctl = _samplers(transport, None)
                for sample in flexctl.values():
                    for _ in range(WARMUP):
                        await sample()
                for _ in range(per_round):
                    for key, sample in flexctl.items():
                        series[key].append(await _timed(sample, pause))
            finally:
                await transport.close()
            client = AsyncModbusSerialClient(
                link.b_path, baudrate=server.baudrate, retries=0, reconnect_delay=0, timeout=5.0
            )
            if not await client.connect():
                raise RuntimeError("bare pymodbus client cannot open the port")
            try:
                await asyncio.sleep(pause)  # pymodbus registers its reader on the next turn
                raw = {
                    "raw_one": lambda c=client: _raw(c, *ONE_REGISTERS),
                    "raw_batch20": lambda c=client: _raw(c, *BATCH_REGISTERS),
                }
                for sample in raw.values():
                    for _ in range(WARMUP):
                        await sample()
                        await asyncio.sleep(pause)
                for _ in range(per_round):
                    for key, sample in raw.items():
                        series[key].append(await _timed(sample, pause))
            finally:
                client.close()
    return series


async def measure(kind: str, samples: int) -> dict[str, list[float]]:
    """Per-request wall latencies (seconds) of the four series for ``kind``."""
    if kind == "modbus-tcp":
        return await _tcp(samples)
    if kind == "modbus-rtu":
        return await _rtu(samples)
    raise ValueError(f"unknown kind {kind!r} (modbus-tcp or modbus-rtu)")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--kinds", default="modbus-tcp,modbus-rtu")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        series = await measure(kind, args.samples)
        print(f"{kind}:")
        for key in KEYS:
            values = series[key]
            print(
                f"  {key:<16} p50 {statistics.median(values) * 1e3:7.3f} ms   "
                f"p99 {_percentile(values, 0.99) * 1e3:7.3f} ms   n={len(values)}"
            )
        one = statistics.median(series["flexctl_one"])
        print(
            f"  flexctl one / raw one p50: {one / statistics.median(series['raw_one']):.2f}x "
            "(goal <= 1.25x)"
        )
        print(
            f"  flexctl batch20 / flexctl one p50: "
            f"{statistics.median(series['flexctl_batch20']) / one:.2f}x (goal <= 1.5x)"
        )


if __name__ == "__main__":
    asyncio.run(main())
