"""Durations as procedures write them: ``30 s``, ``5 min``, ``1.5 h``, ``1 d 12 h``.

A duration is one or more parts, each a number and a unit, largest unit first:
``1 d 12 h 30 min``. Spaces between number and unit and between parts are
optional (``30s``, ``1d12h``). Units, in any case:

=========  ===============================================
ms         ``ms``, ``msec``, ``millisecond(s)``
s          ``s``, ``sec``, ``secs``, ``second(s)``
min        ``min``, ``mins``, ``minute(s)``
h          ``h``, ``hr``, ``hrs``, ``hour(s)``
d          ``d``, ``day``, ``days``
w          ``w``, ``wk``, ``wks``, ``week(s)``
=========  ===============================================

Refused, with a message and the offset of the fault: empty text, a bare
number (``30``: seconds or minutes? write ``30 s``), a sign, ``m`` (minutes
or milliseconds? write ``min``), months and years (no fixed length), a unit
given twice or out of order, a fraction before the last part (``1.5 h 30
min``), and a later part that is not smaller than one of the unit before it
(``1 h 90 min``: write ``2 h 30 min``), so every duration reads one way.

:func:`format_duration` writes the natural form back: largest units first
(d, h, min, s, ms; no weeks, a run lasts ``14 d``), zero parts dropped, and
``parse_duration(format_duration(x)) == x`` for every whole number of
milliseconds.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final, NamedTuple

__all__ = ["MAX_SECONDS", "DurationError", "format_duration", "parse_duration"]

MAX_SECONDS: Final = 100 * 365 * 86_400
"""Longest duration accepted (about a century): a guard, not a process limit."""

_UNIT_MS: Final = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "min": 60_000, "s": 1_000}
_UNIT_MS_ALL: Final = {**_UNIT_MS, "ms": 1}
_ALIASES: Final = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "min"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "w"),
}
_REFUSED_UNITS: Final = {
    "m": "'m' is ambiguous: write 'min' for minutes or 'ms' for milliseconds",
    **dict.fromkeys(
        ("mo", "mon", "month", "months", "y", "yr", "yrs", "year", "years"),
        "months and years have no fixed length: write days, e.g. '30 d'",
    ),
}
_NUMBER: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UNIT: Final = re.compile(r"[A-Za-z]+")
_SPACE: Final = " \t\r\n"
_EXPECTED_UNITS: Final = "ms, s, min, h, d or w"


class DurationError(ValueError):
    """The text is not a duration; ``offset`` is the 0-based character at fault."""

    def __init__(self, message: str, offset: int, text: str = "") -> None:
        self.message = message
        self.offset = offset
        self.text = text
        where = f"at offset {offset} of {text!r}" if text else f"at offset {offset}"
        super().__init__(f"{message} ({where})")


def parse_duration(text: str) -> float:
    """The number of seconds ``text`` says, or DurationError saying what and where."""
    if not isinstance(text, str):
        example = f"'{text} s'" if isinstance(text, int | float) else "'30 s'"
        raise DurationError(
            f"a duration must be text with a unit, such as {example}, not {type(text).__name__}",
            0,
        )
    pos = _skip_space(text, 0)
    if pos == len(text):
        raise DurationError(
            "empty duration: write a number and a unit, such as '30 s' or '1 d 12 h'", 0, text
        )
    total_ms = Fraction(0)
    previous: _Part | None = None
    while pos < len(text):
        part = _read_part(text, pos, first=previous is None)
        if previous is not None:
            _check_order(text, previous, part, total_ms)
        total_ms += part.ms
        previous = part
        pos = part.end
    if total_ms > MAX_SECONDS * 1000:
        raise DurationError(f"duration too long (more than {MAX_SECONDS // 86_400} d)", 0, text)
    return float(total_ms / 1000)


class _Part(NamedTuple):
    literal: str
    unit: str
    start: int
    end: int  # after the unit and the space that follows it

    @property
    def ms(self) -> Fraction:
        return Fraction(self.literal) * _UNIT_MS_ALL[self.unit]


def _read_part(text: str, start: int, *, first: bool) -> _Part:
    """One ``<number> <unit>`` part at ``start``."""
    char = text[start]
    if char in "+-":
        what = "cannot be negative" if char == "-" else "takes no sign"
        raise DurationError(f"a duration {what}", start, text)
    number = _NUMBER.match(text, start)
    if number is None:
        if char == ".":
            raise DurationError("write a digit before the decimal point ('0.5 h')", start, text)
        raise DurationError(f"expected a number, found {char!r}", start, text)
    literal = number.group()
    pos = number.end()
    if text[pos : pos + 1] in (".", ","):
        hint = "use '.' for a decimal point" if text[pos] == "," else "a '.' needs digits after it"
        raise DurationError(f"invalid number {text[start : pos + 1]!r}: {hint}", pos, text)
    if len(literal) > 30:
        raise DurationError("number too long", start, text)
    pos = _skip_space(text, pos)
    unit_match = _UNIT.match(text, pos)
    if unit_match is None:
        if pos == len(text) and first:
            raise DurationError(
                f"a bare number is ambiguous: give a unit, such as '{literal} s' or "
                f"'{literal} min'",
                pos,
                text,
            )
        raise DurationError(f"expected a unit after {literal} ({_EXPECTED_UNITS})", pos, text)
    word = unit_match.group().lower()
    unit = _ALIASES.get(word)
    if unit is None:
        message = _REFUSED_UNITS.get(word) or (
            f"unknown unit {unit_match.group()!r} (expected {_EXPECTED_UNITS})"
        )
        raise DurationError(message, unit_match.start(), text)
    return _Part(literal, unit, start, _skip_space(text, unit_match.end()))


def _check_order(text: str, previous: _Part, part: _Part, total_ms: Fraction) -> None:
    """Largest unit first, each once, a fraction only last, each part below the unit before."""
    if part.unit == previous.unit:
        raise DurationError(f"'{part.unit}' is given twice", part.start, text)
    previous_ms = _UNIT_MS_ALL[previous.unit]
    if _UNIT_MS_ALL[part.unit] > previous_ms:
        raise DurationError(
            f"'{part.unit}' must come before '{previous.unit}': largest unit first",
            part.start,
            text,
        )
    if "." in previous.literal:
        raise DurationError("only the last part may have a fraction", previous.start, text)
    if part.ms >= previous_ms:
        so_far = format_duration(float((total_ms + part.ms) / 1000))
        raise DurationError(
            f"{part.literal} {part.unit} is not less than 1 {previous.unit}: write '{so_far}'",
            part.start,
            text,
        )


def format_duration(seconds: float) -> str:
    """The natural text for ``seconds``: ``14 d``, ``1 d 12 h``, ``1 min 30 s``, ``250 ms``.

    Rounded to the microsecond; a part below a millisecond shows as a decimal
    of ms (``0.5 ms``). Zero is ``0 s``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"a duration is a number of seconds, not {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative, not {seconds!r}")
    micros = round(Fraction(seconds) * 1_000_000)
    millis, micro = divmod(micros, 1000)
    parts: list[str] = []
    for unit in ("d", "h", "min", "s"):
        count, millis = divmod(millis, _UNIT_MS[unit])
        if count:
            parts.append(f"{count} {unit}")
    if micro:
        parts.append(f"{millis}.{micro:03d}".rstrip("0") + " ms")
    elif millis:
        parts.append(f"{millis} ms")
    return " ".join(parts) or "0 s"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos
