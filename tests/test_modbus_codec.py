"""The Modbus register codec: round trips for every type and order, known vectors, refusals."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexctl.errors import OutOfRangeError
from flexctl.transports.modbus_codec import WIDTHS, Codec, decode, encode

ORDERS = ("big", "little")
INT_TYPES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
orders = st.sampled_from(ORDERS)


@st.composite
def int_cases(draw: st.DrawFn) -> tuple[str, int]:
    type_name = draw(st.sampled_from(sorted(INT_TYPES)))
    low, high = INT_TYPES[type_name]
    return type_name, draw(st.integers(min_value=low, max_value=high))


def _registers_ok(registers: list[int], width: int) -> None:
    assert len(registers) == width
    assert all(isinstance(r, int) and 0 <= r <= 0xFFFF for r in registers)


@given(case=int_cases(), word_order=orders, byte_order=orders)
def test_integers_round_trip_exactly(
    case: tuple[str, int], word_order: str, byte_order: str
) -> None:
    type_name, value = case
    codec = Codec(type_name, word_order, byte_order)
    registers = codec.encode(value)
    _registers_ok(registers, WIDTHS[type_name])
    back = codec.decode(registers)
    assert back == value
    assert type(back) is int


@given(value=st.floats(width=32, allow_nan=False), word_order=orders, byte_order=orders)
def test_float32_round_trips_exactly(value: float, word_order: str, byte_order: str) -> None:
    codec = Codec("float32", word_order, byte_order)
    registers = codec.encode(value)
    _registers_ok(registers, 2)
    back = codec.decode(registers)
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)  # -0.0 stays negative


@given(value=st.floats(allow_nan=False), word_order=orders, byte_order=orders)
def test_float64_round_trips_exactly(value: float, word_order: str, byte_order: str) -> None:
    codec = Codec("float64", word_order, byte_order)
    registers = codec.encode(value)
    _registers_ok(registers, 4)
    assert codec.decode(registers) == value


@pytest.mark.parametrize("type_name", ["float32", "float64"])
def test_nan_survives(type_name: str) -> None:
    codec = Codec(type_name, "little", "little")
    back = codec.decode(codec.encode(math.nan))
    assert isinstance(back, float)
    assert math.isnan(back)


scales = st.sampled_from([0.1, 0.01, 0.5, 2.5, -0.25, 10.0, 1e-3])
offsets = st.sampled_from([0.0, -40.0, 273.15, 12.5, -0.5])


@given(
    case=int_cases(),
    scale=scales,
    offset=offsets,
    word_order=orders,
    byte_order=orders,
)
def test_scaled_integers_round_trip_to_the_same_raw_value(
    case: tuple[str, int], scale: float, offset: float, word_order: str, byte_order: str
) -> None:
    type_name, raw = case
    if abs(raw) > 2**50:  # engineering floats carry 53 bits: keep the raw value exact
        raw = raw % 2**50 if type_name.startswith("u") else int(math.copysign(raw % 2**50, raw))
    codec = Codec(type_name, word_order, byte_order, scale, offset)
    plain = Codec(type_name, word_order, byte_order)
    value = raw * scale + offset
    registers = codec.encode(value)
    assert registers == plain.encode(raw)  # rounding finds the raw value again
    back = codec.decode(registers)
    assert isinstance(back, float)
    assert back == pytest.approx(value, rel=1e-12, abs=1e-9)


@given(case=int_cases(), scale=st.integers(1, 1000), offset=st.integers(-1000, 1000))
def test_integer_scaling_stays_integer(case: tuple[str, int], scale: int, offset: int) -> None:
    type_name, raw = case
    codec = Codec(type_name, "little", "big", scale, offset)
    value = raw * scale + offset
    back = codec.decode(codec.encode(value))
    assert back == value
    assert type(back) is int


@given(
    value=st.floats(width=32, allow_nan=False, allow_infinity=False).filter(
        lambda v: abs(v) < 1e30
    ),
    scale=scales,
    offset=offsets,
    type_name=st.sampled_from(["float32", "float64"]),
    word_order=orders,
    byte_order=orders,
)
def test_scaled_floats_round_trip(  # noqa: PLR0917 (hypothesis passes each strategy by name)
    value: float, scale: float, offset: float, type_name: str, word_order: str, byte_order: str
) -> None:
    codec = Codec(type_name, word_order, byte_order, scale, offset)
    back = codec.decode(codec.encode(value))
    tolerance = 1e-6 if type_name == "float32" else 1e-12
    assert back == pytest.approx(value, rel=tolerance, abs=tolerance * (abs(offset) + 1))


@given(value=st.booleans(), word_order=orders, byte_order=orders)
def test_bool_in_a_register(value: bool, word_order: str, byte_order: str) -> None:
    codec = Codec("bool", word_order, byte_order)
    assert codec.encode(value) == [int(value)]
    assert codec.decode(codec.encode(value)) is value


@st.composite
def string_cases(draw: st.DrawFn) -> tuple[int, str]:
    length = draw(st.integers(min_value=1, max_value=16))
    # a NUL ends a string in registers: round trips hold for text without one
    # (no surrogates either: they are not text UTF-8 can carry)
    characters = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
    text = draw(st.text(characters, max_size=2 * length))
    while len(text.encode("utf-8")) > 2 * length:
        text = text[:-1]
    return length, text


@given(case=string_cases(), word_order=orders, byte_order=orders)
def test_strings_round_trip(case: tuple[int, str], word_order: str, byte_order: str) -> None:
    length, text = case
    codec = Codec("string", word_order, byte_order, length=length)
    registers = codec.encode(text)
    _registers_ok(registers, length)
    assert codec.decode(registers) == text


@given(case=string_cases(), tail=st.binary(max_size=32), word_order=orders, byte_order=orders)
def test_a_string_ends_at_its_first_nul(
    case: tuple[int, str], tail: bytes, word_order: str, byte_order: str
) -> None:
    """Whatever a device left after the terminating NUL (even bytes that are not
    UTF-8) is not part of the string: a C string."""
    length, text = case
    data = text.encode("utf-8")
    if len(data) == 2 * length:
        return  # no room for a NUL: covered by the round trip
    data = (data + b"\x00" + tail)[: 2 * length].ljust(2 * length, b"\x00")
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if word_order == "little":
        words.reverse()
    assert Codec("string", word_order, byte_order, length=length).decode(words) == text


def test_string_nul_layouts() -> None:
    assert decode([0x6162, 0x0063, 0x6400], "string", length=3) == "ab"  # not "ab\x00cd"
    assert decode([0x6100, 0xFFFE], "string", length=2) == "a"  # garbage after the NUL
    assert decode([0x0061], "string", length=1) == ""
    for text in ("a\x00b", "\x00", "ab\x00"):
        with pytest.raises(OutOfRangeError, match="NUL"):
            encode(text, "string", length=4)


@given(
    type_name=st.sampled_from(["int16", "uint16", "int32", "uint32", "float32", "float64"]),
    word_order=orders,
    byte_order=orders,
    data=st.data(),
)
def test_many_values_at_once_match_one_by_one(
    type_name: str, word_order: str, byte_order: str, data: st.DataObject
) -> None:
    if type_name in INT_TYPES:
        low, high = INT_TYPES[type_name]
        element: st.SearchStrategy[int | float] = st.integers(min_value=low, max_value=high)
    else:
        element = st.floats(width=32, allow_nan=False)
    values = data.draw(st.lists(element, min_size=1, max_size=30))
    codec = Codec(type_name, word_order, byte_order)
    one_by_one = [word for value in values for word in codec.encode(value)]
    assert codec.encode_many(values) == one_by_one
    assert codec.decode_many(one_by_one, len(values)) == values


def test_many_values_refuse_like_one() -> None:
    codec = Codec("int16")
    with pytest.raises(OutOfRangeError, match="40000"):
        codec.encode_many([1, 2, 40000])
    with pytest.raises(OutOfRangeError):
        codec.encode_many([1.0, "x"])
    with pytest.raises(OutOfRangeError):
        codec.decode_many([1, 2, 3], 2)
    scaled = Codec("int16", scale=0.5)  # not a bulk codec: one by one, same answers
    assert scaled.decode_many(scaled.encode_many([1.5, 2.0]), 2) == [1.5, 2.0]


# -- known vectors: these pin what "word order" and "byte order" mean --------------


@pytest.mark.parametrize(
    ("word_order", "byte_order", "registers"),
    [
        ("big", "big", [0x4216, 0x0000]),  # 37.5 = 0x42160000, ABCD
        ("little", "big", [0x0000, 0x4216]),  # CDAB
        ("big", "little", [0x1642, 0x0000]),  # BADC
        ("little", "little", [0x0000, 0x1642]),  # DCBA
    ],
)
def test_float32_orders_on_a_known_value(
    word_order: str, byte_order: str, registers: list[int]
) -> None:
    assert encode(37.5, "float32", word_order=word_order, byte_order=byte_order) == registers
    assert decode(registers, "float32", word_order=word_order, byte_order=byte_order) == 37.5


def test_known_integer_and_string_layouts() -> None:
    assert encode(0x01020304, "uint32") == [0x0102, 0x0304]
    assert encode(0x01020304, "uint32", word_order="little", byte_order="little") == [
        0x0403,
        0x0201,
    ]
    assert encode(-2, "int16") == [0xFFFE]
    assert encode(0x0102030405060708, "uint64", word_order="little") == [
        0x0708,
        0x0506,
        0x0304,
        0x0102,
    ]
    assert encode("bag-0042", "string", length=5) == [0x6261, 0x672D, 0x3030, 0x3432, 0x0000]
    assert encode("ab", "string", length=1) == [0x6162]
    assert encode("ab", "string", length=1, byte_order="little") == [0x6261]
    assert encode(37.5, "int16", scale=0.1) == [375]
    assert decode([375], "int16", scale=0.1, offset=-10) == pytest.approx(27.5)
    assert struct.unpack(">d", struct.pack(">4H", *encode(1.5, "float64")))[0] == 1.5


# -- refusals ----------------------------------------------------------------------


@given(case=int_cases(), beyond=st.integers(min_value=1, max_value=2**70))
def test_integers_out_of_range_are_refused(case: tuple[str, int], beyond: int) -> None:
    type_name, _ = case
    low, high = INT_TYPES[type_name]
    codec = Codec(type_name)
    with pytest.raises(OutOfRangeError):
        codec.encode(high + beyond)
    with pytest.raises(OutOfRangeError):
        codec.encode(low - beyond)


@pytest.mark.parametrize(
    ("type_name", "value", "kwargs"),
    [
        ("float32", 1e39, {}),
        ("float32", 1e300, {"scale": 1e-300}),
        ("int16", 3276.8, {"scale": 0.1}),  # raw 32768
        ("uint16", -0.6, {}),  # rounds to -1
        ("int32", math.inf, {}),
        ("int32", math.nan, {}),
        ("int16", True, {}),
        ("float64", "12", {}),
        ("bool", 1, {}),
        ("string", 42, {"length": 2}),
        ("string", "12345", {"length": 2}),
        ("string", "é" * 3, {"length": 2}),  # six UTF-8 bytes in four
    ],
)
def test_values_that_do_not_fit_are_refused(
    type_name: str, value: object, kwargs: dict[str, float]
) -> None:
    codec = Codec(type_name, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(OutOfRangeError):
        codec.encode(value)  # type: ignore[arg-type]


def test_integer_values_are_rounded_to_the_raw_type() -> None:
    assert encode(2.5, "int16") == [2]  # round half to even
    assert encode(37.46, "int16", scale=0.1) == [375]
    assert encode(-1.4, "int16") == [0xFFFF]


def test_decode_refuses_wrong_lengths_and_bad_text() -> None:
    with pytest.raises(OutOfRangeError):
        decode([1], "float32")
    with pytest.raises(OutOfRangeError):
        decode([0xFFFE], "string", length=1)  # not UTF-8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "float16"},
        {"type": "float32", "word_order": "middle"},
        {"type": "string"},
        {"type": "int16", "length": 2},
        {"type": "int16", "scale": 0},
        {"type": "bool", "scale": 2},
        {"type": "float32", "offset": math.inf},
    ],
)
def test_bad_codecs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Codec(**kwargs)  # type: ignore[arg-type]
