"""Profiles and the YAML loader: positions in errors, generic signal semantics."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.errors import ConfigurationError, OutOfRangeError, ProtocolError
from flexctl.profile import load_profile, parse_profile
from flexctl.resources import shipped_dir, shipped_file
from flexctl.transports.registry import check_profile
from flexctl.yamlpos import PosDict, load_text

GOOD = """\
device: oven
transport: opcua
signals:
  temperature: {node: "ns=2;s=Oven.T", type: float, unit: degC}
  setpoint:
    node: "ns=2;s=Oven.SP"
    type: float64
    writable: true
    limits: [30, 39]
  state: {node: "ns=2;s=Oven.State", enum: [stopped, running, complete, aborted]}
commands:
  start: {method: "ns=2;s=Oven.Start", args: [rate]}
"""


def _profile(text: str, tmp_path: Path, name: str = "oven.opcua.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_profile_parses(tmp_path: Path) -> None:
    profile = load_profile(_profile(GOOD, tmp_path))
    assert profile.name == "oven.opcua"
    assert profile.device == "oven"
    sp = profile.signal("setpoint")
    assert sp.type == "float64"
    assert sp.writable
    assert sp.limits == (30.0, 39.0)
    assert sp.where.line == 6
    state = profile.signal("state")
    assert state.type == "uint16"
    assert state.decode(2) == "complete"
    assert state.encode("running") == 1
    assert profile.command("start").args == ("rate",)


def test_positions_are_one_based_lines_and_columns() -> None:
    data = load_text("a:\n  b: 1\n  c: [1, 2]\n", "x.yaml")
    assert isinstance(data, PosDict)
    inner = data["a"]
    assert str(inner.key_at("c")) == "x.yaml:3:3"
    assert str(inner.at("c")) == "x.yaml:3:6"
    assert str(inner["c"].at(1)) == "x.yaml:3:10"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("device: x\ntransport: opcua\nsignals:\n  t: {type: floot}\n", 4, "unknown type 'floot'"),
        ("device: x\ntransport: carrier-pigeon\n", 2, "unknown transport"),
        ("transport: opcua\n", 1, "missing key 'device'"),
        ("device: x\ntransport: opcua\nsignals:\n  t: {limits: [5, 1]}\n", 4, "limits"),
        ("device: x\ntransport: opcua\nsignals:\n  t: {writable: yes please}\n", 4, "writable"),
        ("device: x\ntransport: opcua\nsignals:\n  t: {enum: []}\n", 4, "enum"),
        ("device: x\ntransport: opcua\nsignals: [1, 2]\n", 3, "expected a mapping"),
        ("device: x\ndevice: y\ntransport: opcua\n", 2, "duplicate key"),
        ("device: x\ntransport: opcua\nsignals:\n  t: {type: [}\n", 4, "YAML syntax"),
        ("device: x\ntransport: opcua\ncommands:\n  go: {args: rate}\n", 4, "args"),
    ],
)
def test_bad_profiles_say_file_line_and_what(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = _profile(text, tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        load_profile(path)
    assert caught.value.where.file == str(path)
    assert caught.value.line == line
    assert fragment in str(caught.value)


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read file"):
        load_profile(tmp_path / "nope.yaml")


def test_encode_checks_type_and_range(tmp_path: Path) -> None:
    profile = load_profile(_profile(GOOD, tmp_path))
    sp = profile.signal("setpoint")
    assert sp.encode(37) == 37.0
    with pytest.raises(OutOfRangeError):
        sp.encode("hot")
    with pytest.raises(OutOfRangeError):
        sp.encode(float("nan"))
    with pytest.raises(OutOfRangeError, match="outside the limits"):
        sp.check_limits(45.0)
    sp.check_limits(37.0)
    state = profile.signal("state")
    with pytest.raises(OutOfRangeError):
        state.encode("exploded")
    with pytest.raises(ProtocolError):
        state.decode(9)


def test_every_shipped_profile_is_valid() -> None:
    paths = sorted(shipped_dir("profiles").glob("*.yaml"))
    assert paths, "no shipped profiles found"
    for path in paths:
        check_profile(load_profile(path))


def test_unknown_shipped_file_lists_what_ships() -> None:
    with pytest.raises(ConfigurationError, match="no shipped profile named 'nothing'"):
        shipped_file("profiles", "nothing")


# Any YAML text at all: the loader either returns data or a ConfigurationError.
yaml_ish = st.text(alphabet=st.sampled_from(list("ab:- {}[],'\"\n\t#&*!|>?%@`1.")), max_size=80)


@settings(max_examples=300, deadline=None)
@given(text=yaml_ish)
def test_loader_never_raises_anything_but_configuration_error(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except ConfigurationError as exc:
        assert exc.where.file == "fuzz.yaml"


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "enum", "limits", "writable", "unit", "args"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    signals=st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=3),
    commands=st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=2),
)
def test_profile_parser_never_raises_anything_but_configuration_error(
    signals: object, commands: object
) -> None:
    text = yaml.safe_dump(
        {"device": "d", "transport": "opcua", "signals": signals, "commands": commands}
    )
    try:
        parse_profile(load_text(text, "fuzz.yaml"), "fuzz")
    except ConfigurationError as exc:
        assert exc.where.file == "fuzz.yaml"


def test_a_number_as_a_key_is_refused_with_its_place() -> None:
    with pytest.raises(ConfigurationError, match=r"x\.yaml:2:3: expected a text key, got 0\.0"):
        load_text("signals:\n  0E0: {type: float}\n", "x.yaml")


def test_exponent_numbers_are_numbers_unless_quoted() -> None:
    data = load_text('a: 8.0e9\nb: "8.0e9"\nc: 1e6\nd: -2E-3\ne: e9\n', "x.yaml")
    assert data == {"a": 8.0e9, "b": "8.0e9", "c": 1e6, "d": -2e-3, "e": "e9"}
