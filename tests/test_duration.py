"""Durations: the forms procedures write, refusals with offsets, format/parse round trips."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flexctl.procedure.duration import (
    MAX_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
)

GOOD: list[tuple[str, float]] = [
    ("250 ms", 0.25),
    ("0.5 ms", 0.0005),
    ("30 s", 30.0),
    ("30s", 30.0),
    ("30 sec", 30.0),
    ("1 second", 1.0),
    ("2 seconds", 2.0),
    ("5 min", 300.0),
    ("5 MIN", 300.0),
    ("5 minutes", 300.0),
    ("1.5 h", 5400.0),
    ("2 h", 7200.0),
    ("2 hr", 7200.0),
    ("2 Hours", 7200.0),
    ("3 d", 259_200.0),
    ("1 day", 86_400.0),
    ("14 days", 1_209_600.0),
    ("1 w", 604_800.0),
    ("2 weeks", 1_209_600.0),
    ("1 d 12 h", 129_600.0),
    ("1d12h", 129_600.0),
    ("1 d 12 h 30 min", 131_400.0),
    ("1 h 0 min", 3600.0),
    ("2 min 30.5 s", 150.5),
    ("1 w 6 d 23 h 59 min 59 s 999 ms", 1_209_599.999),
    ("  30 s  ", 30.0),
    ("0 s", 0.0),
    ("0.1 s", 0.1),
    ("1 h\n30 min\n", 5400.0),
]


@pytest.mark.parametrize(("text", "seconds"), GOOD)
def test_good_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


BAD: list[tuple[str, str, int]] = [
    ("", "empty duration", 0),
    ("   ", "empty duration", 0),
    ("30", "a bare number is ambiguous: give a unit, such as '30 s'", 2),
    ("1.5", "a bare number is ambiguous", 3),
    ("-5 s", "cannot be negative", 0),
    ("+5 s", "takes no sign", 0),
    ("1 h -5 min", "cannot be negative", 4),
    ("s", "expected a number, found 's'", 0),
    ("5 m", "'m' is ambiguous: write 'min'", 2),
    ("5 M", "'m' is ambiguous", 2),
    ("2 months", "months and years have no fixed length", 2),
    ("1 y", "months and years have no fixed length", 2),
    ("5 parsecs", "unknown unit 'parsecs'", 2),
    ("5 µs", "expected a unit after 5", 2),
    ("30 min 1 h", "'h' must come before 'min'", 7),
    ("1 h 2 h", "'h' is given twice", 4),
    ("1 hour 2 hours", "'h' is given twice", 7),
    ("1.5 h 30 min", "only the last part may have a fraction", 0),
    ("1 h 90 min", "90 min is not less than 1 h: write '2 h 30 min'", 4),
    ("1 d 24 h", "not less than 1 d: write '2 d'", 4),
    ("1 w 7 d", "not less than 1 w", 4),
    ("1 min 60 s", "not less than 1 min", 6),
    ("1 s 1000 ms", "not less than 1 s", 4),
    ("1,5 h", "use '.' for a decimal point", 1),
    ("1. h", "a '.' needs digits after it", 1),
    (".5 h", "write a digit before the decimal point", 0),
    ("1e3 s", "unknown unit 'e'", 1),
    ("5 s!", "expected a number, found '!'", 3),
    ("1 d, 12 h", "expected a number, found ','", 3),
    ("1 d and 12 h", "expected a number, found 'a'", 4),
    ("5 sec 5", "expected a unit after 5", 7),
    ("1" * 31 + " s", "number too long", 0),
    ("36501 d", "duration too long", 0),
]


@pytest.mark.parametrize(("text", "fragment", "offset"), BAD)
def test_bad_durations(text: str, fragment: str, offset: int) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert fragment in caught.value.message
    assert caught.value.offset == offset, caught.value.message
    assert caught.value.text == text
    assert isinstance(caught.value, ValueError)


def test_a_yaml_number_is_refused_with_a_hint() -> None:
    with pytest.raises(DurationError, match="such as '30 s', not int"):
        parse_duration(30)  # type: ignore[arg-type]
    with pytest.raises(DurationError, match="not NoneType"):
        parse_duration(None)  # type: ignore[arg-type]


FORMATS: list[tuple[float, str]] = [
    (0, "0 s"),
    (0.25, "250 ms"),
    (0.0005, "0.5 ms"),
    (1.5, "1 s 500 ms"),
    (30, "30 s"),
    (90, "1 min 30 s"),
    (300, "5 min"),
    (5400, "1 h 30 min"),
    (86_400, "1 d"),
    (129_600, "1 d 12 h"),
    (1_209_600, "14 d"),
    (93_784.005, "1 d 2 h 3 min 4 s 5 ms"),
    (0.1 + 0.2, "300 ms"),  # rounded to the microsecond
]


@pytest.mark.parametrize(("seconds", "text"), FORMATS)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_refuses_what_is_not_a_duration() -> None:
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and not negative"):
            format_duration(bad)
    with pytest.raises(TypeError):
        format_duration(True)
    with pytest.raises(TypeError):
        format_duration("30 s")  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=100 * 86_400_000))
@example(0)
@example(1)
@example(999)
@example(86_399_999)
@example(100 * 86_400_000)
def test_format_then_parse_round_trips_whole_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert parse_duration(text.upper()) == seconds
    assert parse_duration(text.replace(" ", "")) == seconds


UNIT_SPELLINGS = {
    "w": ("w", "wk", "week", "weeks"),
    "d": ("d", "day", "days"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "min": ("min", "mins", "minute", "minutes"),
    "s": ("s", "sec", "secs", "second", "seconds"),
    "ms": ("ms", "msec", "millisecond", "milliseconds"),
}
UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "min": 60_000, "s": 1000, "ms": 1}


@st.composite
def written_durations(draw: st.DrawFn) -> tuple[str, int]:
    """A duration as a person might write it, with its value in ms computed here."""
    units = draw(
        st.lists(st.sampled_from(list(UNIT_MS)), min_size=1, max_size=6, unique=True).map(
            lambda chosen: sorted(chosen, key=lambda unit: -UNIT_MS[unit])
        )
    )
    parts = []
    total = 0
    previous: int | None = None
    for unit in units:
        high = 500 if previous is None else previous // UNIT_MS[unit] - 1
        count = draw(st.integers(0, high))
        total += count * UNIT_MS[unit]
        spelling = draw(st.sampled_from(UNIT_SPELLINGS[unit]))
        case = draw(st.sampled_from([str.lower, str.upper, str.title]))
        parts.append(f"{count}{draw(st.sampled_from(['', ' ']))}{case(spelling)}")
        previous = UNIT_MS[unit]
    return draw(st.sampled_from([" ", "  "])).join(parts), total


@given(written_durations())
def test_written_durations_parse_to_their_value(case: tuple[str, int]) -> None:
    text, millis = case
    assert parse_duration(text) == millis / 1000
    assert parse_duration(format_duration(millis / 1000)) == millis / 1000


duration_texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=string.printable, max_size=30),
    st.text(alphabet="0123456789 .,-+dhmsinwecyDHMS", max_size=30),
)


@given(duration_texts)
@example("1" * 5000 + " s")
@example("9" * 30 + " w")
@example("0.0000000001 ms")
def test_random_text_raises_only_duration_errors(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        assert 0 <= exc.offset <= len(text)
        assert exc.message
        return
    assert 0 <= seconds <= MAX_SECONDS
