"""``flexctl sim serve``: serve a line's twins in this process, for a supervisor in another.

Starts the twin of every ``twin: true`` device of the line behind its real
protocol (OPC UA and Modbus TCP on free loopback ports, serial and Modbus RTU
on pty null modems), on a scaled clock: twin time runs at wall time x --speed.
Writes the endpoints (device -> endpoint) as JSON to --endpoints, prints them,
then prints a line starting with ``ready`` and serves until Ctrl-C or SIGTERM,
which shut it down cleanly (exit 0; the endpoints file is removed). A supervisor
connects with ``LineRuntime(line, clock, twins="external", endpoints=FILE)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from flexctl.clock import ScaledClock
from flexctl.errors import ConfigurationError
from flexctl.line import find_line
from flexctl.line_runtime import (
    DEFAULT_ENDPOINTS_FILE,
    LineTwins,
    twin_devices,
    write_endpoints,
)

# The exit codes of flexctl.cli.main (imported from there would be circular).
EXIT_OK = 0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a factor > 0, got {text!r}")
    return value


def add_parser(tools: Any) -> None:
    parser = tools.add_parser(
        "serve",
        help="serve a line's twins for a supervisor in another process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--line", required=True, help="a shipped line name (sim) or a path to a line file"
    )
    parser.add_argument("--seed", type=int, default=0, help="the line seed (default 0)")
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="twin time runs at wall time times this factor (default 1)",
    )
    parser.add_argument(
        "--endpoints",
        type=Path,
        default=DEFAULT_ENDPOINTS_FILE,
        help=f"where to write the endpoints JSON (default ./{DEFAULT_ENDPOINTS_FILE})",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    line = find_line(args.line)
    twins = twin_devices(line)
    if not twins:
        raise ConfigurationError(line.where, f"line {line.name} has no 'twin: true' device")
    path: Path = args.endpoints
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before the twins start, so a signal during start-up still shuts down cleanly.
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, stop.set)
    try:
        async with LineTwins(line, ScaledClock(args.speed), seed=args.seed) as served:
            endpoints = served.endpoints
            write_endpoints(path, line, endpoints, seed=args.seed, speed=args.speed)
            try:
                _announce(line.name, args, endpoints, path)
                await stop.wait()
            finally:
                _remove_if_ours(path)
    finally:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)
    print("flexctl sim serve: stopped", flush=True)
    return EXIT_OK


def _announce(line: str, args: argparse.Namespace, endpoints: dict[str, str], path: Path) -> None:
    print(
        f"flexctl sim serve: line {line}, seed {args.seed}, twin time = wall time x {args.speed:g}"
    )
    width = max(len(name) for name in endpoints)
    for name, endpoint in endpoints.items():
        print(f"  {name:<{width}}  {endpoint}")
    print(f"endpoints: {path.resolve()}")
    count = len(endpoints)
    print(
        f"ready: serving {count} twin{'s' if count != 1 else ''} until Ctrl-C or SIGTERM",
        flush=True,
    )


def _remove_if_ours(path: Path) -> None:
    """Remove the endpoints file unless another ``sim serve`` has rewritten it since."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        print(f"flexctl sim serve: left {path} in place: {exc}", file=sys.stderr)
        return
    if isinstance(document, dict) and document.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
