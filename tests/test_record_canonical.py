"""The canonical encoding: deterministic, key-order free, injective, exact for floats."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.record.canonical import (
    CanonicalError,
    encode,
    encode_text,
    parse_utc,
    sha256_hex,
    utc_text,
)
from flexctl.record.store import RecordError

FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.none() | st.booleans() | st.integers() | FINITE | st.text()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _strict(value: Any) -> Any:
    """``value`` with every scalar tagged by its type (and floats by their exact bits)."""
    if isinstance(value, dict):
        return ("dict", sorted((k, _strict(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [_strict(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


@given(JSON)
def test_encoding_is_deterministic(value: Any) -> None:
    assert encode(value) == encode(copy.deepcopy(value))


@given(st.dictionaries(st.text(), JSON, min_size=2, max_size=8), st.randoms())
def test_key_order_does_not_matter(value: dict[str, Any], rng: random.Random) -> None:
    items = list(value.items())
    rng.shuffle(items)
    assert encode(dict(items)) == encode(value)


@given(JSON)
def test_decoding_gives_back_the_very_same_value(value: Any) -> None:
    """A left inverse exists, so the encoding is injective: distinct values, distinct bytes."""
    assert _strict(json.loads(encode(value).decode("utf-8"))) == _strict(value)


@given(JSON, JSON)
def test_distinct_values_give_distinct_encodings(a: Any, b: Any) -> None:
    if _strict(a) != _strict(b):
        assert encode(a) != encode(b)


@given(FINITE)
def test_floats_round_trip_exactly(value: float) -> None:
    assert json.loads(encode(value)).hex() == value.hex()


@pytest.mark.parametrize(
    ("a", "b"),
    [(True, 1), (1, 1.0), (0.0, -0.0), ("1", 1), (None, "null"), ([1, 2], {"0": 1, "1": 2})],
)
def test_values_python_finds_equal_or_alike_still_encode_apart(a: object, b: object) -> None:
    assert encode(a) != encode(b)


def test_the_text_is_compact_sorted_utf8() -> None:
    value = {"b": [1, 2.5, None], "a": {"z": True, "é": "✓"}}
    assert encode(value) == '{"a":{"z":true,"é":"✓"},"b":[1,2.5,null]}'.encode()
    assert encode_text(value) == encode(value).decode("utf-8")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_wherever_they_are(bad: float) -> None:
    for value in (bad, [1, bad], {"a": {"b": bad}}):
        with pytest.raises(CanonicalError, match="finite"):
            encode(value)


def test_what_would_collide_or_change_is_refused() -> None:
    with pytest.raises(CanonicalError, match="key 1 is not a string"):
        encode({1: "a"})  # json would write "1" and collide with the string key
    with pytest.raises(CanonicalError, match="not JSON data"):
        encode({"a": {1, 2}})
    with pytest.raises(CanonicalError, match="not valid Unicode"):
        encode("\ud800")
    with pytest.raises(CanonicalError, match="no time zone"):
        encode(datetime(2025, 1, 1))
    assert issubclass(CanonicalError, RecordError)


def test_datetimes_are_utc_text_with_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2025, 1, 2, 5, 4, 5, tzinfo=plus_two)
    assert utc_text(moment) == "2025-01-02T03:04:05.000000+00:00"
    assert encode({"t": moment}) == b'{"t":"2025-01-02T03:04:05.000000+00:00"}'
    assert encode(moment) == encode(moment.astimezone(UTC))


@given(st.datetimes(timezones=st.timezones()))
def test_utc_text_round_trips(moment: datetime) -> None:
    back = parse_utc(utc_text(moment))
    # Against the UTC instant: Python never finds a time in a DST fold equal across zones.
    assert back == moment.astimezone(UTC)
    assert back.tzinfo is UTC


def test_parse_utc_refuses_a_naive_time() -> None:
    with pytest.raises(CanonicalError):
        parse_utc("2025-01-02T03:04:05")


@settings(max_examples=50)
@given(JSON)
def test_sha256_hex_is_the_digest_of_the_encoding(value: Any) -> None:
    digest = sha256_hex(value)
    assert digest == hashlib.sha256(encode(value)).hexdigest()
    assert len(digest) == 64
    assert digest == digest.lower()


def test_sha256_hex_known_value() -> None:
    # Fixed, so a change of the encoding (which would break every stored chain) is seen.
    assert (
        sha256_hex({"b": 1, "a": [True, None, 0.5]})
        == hashlib.sha256(b'{"a":[true,null,0.5],"b":1}').hexdigest()
    )
