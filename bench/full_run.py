"""Benchmark: the full CAR-T batch (procedures/car-t.yaml) on the simulated line.

Runs the batch the way ``flexctl run`` does (``flexctl.cli.run.run_batch``, in-process
twins behind their real protocols) in several ways, each in its own subprocess so
that peak RSS is per way, and prints a table: wall time, process (virtual) time,
their ratio, protocol requests (``clock.requests``), CPU time, peak RSS and the
final batch state.

Ways:
  virtual-1min  VirtualClock, default monitor period (1 min): the headline figure,
                checked against the issue's goals (<= 15 s wall, <= 300 MB RSS).
  virtual-5min  VirtualClock, --monitor-period 5 min: where the time goes.
  looptime      the whole event loop under looptime's fake time, with a clock that
                reads loop.time(); capped at --looptime-budget wall seconds, then
                reported as how far it got, with an extrapolated full-run wall time.

Usage::

    pip install -e '.[bench]'     # looptime
    python bench/full_run.py [--looptime-budget 120] [--ways virtual-1min,looptime]

The batch's own progress lines are discarded; a child's stderr (logs) is shown only
if it fails. Instrumentation (per-device requests and in-flight wall time) wraps the
transports' clock; it adds two ``perf_counter`` calls per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROCEDURE = ROOT / "procedures" / "car-t.yaml"
MARK = "BENCH-RESULT "
GOAL_WALL = 15.0  # seconds, from the issue
GOAL_RSS = 300.0  # MB, from the issue

WAYS: dict[str, dict[str, Any]] = {
    "virtual-1min": {"clock": "virtual", "monitor": "1 min"},
    "virtual-5min": {"clock": "virtual", "monitor": "5 min"},
    "looptime": {"clock": "looptime", "monitor": "1 min"},
}

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- instrumentation ----------------------------------------------------------------------


@dataclass
class DeviceStats:
    kind: str
    requests: int = 0
    in_flight_wall: float = 0.0  # sum of request durations (overlaps across devices)
    frame_gap: float = 0.0  # Modbus RTU t3.5, seconds


class _TimedInFlight:
    """Counts and times one device's requests, then defers to the real clock's context."""

    __slots__ = ("_inner", "_stats", "_t0")

    def __init__(self, inner: AbstractContextManager[None], stats: DeviceStats) -> None:
        self._inner = inner
        self._stats = stats
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._stats.requests += 1
        self._t0 = time.perf_counter()
        self._inner.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._stats.in_flight_wall += time.perf_counter() - self._t0
        self._inner.__exit__(*exc)


class _DeviceClock:
    """The run's clock as one transport sees it: the same clock, requests attributed.

    Requests of one transport do not nest (one ``in_flight`` per request), so one
    timing context per transport is enough.
    """

    def __init__(self, clock: Any, stats: DeviceStats) -> None:
        self._clock = clock
        self._context = _TimedInFlight(clock.in_flight(), stats)

    def in_flight(self) -> AbstractContextManager[None]:
        return self._context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clock, name)


# -- a clock on the event loop's time (for looptime) ----------------------------------------


def _loop_clock(epoch: datetime | None = None) -> Any:
    from flexctl.clock import RealClock

    class LoopClock(RealClock):
        """Process time is the running loop's time (looptime fast-forwards it)."""

        def __init__(self) -> None:
            super().__init__()
            self._loop = asyncio.get_running_loop()
            self._t0 = self._loop.time()
            self.epoch = epoch or datetime.now().astimezone().replace(microsecond=0)

        def now(self) -> float:
            return self._loop.time() - self._t0

        def utcnow(self) -> datetime:
            return self.epoch + timedelta(seconds=self.now())

        # sleep / sleep_until: RealClock's asyncio.sleep on the (fake) loop time.

    return LoopClock()


# -- one way, in this process -----------------------------------------------------------------


@dataclass
class Probe:
    clock: Any = None
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    state: str = "not started"
    hold: str = ""  # why the batch was held, if it was
    began: float = 0.0


def _install_probes(probe: Probe, clock_kind: str) -> None:
    import flexctl.cli.run as run_module
    import flexctl.line_runtime as runtime_module

    make_clock = run_module._make_clock
    create_transport = runtime_module.create_transport

    def bench_clock(plan: Any) -> Any:
        probe.clock = _loop_clock() if clock_kind == "looptime" else make_clock(plan)
        return probe.clock

    def bench_transport(profile: Any, endpoint: str, *, clock: Any, **kwargs: Any) -> Any:
        name = kwargs.get("device") or endpoint
        stats = probe.devices[name] = DeviceStats(kind=str(profile.transport))
        transport = create_transport(profile, endpoint, clock=_DeviceClock(clock, stats), **kwargs)
        serial = getattr(transport, "serial", None)
        stats.frame_gap = float(getattr(serial, "frame_gap", 0.0) or 0.0)
        return transport

    run_module._make_clock = bench_clock  # type: ignore[assignment]
    runtime_module.create_transport = bench_transport  # type: ignore[assignment]


