"""Serial (pty) read latency: flexctl's SerialTransport next to bare pyserial, in one run.

Both read the same SerialTwinServer (DemoModel, RealClock) over one NullModem.
Each sample is the wall time of one request as an asyncio caller sees it: one
signal (``temperature``), or a batch of the twenty channels.

- ``flexctl_*``: ``SerialTransport.read_one`` / ``read`` (framing, CRC, templates,
  decoding, the base's timeout and in-flight bookkeeping included).
- ``raw_*``: a bare ``serial.Serial`` doing ``write`` + ``readline`` on a worker
  thread (``run_in_executor``), since the twin runs on this event loop and a
  blocking call on it would stall the twin. The bytes are the same framed
  requests; replies are not checked or decoded.
- ``raw_inthread_one``: the same bare request timed inside the worker thread,
  without the hand-off to and from the event loop (for reference).

The driver side is opened by one of them at a time (two readers on one tty
would steal each other's replies); the series alternate in rounds.

Usage: python bench/transports_serial.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import serial

from flexctl.clock import RealClock
from flexctl.resources import shipped_profile
from flexctl.transports.base import TransportOptions
from flexctl.transports.serial import SerialTransport
from simulators.models.demo import CHANNELS, DemoModel
from simulators.servers.null_modem import NullModem
from simulators.servers.serial_server import SerialTwinServer

ONE = "temperature"
BATCH = [f"ch{i:02d}" for i in range(CHANNELS)]
ROUNDS = 10
WARMUP = 50


async def _flexctl(
    transport: SerialTransport, samples: int, series: dict[str, list[float]]
) -> None:
    one = transport.signal(ONE)
    batch = [transport.signal(name) for name in BATCH]
    for _ in range(WARMUP):
        await transport.read_one(one)
    clock = time.perf_counter
    out_one = series["flexctl_one"]
    for _ in range(samples):
        start = clock()
        await transport.read_one(one)
        out_one.append(clock() - start)
    out_batch = series["flexctl_batch20"]
    for _ in range(max(1, samples // 4)):
        start = clock()
        await transport.read(batch)
        out_batch.append(clock() - start)


async def _raw(
    path: str,
    frames: dict[str, bytes],
    samples: int,
    series: dict[str, list[float]],
    pool: ThreadPoolExecutor,
) -> None:
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(pool, lambda: serial.Serial(path, 9600, timeout=1.0))
    one_frame = frames[ONE]
    batch_frames = [frames[name] for name in BATCH]

    def one() -> bytes:
        port.write(one_frame)
        return bytes(port.readline())

    def batch() -> list[bytes]:
        replies = []
        for frame in batch_frames:
            port.write(frame)
            replies.append(bytes(port.readline()))
        return replies

    def timed_ones(count: int) -> list[float]:
        clock = time.perf_counter
        out = []
        for _ in range(count):
            start = clock()
            one()
            out.append(clock() - start)
        return out

    try:
        port.reset_input_buffer()
        for _ in range(WARMUP):
            await loop.run_in_executor(pool, one)
        clock = time.perf_counter
        out_one = series["raw_one"]
        for _ in range(samples):
            start = clock()
            reply = await loop.run_in_executor(pool, one)
            out_one.append(clock() - start)
        if not reply.endswith(b"\r\n"):
            raise RuntimeError(f"raw read got {reply!r}")
        out_batch = series["raw_batch20"]
        for _ in range(max(1, samples // 4)):
            start = clock()
            await loop.run_in_executor(pool, batch)
            out_batch.append(clock() - start)
        series["raw_inthread_one"] += await loop.run_in_executor(pool, timed_ones, samples)
    finally:
        await loop.run_in_executor(pool, port.close)


async def measure(samples: int) -> dict[str, list[float]]:
    """Per-request wall latencies (s): flexctl_one, flexctl_batch20, raw_one, raw_batch20."""
    clock = RealClock()
    profile = shipped_profile("demo.serial")
    series: dict[str, list[float]] = {
        key: []
        for key in ("flexctl_one", "flexctl_batch20", "raw_one", "raw_batch20", "raw_inthread_one")
    }
    per_round = max(1, samples // ROUNDS)
    async with NullModem() as link:
        server = SerialTwinServer(DemoModel(clock), profile, link=link)
        async with server:
            transport = SerialTransport(
                profile, server.endpoint, clock=clock, options=TransportOptions(timeout=2.0)
            )
            frames = {
                name: transport.settings.framing.encode(transport.signal(name).query.text)
                for name in (ONE, *BATCH)
            }
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-serial") as pool:
                for index in range(ROUNDS):
                    # Alternate who goes first, so neither always runs on a warmer machine.
                    order = ("flexctl", "raw") if index % 2 == 0 else ("raw", "flexctl")
                    for who in order:
                        if who == "flexctl":
                            await transport.connect()
                            try:
                                await _flexctl(transport, per_round, series)
                            finally:
                                await transport.close()
                        else:
                            await _raw(link.b_path, frames, per_round, series, pool)
    return series


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    series = asyncio.run(measure(args.samples))
    for key, values in series.items():
        print(
            f"{key:<17} p50 {statistics.median(values) * 1e3:8.3f} ms   "
            f"p99 {_percentile(values, 0.99) * 1e3:8.3f} ms   n={len(values)}"
        )
    ratio = statistics.median(series["flexctl_one"]) / statistics.median(series["raw_one"])
    verdict = "ok" if ratio <= 1.25 else "MISSED"
    print(f"one-signal p50, flexctl / raw: {ratio:.2f}x (goal <= 1.25x: {verdict})")


if __name__ == "__main__":
    main()
