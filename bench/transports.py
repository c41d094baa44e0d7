"""Read latency through flexctl next to the bare library, for each transport, in one run.

For OPC UA, Modbus TCP, Modbus RTU (pty) and serial (pty) against their twin
servers on this machine: p50 and p99 of one-signal reads and of a 20-signal
batched read, through the flexctl transport and through the raw library
(asyncua, pymodbus, pyserial) reading the same server in the same run.

Goals (issue 2): flexctl one-signal p50 <= 1.25x raw one-signal p50;
flexctl 20-signal batch p50 <= 1.5x flexctl one-signal p50 on OPC UA and Modbus.

Usage: python bench/transports.py [--samples N] [--kinds opcua,modbus-tcp,...]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import transports_modbus
import transports_opcua
import transports_serial

from flexctl.logs import configure_logging

Measure = Callable[[int], Awaitable[dict[str, list[float]]]]

MEASURES: dict[str, Measure] = {
    "opcua": transports_opcua.measure,
    "modbus-tcp": lambda n: transports_modbus.measure("modbus-tcp", n),
    "modbus-rtu": lambda n: transports_modbus.measure("modbus-rtu", n),
    "serial": transports_serial.measure,
}
BATCH_GOAL = {"opcua", "modbus-tcp", "modbus-rtu"}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarise(kind: str, series: dict[str, list[float]]) -> list[str]:
    lines = []
    for key in ("raw_one", "flexctl_one", "raw_batch20", "flexctl_batch20"):
        values = series[key]
        lines.append(
            f"  {key:<16} p50 {statistics.median(values) * 1e3:8.3f} ms   "
            f"p99 {percentile(values, 0.99) * 1e3:8.3f} ms   n={len(values)}"
        )
    one = statistics.median(series["flexctl_one"])
    raw_one = statistics.median(series["raw_one"])
    batch = statistics.median(series["flexctl_batch20"])
    ratio_raw = one / raw_one
    ratio_batch = batch / one
    verdict_raw = "ok" if ratio_raw <= 1.25 else "MISSED"
    lines.append(
        f"  one-signal p50, flexctl / raw: {ratio_raw:.2f}x (goal <= 1.25x: {verdict_raw})"
    )
    if kind in BATCH_GOAL:
        verdict_batch = "ok" if ratio_batch <= 1.5 else "MISSED"
        lines.append(
            f"  20-signal batch / one signal p50: {ratio_batch:.2f}x "
            f"(goal <= 1.5x: {verdict_batch})"
        )
    else:
        lines.append(
            f"  20-signal batch / one signal p50: {ratio_batch:.2f}x "
            "(no goal: a line protocol asks one signal at a time)"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--kinds", default=",".join(MEASURES))
    args = parser.parse_args()
    configure_logging("warning")  # the figures, not the twins' debug chatter
    for kind in args.kinds.split(","):
        series = await MEASURES[kind](args.samples)
        print(f"{kind}:")
        print("\n".join(summarise(kind, series)))


if __name__ == "__main__":
    asyncio.run(main())
