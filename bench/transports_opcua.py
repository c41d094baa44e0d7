"""OPC UA read latency: flexctl's transport next to a bare asyncua client, same server, same run.

The server is the OPC UA twin serving the demo model in this process, on
loopback. Series (seconds per request): ``flexctl_one`` and ``flexctl_batch20``
through :class:`OpcUaTransport`; ``raw_one`` (``Node.read_value``) and
``raw_batch20`` (``Client.read_values`` of the 20 channels) through asyncua.
The four kinds of request take turns, so drift (GC, CPU frequency) hits all alike.

Usage: python bench/transports_opcua.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from asyncua.client.client import Client

from flexctl.clock import RealClock
from flexctl.resources import shipped_profile
from flexctl.transports.base import TransportOptions
from flexctl.transports.opcua import OpcUaSignal, OpcUaTransport
from simulators.models.demo import CHANNELS, DemoModel
from simulators.servers.opcua_server import OpcUaTwinServer

WARMUP = 200


async def measure(samples: int) -> dict[str, list[float]]:
    """Per-request wall latencies for the four series, ``samples`` of each."""
    clock = RealClock()
    profile = shipped_profile("demo.opcua")
    series: dict[str, list[float]] = {
        "flexctl_one": [],
        "flexctl_batch20": [],
        "raw_one": [],
        "raw_batch20": [],
    }
    async with OpcUaTwinServer(DemoModel(clock), profile) as server:
        transport = OpcUaTransport(
            profile, server.endpoint, clock=clock, options=TransportOptions(timeout=5.0)
        )
        raw = Client(server.endpoint)
        async with transport, raw:
            one = transport.signal("temperature")
            batch = [transport.signal(f"ch{i:02d}") for i in range(CHANNELS)]
            raw_one = raw.get_node(_node(one))
            raw_batch = [raw.get_node(_node(s)) for s in batch]
            requests: dict[str, Callable[[], Awaitable[object]]] = {
                "flexctl_one": lambda: transport.read_one(one),
                "raw_one": raw_one.read_value,
                "flexctl_batch20": lambda: transport.read(batch),
                "raw_batch20": lambda: raw.read_values(raw_batch),
            }
            for _ in range(WARMUP):
                for request in requests.values():
                    await request()
            for _ in range(samples):
                for key, request in requests.items():
                    start = time.perf_counter()
                    await request()
                    series[key].append(time.perf_counter() - start)
    return series


def _node(address: object) -> str:
    assert isinstance(address, OpcUaSignal)
    text: str = address.node.to_string()
    return text


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    series = await measure(args.samples)
    for key, values in series.items():
        print(
            f"{key:<16} p50 {statistics.median(values) * 1e3:7.3f} ms   "
            f"p99 {percentile(values, 0.99) * 1e3:7.3f} ms   n={len(values)}"
        )
    one = statistics.median(series["flexctl_one"])
    print(f"flexctl one / raw one (p50):   {one / statistics.median(series['raw_one']):.2f}x")
    print(
        f"flexctl batch20 / one (p50):   {statistics.median(series['flexctl_batch20']) / one:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
