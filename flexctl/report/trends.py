"""The trends of a batch: historian samples grouped into the plots the report shows.

Three named plots, when their signals have samples: the bioreactor's culture
(temperature, DO, pH, viable cell density and viability over process days), the
thaw curve (plate and sample temperature over minutes) and the freezer (chamber
and sample temperature over minutes). Any other numeric signal gets a panel in
its device's "other signals" plot. A plot or panel without samples is left out
and a note says so; text samples are counted in a note, never plotted.

The historian samples every device for the whole batch, but a thaw takes
minutes on day 0 and a freeze hours on the last day: the minute plots (and a
device's other signals, when it was in use for a small part of the batch) show
the time the device was in use, that is the unit procedures that commanded it,
and say how many samples lie outside. This module only groups data;
:mod:`flexctl.report.plots` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flexctl.record.journal import EntryKind, JournalEntry
from flexctl.record.store import Sample
from flexctl.report.wording import stamp

#: Seconds per unit of a trend's x axis.
X_SCALE: Mapping[str, float] = {"days": 86_400.0, "hours": 3600.0, "minutes": 60.0}
#: A device's other signals are shown for its time in use when that is less than this share.
IN_USE_SHARE = 0.25
#: Time shown before and after a device's use: this share of it, at least MIN_PAD seconds.
PAD_SHARE = 0.1
MIN_PAD = 120.0
#: Units as the profiles write them, as a person reads them.
UNIT_TEXT: Mapping[str, str] = {"degC": "°C", "1/mL": "cells/mL", "degC/min": "°C/min"}

Key = tuple[str, str]  # (device, signal)


@dataclass(frozen=True)
class Series:
    """One signal's samples: (seconds since the batch's start, value); NaN is a gap."""

    device: str
    signal: str
    label: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    series: tuple[Series, ...]
    log: bool = False


@dataclass(frozen=True)
class Window:
    """When a device was in use (seconds since the batch's start), and in which unit procedures."""

    start: float
    end: float
    units: tuple[str, ...]

    def text(self) -> str:
        units = ", ".join(self.units)
        return f"{stamp(self.start)} to {stamp(self.end)} (unit procedure {units})"


@dataclass(frozen=True)
class Trend:
    """One figure: panels sharing an x axis in ``x_unit`` counted from ``x_origin`` seconds.

    ``scope`` says what part of the batch is shown when it is not all of it.
    """

    key: str
    title: str
    x_unit: str
    x_origin: float
    panels: tuple[Panel, ...]
    scope: str = ""

    @property
    def x_label(self) -> str:
        start = "the batch's start" if self.x_origin == 0 else stamp(self.x_origin)
        return f"{self.x_unit} from {start}"


@dataclass(frozen=True)
class Trends:
    plots: tuple[Trend, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _PanelSpec:
    title: str
    unit: str
    signals: tuple[tuple[str, str], ...]  # (signal, label)
    log: bool = False


@dataclass(frozen=True)
class _Spec:
    kind: str  # a device name or driver
    title: str
    x_unit: str
    panels: tuple[_PanelSpec, ...]


_TEMPERATURE = "°C"
NAMED: tuple[_Spec, ...] = (
    _Spec(
        "bioreactor",
        "Bioreactor culture",
        "days",
        (
            _PanelSpec("Temperature", _TEMPERATURE, (("temperature", "temperature"),)),
            _PanelSpec("Dissolved oxygen", "%", (("do", "DO"),)),
            _PanelSpec("pH", "", (("ph", "pH"),)),
            _PanelSpec("Viable cell density", "cells/mL", (("sample_vcd", "VCD"),), log=True),
            _PanelSpec("Viability", "%", (("sample_viability", "viability"),)),
        ),
    ),
    _Spec(
        "thaw",
        "Thaw curve",
        "minutes",
        (
            _PanelSpec(
                "Temperature",
                _TEMPERATURE,
                (("plate_temperature", "plate"), ("sample_temperature", "sample")),
            ),
        ),
    ),
    _Spec(
        "freezer",
        "Controlled-rate freezer",
        "minutes",
        (
            _PanelSpec(
                "Temperature",
                _TEMPERATURE,
                (("chamber_temperature", "chamber"), ("sample_temperature", "sample")),
            ),
        ),
    ),
)


def device_windows(entries: Iterable[JournalEntry], started: float) -> dict[str, Window]:
    """Each commanded device's time in use: the span of the unit procedures that commanded it."""
    spans: dict[str, tuple[float, float]] = {}
    users: dict[str, list[str]] = {}
    for e in entries:
        if not e.unit_procedure:
            continue
        t = e.process_time - started
        if e.kind in (EntryKind.STEP_START, EntryKind.STEP_END):
            low, high = spans.get(e.unit_procedure, (t, t))
            spans[e.unit_procedure] = (min(low, t), max(high, t))
        elif e.kind is EntryKind.COMMAND and e.payload.get("method") != "safe_state":
            for device in filter(None, e.device.split(",")):
                units = users.setdefault(device, [])
                if e.unit_procedure not in units:
                    units.append(e.unit_procedure)
    windows = {}
    for device, units in users.items():
        known = [spans[u] for u in units if u in spans]
        if known:
            start, end = min(s for s, _ in known), max(e for _, e in known)
            windows[device] = Window(start, end, tuple(units))
    return windows


@dataclass
class _Context:
    grouped: Mapping[Key, list[Sample]]
    drivers: Mapping[str, str]
    units: Mapping[Key, str]
    windows: Mapping[str, Window]
    started: float
    used: set[Key] = field(default_factory=set)


def _points(samples: Sequence[Sample], started: float) -> tuple[tuple[float, float], ...]:
    """The numeric samples as points; none at all when not one of them is finite."""
    points = tuple(
        (s.process_time - started, float(s.value))
        for s in samples
        if isinstance(s.value, int | float) and not isinstance(s.value, bool)
    )
    return points if any(math.isfinite(v) for _, v in points) else ()


def _within(
    points: tuple[tuple[float, float], ...], window: Window | None
) -> tuple[tuple[float, float], ...]:
    if window is None:
        return points
    pad = max(MIN_PAD, PAD_SHARE * (window.end - window.start))
    return tuple(p for p in points if window.start - pad <= p[0] <= window.end + pad)


def _scope(window: Window | None, hidden: int) -> str:
    if window is None:
        return ""
    outside = f"; {hidden} samples outside it are not shown" if hidden else ""
    return f"while in use: {window.text()}{outside}"


def _x_unit(points: Iterable[tuple[float, float]]) -> str:
    times = [t for t, _ in points]
    span = max(times) - min(times) if times else 0.0
    return "days" if span > 2 * 86_400 else "hours" if span > 3 * 3600 else "minutes"


def _matches(kind: str, device: str, drivers: Mapping[str, str]) -> bool:
    return device == kind or drivers.get(device, "").lower() == kind


def _named_device(spec: _Spec, device: str, ctx: _Context) -> tuple[Trend | None, list[str]]:
    window = ctx.windows.get(device) if spec.x_unit == "minutes" else None
    panels: list[Panel] = []
    notes: list[str] = []
    hidden = 0
    for panel in spec.panels:
        series: list[Series] = []
        for signal, label in panel.signals:
            if (device, signal) in ctx.grouped:
                ctx.used.add((device, signal))
            every = _points(ctx.grouped.get((device, signal), []), ctx.started)
            points = _within(every, window)
            hidden += len(every) - len(points)
            if points:
                series.append(Series(device, signal, label, points))
            else:
                notes.append(f"{spec.title}: no samples of {device}.{signal}; not plotted")
        if series:
            panels.append(Panel(panel.title, panel.unit, tuple(series), panel.log))
    if not panels:
        return None, notes
    origin = 0.0
    if spec.x_unit == "minutes":
        origin = min(t for p in panels for s in p.series for t, _ in s.points)
    own = device == spec.kind
    title = spec.title if own else f"{spec.title} ({device})"
    key = spec.kind if own else f"{spec.kind}:{device}"
    trend = Trend(key, title, spec.x_unit, origin, tuple(panels), _scope(window, hidden))
    return trend, notes


def _named(spec: _Spec, ctx: _Context) -> tuple[list[Trend], list[str]]:
    wanted = [signal for panel in spec.panels for signal, _ in panel.signals]
    devices = sorted(
        {d for d, s in ctx.grouped if s in wanted and _matches(spec.kind, d, ctx.drivers)}
    )
    if not devices:
        return [], [
            f"{spec.title}: no samples of {spec.kind} {', '.join(wanted)} in the record; "
            "the plot is left out"
        ]
    trends: list[Trend] = []
    notes: list[str] = []
    for device in devices:
        trend, said = _named_device(spec, device, ctx)
        notes += said
        if trend is not None:
            trends.append(trend)
    return trends, notes


def _others(ctx: _Context) -> tuple[list[Trend], list[str]]:
    by_device: dict[str, list[tuple[str, tuple[tuple[float, float], ...]]]] = {}
    notes: list[str] = []
    for (device, signal), samples in sorted(ctx.grouped.items()):
        if (device, signal) in ctx.used:
            continue
        points = _points(samples, ctx.started)
        skipped = len(samples) - len(points)
        if skipped:
            notes.append(
                f"{device}.{signal}: {skipped} of {len(samples)} samples are not "
                "numbers; not plotted"
            )
        if points:
            by_device.setdefault(device, []).append((signal, points))
    trends = []
    for device, signals in by_device.items():
        every = [p for _, points in signals for p in points]
        span = max(t for t, _ in every) - min(t for t, _ in every)
        window = ctx.windows.get(device)
        if window is not None and window.end - window.start >= IN_USE_SHARE * span:
            window = None  # in use for much of the batch: show all of it
        series = [
            Series(device, signal, signal, _within(points, window)) for signal, points in signals
        ]
        shown = [s for s in series if s.points]
        if not shown:
            continue
        hidden = len(every) - sum(len(s.points) for s in shown)
        x_unit = _x_unit(p for s in shown for p in s.points)
        origin = 0.0 if x_unit == "days" else min(t for s in shown for t, _ in s.points)
        panels = tuple(Panel(s.signal, ctx.units.get((device, s.signal), ""), (s,)) for s in shown)
        trends.append(
            Trend(
                f"other:{device}",
                f"{device}: other signals",
                x_unit,
                origin,
                panels,
                _scope(window, hidden),
            )
        )
    return trends, notes


def build_trends(
    samples: Sequence[Sample],
    *,
    started: float,
    drivers: Mapping[str, str],
    units: Mapping[Key, str] | None = None,
    windows: Mapping[str, Window] | None = None,
) -> Trends:
    """The plots of ``samples``, times counted from ``started``.

    ``drivers`` maps a device to its driver (a bioreactor not named ``bioreactor``
    is still one), ``units`` a signal to its unit, ``windows`` a device to its time in use.
    """
    grouped: dict[Key, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault((sample.device, sample.signal), []).append(sample)
    ctx = _Context(grouped, drivers, units or {}, windows or {}, started)
    plots: list[Trend] = []
    notes: list[str] = []
    for spec in NAMED:
        found, said = _named(spec, ctx)
        plots += found
        notes += said
    found, said = _others(ctx)
    return Trends(tuple(plots + found), tuple(notes + said))


def signal_units(devices: Mapping[str, Mapping[str, object]]) -> dict[Key, str]:
    """(device, signal) -> unit, from the devices' descriptions (``described.signals``)."""
    units: dict[Key, str] = {}
    for device, description in devices.items():
        described = description.get("described")
        signals = described.get("signals") if isinstance(described, Mapping) else None
        if not isinstance(signals, Mapping):
            continue
        for signal, spec in signals.items():
            unit = spec.get("unit") if isinstance(spec, Mapping) else None
            if isinstance(unit, str) and unit:
                units[(device, str(signal))] = UNIT_TEXT.get(unit, unit)
    return units


def finite(value: float) -> float | None:
    """``value``, or None for NaN and infinity (JSON has no NaN)."""
    return value if math.isfinite(value) else None