def _observer(probe: Probe) -> Callable[[Any], None]:
    def observe(entry: Any) -> None:
        if str(getattr(entry.kind, "name", entry.kind)) == "BATCH_STATE":
            probe.state = str(entry.payload.get("new", probe.state))
            if probe.state == "Holding":
                probe.hold = f"{entry.payload.get('reason')} at {_days(entry.process_time)}"

    return observe


def _snapshot(probe: Probe, **extra: Any) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    clock = probe.clock
    return {
        "wall": time.perf_counter() - probe.began,
        "process": clock.now() if clock is not None else 0.0,
        "requests": clock.requests if clock is not None else 0,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "state": probe.state,
        "hold": probe.hold,
        "devices": {
            name: {
                "kind": s.kind,
                "requests": s.requests,
                "in_flight_wall": s.in_flight_wall,
                "frame_gap": s.frame_gap,
            }
            for name, s in probe.devices.items()
        },
        **extra,
    }


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def _child(mode: str, budget: float) -> int:
    from flexctl.cli.main import build_parser

    way = WAYS[mode]
    db = Path(tempfile.mkdtemp(prefix="flexctl-bench-")) / "flexctl.db"  # a fresh store per way
    argv = ["run", str(PROCEDURE), "--monitor-period", way["monitor"], "--batch-id", "bench"]
    argv += ["--db", str(db)]
    args = build_parser().parse_args(argv)
    probe = Probe()
    _install_probes(probe, way["clock"])

    async def main() -> str:
        from flexctl.cli.run import run_batch

        probe.began = time.perf_counter()
        outcome = await run_batch(args, out=io.StringIO(), observers=[_observer(probe)])
        return outcome.state.value if outcome.state is not None else "not started"

    if way["clock"] != "looptime":
        state = asyncio.run(main())
        _emit(_snapshot(probe, state=state, complete=True))
        return 0

    try:
        import looptime
    except ImportError as exc:
        _emit({"error": f"looptime not installed ({exc}): pip install -e '.[bench]'"})
        return 0
    loop = looptime.new_event_loop()  # fake time on from the start: the whole run
    asyncio.set_event_loop(loop)
    timers = _count_timers(loop)
    task = loop.create_task(main())
    cut: dict[str, Any] = {}

    def at_budget() -> None:  # on the loop's thread
        if task.done():
            return
        top = sorted(timers.items(), key=lambda kv: -kv[1])[:4]
        cut.update(_snapshot(probe, complete=False, cut_at_budget=budget, timers=top))
        _emit(cut)
        task.cancel()

    timer = threading.Timer(budget, lambda: loop.call_soon_threadsafe(at_budget))
    timer.daemon = True
    timer.start()
    # If closing the line under fake time hangs after the cut, do not block forever.
    killer = threading.Timer(budget + 30.0, lambda: os._exit(0))
    killer.daemon = True
    killer.start()
    try:
        state = loop.run_until_complete(task)
    except asyncio.CancelledError:
        return 0  # cut at the budget; the snapshot was emitted
    except BaseException as exc:
        _emit(_snapshot(probe, error=f"{type(exc).__name__}: {exc}", complete=False))
        return 0
    finally:
        timer.cancel()
    _emit(_snapshot(probe, state=state, complete=True))
    killer.cancel()
    return 0


def _count_timers(loop: asyncio.AbstractEventLoop) -> dict[str, int]:
    """Count the loop's timers (call_at) by callback, to see what keeps fake time busy."""
    counts: dict[str, int] = {}
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(callback, "__self__", None)
        coro = getattr(target, "get_coro", lambda: None)() if target is not None else None
        name = getattr(coro, "__qualname__", None) or getattr(callback, "__qualname__", "?")
        counts[name] = counts.get(name, 0) + 1
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign]
    return counts


# -- the parent: every way, then the table ---------------------------------------------------


