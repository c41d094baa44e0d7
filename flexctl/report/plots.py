"""Trend plots as PNG bytes, drawn with matplotlib's Agg backend.

The Agg canvas is attached to each figure explicitly (``FigureCanvasAgg``)
instead of going through ``pyplot``: no global backend or figure registry, no
display looked for, nothing left open between reports.
"""

from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flexctl.report.trends import X_SCALE, Panel, Trend

#: Fewer points than this are drawn with markers (daily samples), more as a line only.
MARKERS_BELOW = 60
DPI = 100


def _draw(ax: Axes, panel: Panel, trend: Trend) -> None:
    scale = X_SCALE[trend.x_unit]
    finite: list[float] = []
    for series in panel.series:
        xs = [(t - trend.x_origin) / scale for t, _ in series.points]
        ys = [v for _, v in series.points]
        finite += [v for v in ys if math.isfinite(v)]
        few = len(xs) < MARKERS_BELOW
        ax.plot(xs, ys, label=series.label, marker="o" if few else None, markersize=3)
    # A log axis only when it can show every value (a VCD of 0 before seeding cannot).
    if panel.log and finite and min(finite) > 0:
        ax.set_yscale("log")
    title = f"{panel.title} ({panel.unit})" if panel.unit else panel.title
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=8)
    if len(panel.series) > 1:
        ax.legend(fontsize=8)


def render(trend: Trend) -> bytes:
    """``trend`` as a PNG: its panels in a grid (two columns from three panels on)."""
    count = len(trend.panels)
    cols = 2 if count > 2 else 1
    rows = math.ceil(count / cols)
    figure = Figure(figsize=(10.0, 1.0 + 2.6 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    cells: list[Axes] = list(axes.flat)
    for index, panel in enumerate(trend.panels):
        _draw(cells[index], panel, trend)
    for ax in cells[count:]:
        ax.set_visible(False)
    for col in range(cols):
        # The x label under the lowest panel of each column.
        lowest = max(i for i in range(count) if i % cols == col)
        cells[lowest].set_xlabel(trend.x_label, fontsize=9)
    figure.suptitle(trend.title, fontsize=12)
    out = io.BytesIO()
    # No "Software" key: the same data gives the same bytes, whatever matplotlib's version.
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()
