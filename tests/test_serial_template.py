"""Serial templates: format and parse round trips, refusals, ill-formed templates."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from flexctl.errors import OutOfRangeError, ProtocolError
from flexctl.transports.serial_template import Template, TemplateError, TemplateMismatch

SENDABLE = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no space
texts = st.text(alphabet=SENDABLE, min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
BY_KIND: dict[str, st.SearchStrategy[bool | int | float | str]] = {
    "f": finite,
    "d": ints,
    "b": st.booleans(),
    "s": texts,
    "": texts,
}
# Literal text between fields: anything printable except braces.
literals = st.text(alphabet=[c for c in string.printable[:95] if c not in "{}"], max_size=6)


@given(finite)
@example(37.5)
@example(12.5)
@example(-0.0)
@example(1e-300)
@example(1.7976931348623157e308)
def test_float_round_trips_exactly(value: float) -> None:
    template = Template("TS {value:f}")
    line = template.format({"value": value})
    assert template.parse(line) == {"value": value}


@given(finite, st.integers(min_value=0, max_value=6))
def test_float_with_precision_round_trips_to_that_precision(value: float, digits: int) -> None:
    assume(abs(value) < 1e12)
    template = Template(f"SP {{value:.{digits}f}}")
    parsed = template.parse(template.format({"value": value}))["value"]
    assert isinstance(parsed, float)
    assert parsed == pytest.approx(value, abs=0.5 * 10.0**-digits + 1e-9 * abs(value))


@given(ints)
def test_int_round_trips(value: int) -> None:
    template = Template("LVL {value:d}")
    assert template.parse(template.format({"value": value})) == {"value": value}


@given(st.booleans())
def test_bool_round_trips(value: bool) -> None:
    template = Template("RUN {value:b}")
    line = template.format({"value": value})
    assert line == f"RUN {int(value)}"
    assert template.parse(line) == {"value": value}


@given(texts)
def test_text_round_trips(value: str) -> None:
    template = Template("LBL {value:s}")
    assert template.parse(template.format({"value": value})) == {"value": value}


@given(st.one_of(st.booleans(), ints, finite, texts))
def test_untyped_field_takes_its_type_from_the_value(value: bool | int | float | str) -> None:
    template = Template("START {program}")
    parsed = template.parse(template.format({"program": value}))["program"]
    if isinstance(value, bool):
        assert parsed == int(value)
    elif isinstance(value, int | float) or isinstance(parsed, str):
        assert parsed == value
    else:  # text that looks like a number reads back as that number
        assert float(value) == parsed


@given(
    st.lists(
        st.tuples(literals, st.sampled_from(["f", "d", "b", "s", ""])), min_size=1, max_size=4
    ),
    literals,
    st.data(),
)
def test_any_template_round_trips_or_refuses_ambiguity(
    parts: list[tuple[str, str]], tail: str, data: st.DataObject
) -> None:
    text = ""
    values: dict[str, bool | int | float | str] = {}
    for index, (literal, kind) in enumerate(parts):
        # adjacent fields are refused (tested below): keep them apart
        between = " " if index and not literal else literal
        name = f"f{index}"
        text += between + "{" + name + (f":{kind}" if kind else "") + "}"
        values[name] = data.draw(BY_KIND[kind])
    text += tail
    assume(text)
    template = Template(text)
    try:
        line = template.format(values)
    except OutOfRangeError:
        return  # a text value contained the literal after it: refused, never misread
    parsed = template.parse(line)
    for name, value in values.items():
        if isinstance(parsed[name], str) or not isinstance(value, str):
            assert parsed[name] == value
        else:  # an untyped field holding digits reads back as a number
            assert parsed[name] == float(value)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999", "", "1.2.3", "0x10", "e5"])
def test_float_field_refuses(text: str) -> None:
    with pytest.raises(TemplateMismatch):
        Template("TS {value:f}").parse(f"TS {text}")


@pytest.mark.parametrize("text", ["-12.5", "3", "1e-3", "+4.", ".5", "-1E+3"])
def test_float_field_accepts(text: str) -> None:
    assert Template("TS {value:f}").parse(f"TS {text}") == {"value": float(text)}


@given(st.text(max_size=40))
def test_parse_raises_only_mismatch(line: str) -> None:
    for template in (Template("TS {value:f}"), Template("ID {name:s} {v:d} {ok:b}")):
        try:
            template.parse(line)
        except TemplateMismatch as exc:
            assert isinstance(exc, ProtocolError)


def test_literal_parts_are_escaped_and_anchored() -> None:
    template = Template("T? (a+b) [{value:d}] $")
    assert template.parse("T? (a+b) [42] $") == {"value": 42}
    for line in ("T? (aab) [42] $", "xT? (a+b) [42] $", "T? (a+b) [42] $ "):
        with pytest.raises(TemplateMismatch):
            template.parse(line)
    assert Template("{{{value:d}}}").format({"value": 7}) == "{7}"


def test_literal_template_formats_as_itself() -> None:
    template = Template("OK")
    assert template.is_literal
    assert template.format() == "OK"
    assert template.parse("OK") == {}


def test_default_type_types_an_untyped_field() -> None:
    assert Template("C {value}", "f").parse("C 3") == {"value": 3.0}
    assert Template("C {value}", "d").fields[0].type == "d"
    assert Template("C {value:.2f}").fields[0].precision == 2


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("S {v:s};", "two words"),
        ("S {v:s}", "caf\u00e9"),
        ("S {v:s}", 3),
        ("F {v:f}", math.nan),
        ("F {v:f}", math.inf),
        ("F {v:f}", "1.0"),
        ("F {v:f}", True),
        ("F {v:f}", 10**400),
        ("D {v:d}", 1.5),
        ("D {v:d}", "1"),
        ("B {v:b}", 2),
        ("B {v:b}", "1"),
    ],
)
def test_values_the_wire_cannot_carry_are_refused(text: str, value: object) -> None:
    with pytest.raises(OutOfRangeError):
        Template(text).format({"v": value})  # type: ignore[dict-item]


def test_missing_value_is_refused() -> None:
    with pytest.raises(OutOfRangeError, match="no value for field 'v'"):
        Template("SP {v:f}").format({})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("T {value", "never closed"),
        ("T value}", "single '}'"),
        ("T {}", "needs a name"),
        ("T {:f}", "needs a name"),
        ("T {1x:f}", "needs a name"),
        ("T {value:x}", "unknown format"),
        ("T {value:.2d}", "precision needs a float"),
        ("T {value:.20f}", "precision above"),
        ("T {a{b}}", "inside a field"),
        ("T {a:d}{b:d}", "need literal text between"),
        ("T {a:d} {a:d}", "appears twice"),
        ("T\t{value}", "not printable"),
        ("T {value:f}\r\n", "not printable"),
    ],
)
def test_ill_formed_templates_are_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        Template(text)


def test_empty_text_round_trips() -> None:
    """A device with no alarm answers "ALM " and that reads back as ""."""
    template = Template("ALM {value:s}")
    line = template.format({"value": ""})
    assert line == "ALM "
    assert template.parse(line) == {"value": ""}


def test_text_at_the_end_takes_the_rest_of_the_line() -> None:
    template = Template("STEP {value:s}")
    assert template.format({"value": "segment 3"}) == "STEP segment 3"
    assert template.parse("STEP segment 3") == {"value": "segment 3"}
    inner = Template("ID {name:s} {version:d}")
    with pytest.raises(OutOfRangeError):
        inner.format({"name": "two words", "version": 1})