def _run_way(mode: str, budget: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--mode", mode, "--looptime-budget", str(budget)]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - began
    results = [
        json.loads(line[len(MARK) :]) for line in done.stdout.splitlines() if line.startswith(MARK)
    ]
    if not results:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": f"exit {done.returncode}, no result: {tail}", "process_wall": elapsed}
    result: dict[str, Any] = results[0] if mode == "looptime" else results[-1]
    result["process_wall"] = elapsed
    if "error" in result:
        tail = [ln for ln in done.stderr.strip().splitlines() if ln.strip()][-2:]
        result["stderr_tail"] = tail
    return result


def _days(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d{hours:02d}:{rest // 60:02d}"


def _print_table(results: dict[str, dict[str, Any]], full_process: float | None) -> None:
    head = (
        f"{'way':<13} {'wall s':>7} {'+start':>7} {'process':>9} {'virt/wall':>10} "
        f"{'requests':>9} {'cpu s':>7} {'RSS MB':>7}  state"
    )
    print(head)
    print("-" * len(head))
    for mode, r in results.items():
        if "error" in r and "wall" not in r:
            print(f"{mode:<13} ERROR: {r['error']}")
            continue
        ratio = r["process"] / r["wall"] if r["wall"] > 0 else 0.0
        state = r.get("state", "?")
        if not r.get("complete", False):
            state = f"{state} (cut after {r['wall']:.0f} s wall)"
        print(
            f"{mode:<13} {r['wall']:>7.1f} {r['process_wall']:>7.1f} {_days(r['process']):>9} "
            f"{ratio:>10.0f} {r['requests']:>9} {r['cpu']:>7.1f} {r['rss_mb']:>7.0f}  {state}"
        )
        if "error" in r:
            print(f"{'':<13} error: {r['error']}")
        if r.get("hold"):
            print(f"{'':<13} held: {r['hold']}")
    print("wall s: the run_batch call (line up, batch, line down); +start: the whole subprocess")
    print(f"(interpreter and imports included); process time {_days(0)} = days hh:mm.")

    head_way = results.get("virtual-1min")
    if head_way and "wall" in head_way:
        wall_ok = "ok" if head_way["wall"] <= GOAL_WALL else "MISSED"
        rss_ok = "ok" if head_way["rss_mb"] <= GOAL_RSS else "MISSED"
        print(
            f"\ngoals (virtual-1min, {os.cpu_count()} CPUs here): wall {head_way['wall']:.1f} s "
            f"<= {GOAL_WALL:g} s: {wall_ok}; peak RSS {head_way['rss_mb']:.0f} MB "
            f"<= {GOAL_RSS:g} MB: {rss_ok}"
        )
        _print_split(head_way)

    lt = results.get("looptime")
    if lt and "wall" in lt:
        if lt.get("complete"):
            print(
                f"\nlooptime: the batch ended {lt['state']} at {_days(lt['process'])} after "
                f"{lt['wall']:.1f} s wall" + (f" (held: {lt['hold']})" if lt.get("hold") else "")
            )
        elif lt["process"] > 0 and full_process:
            share = lt["process"] / full_process
            print(
                f"\nlooptime: reached {_days(lt['process'])} of {_days(full_process)} "
                f"({100 * share:.1f} %) with {lt['requests']} requests in {lt['wall']:.0f} s "
                f"wall; extrapolated full run: {lt['wall'] / share:.0f} s wall "
                f"(linear in process time)"
            )
        else:
            print(
                f"\nlooptime: reached {_days(lt['process'])} with {lt['requests']} requests in "
                f"{lt['wall']:.0f} s wall (no complete run to extrapolate against)"
            )
        if lt.get("timers"):
            busiest = ", ".join(f"{name} x{count}" for name, count in lt["timers"])
            print(f"looptime: busiest loop timers (call_at): {busiest}")
    elif lt:
        print(f"\nlooptime: {lt.get('error')}")
        for line in lt.get("stderr_tail", []):
            print(f"  {line}")


def _print_split(r: dict[str, Any]) -> None:
    devices = r.get("devices") or {}
    if not devices:
        return
    print("\nvirtual-1min by device (in-flight wall: request start to reply, incl. bus wait;")
    print("devices overlap, so the column can sum past the wall time):")
    print(f"  {'device':<11} {'transport':<11} {'requests':>9} {'in-flight s':>12} {'ms/req':>7}")
    for name, d in devices.items():
        per = 1000 * d["in_flight_wall"] / d["requests"] if d["requests"] else 0.0
        print(
            f"  {name:<11} {d['kind']:<11} {d['requests']:>9} {d['in_flight_wall']:>12.1f} "
            f"{per:>7.2f}"
        )
        if d["frame_gap"]:
            print(
                f"  {'':<11} RTU t3.5 = {1000 * d['frame_gap']:.2f} ms; requests x gap = "
                f"{d['requests'] * d['frame_gap']:.1f} s (upper bound of the inter-frame waits)"
            )
    in_flight = sum(d["in_flight_wall"] for d in devices.values())
    print(
        f"  sum in-flight {in_flight:.1f} s of {r['wall']:.1f} s wall; CPU {r['cpu']:.1f} s "
        f"(the rest of the wall is the loop idle: waiting on pty/socket replies and timers)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(WAYS), help="run one way here (internal)")
    parser.add_argument("--looptime-budget", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated ways to run")
    args = parser.parse_args(argv)
    if args.mode:
        return _child(args.mode, args.looptime_budget)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = [w for w in ways if w not in WAYS]
    if unknown:
        parser.error(f"unknown way(s): {', '.join(unknown)}")
    results: dict[str, dict[str, Any]] = {}
    for mode in ways:
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        results[mode] = _run_way(mode, args.looptime_budget)
    full = next(
        (r["process"] for r in results.values() if r.get("complete") and "process" in r), None
    )
    print()
    _print_table(results, full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
