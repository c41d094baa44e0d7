"""Lazy integration on a fixed time grid, shared by the process twins.

A twin integrates its state only when it is read, written or called, from the
last grid point up to the last grid point at or before ``clock.now()``. Because
the grid is fixed (``origin + k * dt``), the trajectory is the same whatever the
read pattern: reading every second or once an hour gives the same state at the
same grid point. A quiescent model (nothing changes until the next command)
skips ahead in one go; it must then be exactly stationary, so skipping and
stepping agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class FixedGrid:
    """Grid points ``origin + k * dt``; :meth:`advance` steps a model up to now."""

    def __init__(self, origin: float, dt: float) -> None:
        if not dt > 0:
            raise ValueError(f"grid step must be > 0, got {dt!r}")
        self.origin = origin
        self.dt = dt
        self.k = 0

    @property
    def t(self) -> float:
        """Time of the current grid point (the state's time)."""
        return self.origin + self.k * self.dt

    def advance(
        self,
        now: float,
        step: Callable[[float], None],
        quiescent: Callable[[], bool],
    ) -> None:
        """Call ``step(t)`` for each grid interval ``[t, t + dt]`` that ended by ``now``.

        ``step`` integrates from ``t`` to ``t + dt``. When ``quiescent()`` is true
        the state would not change, so the grid jumps to the last point at once.
        """
        # a tiny epsilon so now == origin + k * dt counts as reached despite rounding
        target = math.floor((now - self.origin) / self.dt + 1e-9)
        while self.k < target:
            if quiescent():
                self.k = target
                return
            step(self.t)
            self.k += 1
