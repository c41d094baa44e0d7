"""Multi-segment chamber profiles of the controlled-rate freezer twin.

A profile is a list of segments; each ramps the chamber setpoint at ``rate``
(°C/min, a speed: the sign is ignored and the direction comes from the target;
0 steps the setpoint at once) to ``target`` (°C), then holds it ``hold``
minutes. The first ramp starts from the chamber temperature at program start.

The built-in ``standard_bag`` follows the bag template of domain.md 1.4 with
the classic shape of a bag profile (fast drop and warm back around nucleation),
tuned on the twin for a 50 mL fill (30-100 mL stay in the rate band, 20 and
150 mL do not):

===  =====================  =========  =======  ====  ===================================
no.  name                   rate       target   hold  why
===  =====================  =========  =======  ====  ===================================
1    equilibrate            step       +4 °C    10    domain.md 1.4 step 1
2    ramp_lead              step       -1 °C    0     one bag lag ahead, so the sample
                                                      picks up -1 °C/min at once
3    cool_to_nucleation     1 °C/min   -8 °C    0     step 2: sample to about -5 °C
4    nucleation_drop        35 °C/min  -50 °C   0     step 3: -25..-50 °C/min to -40..-60
5    nucleation_warm_back   5 °C/min   -20 °C   7     step 3: "then warm back"; the hold
                                                      takes out the latent heat
6    latent_heat_tail       0.5 °C/min -23 °C   0     the last latent heat: the sample
                                                      still cools at -1 °C/min
7    controlled_cool        1 °C/min   -60 °C   0     step 4: -1 °C/min to -40..-60 °C
8    final_cool             5 °C/min   -100 °C  20    step 5: -5..-10 °C/min to -90..-100;
                                                      hold until the sample is below -90
===  =====================  =========  =======  ====  ===================================

About 102 min from a chamber at +4 °C, within the 90-150 min of domain.md 1.4.
Segments 3, 6 and 7 expect the sample to cool at -1 °C/min (the freezer's
rate-deviation check); a custom segment expects its own rate when it ramps at
most 2 °C/min, and nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flexctl.errors import OutOfRangeError

RATE_LIMIT_C_PER_MIN = 50.0  # the fastest ramp domain.md 1.4 asks for (-50 °C/min)
TARGET_LIMITS_C = (-100.0, 40.0)  # VIA Freeze class chamber range [V]
HOLD_LIMITS_MIN = (0.0, 600.0)
MAX_SEGMENTS = 20
CONTROLLED_RATE_MAX = 2.0  # a ramp this slow is meant to be followed by the sample


@dataclass(frozen=True)
class Segment:
    """One profile segment: ramp at ``rate`` to ``target``, then hold."""

    rate_c_per_min: float
    target_c: float
    hold_min: float
    name: str = ""
    sample_rate_c_per_min: float | None = None  # what the sample should do; None: derive

    def __post_init__(self) -> None:
        if not 0.0 <= abs(self.rate_c_per_min) <= RATE_LIMIT_C_PER_MIN:
            raise OutOfRangeError(
                f"segment rate {self.rate_c_per_min:g} °C/min outside "
                f"[-{RATE_LIMIT_C_PER_MIN:g}, {RATE_LIMIT_C_PER_MIN:g}]"
            )
        low, high = TARGET_LIMITS_C
        if not low <= self.target_c <= high:
            raise OutOfRangeError(
                f"segment target {self.target_c:g} °C outside [{low:g}, {high:g}]"
            )
        low, high = HOLD_LIMITS_MIN
        if not low <= self.hold_min <= high:
            raise OutOfRangeError(f"segment hold {self.hold_min:g} min outside [{low:g}, {high:g}]")

    @property
    def controlled(self) -> bool:
        """A slow ramp: the sample should follow it (the rate-deviation check applies)."""
        return self.sample_rate_c_per_min is not None or (
            0.0 < abs(self.rate_c_per_min) <= CONTROLLED_RATE_MAX
        )


STANDARD_BAG: tuple[Segment, ...] = (
    Segment(0.0, 4.0, 10.0, "equilibrate"),
    Segment(0.0, -1.0, 0.0, "ramp_lead"),
    Segment(1.0, -8.0, 0.0, "cool_to_nucleation"),
    Segment(35.0, -50.0, 0.0, "nucleation_drop"),
    Segment(5.0, -20.0, 7.0, "nucleation_warm_back"),
    Segment(0.5, -23.0, 0.0, "latent_heat_tail", sample_rate_c_per_min=-1.0),
    Segment(1.0, -60.0, 0.0, "controlled_cool"),
    Segment(5.0, -100.0, 20.0, "final_cool"),
)
BUILT_IN: dict[str, tuple[Segment, ...]] = {"standard_bag": STANDARD_BAG}
PROFILE_NAMES: tuple[str, ...] = (*BUILT_IN, "custom")


@dataclass(frozen=True)
class Planned:
    """A segment placed in time: ramp from ``from_c`` during [start_s, ramp_end_s)."""

    number: int
    segment: Segment
    from_c: float
    start_s: float
    ramp_end_s: float
    end_s: float

    @property
    def name(self) -> str:
        return self.segment.name or f"segment {self.number}"

    @property
    def direction(self) -> float:
        """-1 for a cooling ramp, +1 for a warming ramp, 0 for none."""
        delta = self.segment.target_c - self.from_c
        return 0.0 if delta == 0.0 else (1.0 if delta > 0.0 else -1.0)

    def setpoint(self, elapsed_s: float) -> float:
        seg = self.segment
        if elapsed_s >= self.ramp_end_s or seg.rate_c_per_min == 0.0:
            return seg.target_c
        return self.from_c + self.direction * abs(seg.rate_c_per_min) * (
            (elapsed_s - self.start_s) / 60.0
        )

    @property
    def expected_sample_rate(self) -> float | None:
        """The sample rate (°C/min, signed) this segment's ramp should give, if checked."""
        seg = self.segment
        if seg.sample_rate_c_per_min is not None:
            return seg.sample_rate_c_per_min
        if seg.controlled:
            return self.direction * abs(seg.rate_c_per_min)
        return None

    def ramping(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.ramp_end_s


class Schedule:
    """A profile laid out in time from the chamber temperature at start."""

    def __init__(self, segments: Sequence[Segment], start_c: float) -> None:
        if not segments:
            raise OutOfRangeError("the profile has no segments")
        planned: list[Planned] = []
        t = 0.0
        from_c = start_c
        for number, seg in enumerate(segments, start=1):
            rate = abs(seg.rate_c_per_min)
            ramp_s = 0.0 if rate == 0.0 else abs(seg.target_c - from_c) / rate * 60.0
            planned.append(
                Planned(number, seg, from_c, t, t + ramp_s, t + ramp_s + seg.hold_min * 60.0)
            )
            t += ramp_s + seg.hold_min * 60.0
            from_c = seg.target_c
        self.segments: tuple[Planned, ...] = tuple(planned)
        self.total_s = t

    def at(self, elapsed_s: float) -> Planned:
        """The segment running at ``elapsed_s`` (the last one once the profile ended)."""
        for planned in self.segments:
            if elapsed_s < planned.end_s:
                return planned
        return self.segments[-1]
