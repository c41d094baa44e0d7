"""Alarm definitions: the rules, and YAML errors that name file, line and column."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexctl.errors import ConfigurationError, FlexctlError, Where
from flexctl.procedure.duration import format_duration
from flexctl.supervisor.alarm_defs import (
    AlarmDefinition,
    AlarmKind,
    AlarmPriority,
    InvalidAlarmDefinition,
    load_alarms,
    parse_alarm,
    parse_alarms,
)
from flexctl.yamlpos import load_text

GOOD = """\
alarms:
  - name: TAH-101
    signal: bioreactor.temperature
    kind: high
    limit: 37.5
    deadband: 0.2
    on_delay: 30 s
    off_delay: 1 min
    priority: high
    interlock: true
    message: Culture temperature high
  - name: DO_low
    signal: bioreactor.dissolved_oxygen
    kind: Low
    limit: 20
    on_delay: 5
    priority: CRITICAL
"""


def parse_text(text: str, filename: str = "alarms.yaml") -> tuple[AlarmDefinition, ...]:
    top = load_text(text, filename)
    return parse_alarms(top["alarms"], top.at("alarms"))


def definition(**overrides: Any) -> AlarmDefinition:
    fields: dict[str, Any] = {
        "name": "TAH-101",
        "signal": "bioreactor.temperature",
        "kind": AlarmKind.High,
        "limit": 37.5,
        "priority": AlarmPriority.High,
    }
    return AlarmDefinition(**(fields | overrides))


# --- the enums ---------------------------------------------------------------------------------


def test_kinds_and_priorities_carry_display_names_most_urgent_first() -> None:
    assert [k.value for k in AlarmKind] == ["High", "Low"]
    assert [p.value for p in AlarmPriority] == ["Critical", "High", "Medium", "Low"]
    assert [p.rank for p in AlarmPriority] == [0, 1, 2, 3]


# --- parsing good definitions ------------------------------------------------------------------


def test_a_good_file_parses_into_definitions() -> None:
    tah, dal = parse_text(GOOD)
    assert tah == AlarmDefinition(
        name="TAH-101",
        signal="bioreactor.temperature",
        kind=AlarmKind.High,
        limit=37.5,
        priority=AlarmPriority.High,
        deadband=0.2,
        on_delay=30.0,
        off_delay=60.0,
        interlock=True,
        message="Culture temperature high",
    )
    assert (tah.device, tah.signal_name, tah.text) == (
        "bioreactor",
        "temperature",
        "Culture temperature high",
    )
    assert dal.kind is AlarmKind.Low
    assert dal.priority is AlarmPriority.Critical
    assert (dal.limit, dal.deadband, dal.on_delay, dal.off_delay) == (20, 0.0, 5, 0.0)
    assert dal.interlock is False
    assert dal.text == "bioreactor.dissolved_oxygen < 20"


def test_load_alarms_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "alarms.yaml"
    path.write_text("description: line 1 alarms\n" + GOOD, encoding="utf-8")
    assert [d.name for d in load_alarms(path)] == ["TAH-101", "DO_low"]


def test_a_plain_dict_parses_too() -> None:
    raw = {
        "name": "PAH-3",
        "signal": "cell_processor.pressure",
        "kind": "high",
        "limit": 2,
        "priority": "medium",
        "on_delay": "2 min",
    }
    parsed = parse_alarm(raw)
    assert parsed.on_delay == 120.0
    assert parsed.priority is AlarmPriority.Medium
    with pytest.raises(ConfigurationError) as caught:
        parse_alarm(raw | {"limit": "two"}, Where("db.yaml", 4))
    assert str(caught.value) == "db.yaml:4: alarm PAH-3: limit must be a finite number, got 'two'"


def test_an_empty_list_is_no_alarms() -> None:
    assert parse_text("alarms: []\n") == ()


# --- parser errors name the place --------------------------------------------------------------

HEAD = """\
alarms:
  - name: TAH-101
    signal: bioreactor.temperature
    kind: high
    limit: 37.5
    priority: high
"""


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ("    deadband: -1\n", "7:15", "alarm TAH-101: deadband must be a finite number >= 0"),
        ("    on_delay: 2 m\n", "7:15", "alarm TAH-101: on_delay: 'm' is ambiguous"),
        ("    off_delay: -3\n", "7:16", "alarm TAH-101: off_delay must be >= 0 s"),
        (
            "    on_delay: 30\n    off_delay: ''\n",
            "8:16",
            "alarm TAH-101: off_delay: empty duration",
        ),
        ("    interlock: maybe\n", "7:16", "alarm TAH-101: interlock must be true or false"),
        ("    message: [a, b]\n", "7:14", "alarm TAH-101: message must be text"),
        ("    colour: red\n", "7:5", "alarm TAH-101: unknown key 'colour' (expected one of"),
        (
            "  - name: TAH-101\n    signal: b.t\n    kind: low\n    limit: 1\n    priority: low\n",
            "7:11",
            "alarm TAH-101: defined twice (first at alarms.yaml:2:11)",
        ),
    ],
)
def test_a_bad_field_is_reported_where_it_is(extra: str, where: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_text(HEAD + extra)
    assert isinstance(caught.value, FlexctlError)
    assert str(caught.value).startswith(f"alarms.yaml:{where}: {message}")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name", "1st", "alarm: name '1st': expected a letter"),
        ("name", "TAH 101", "name 'TAH 101': expected a letter"),
        ("signal", "temperature", "signal 'temperature': expected device.signal"),
        ("signal", "a.b.c", "signal 'a.b.c': expected device.signal"),
        ("kind", "sideways", "kind 'sideways': expected high, low"),
        ("kind", "3", "kind 3: expected high, low"),
        ("priority", "urgent", "priority 'urgent': expected critical, high, medium, low"),
        ("limit", ".nan", "limit must be a finite number, got nan"),
        ("limit", "-.inf", "limit must be a finite number, got -inf"),
        ("limit", "yes", "limit must be a finite number, got True"),
        ("limit", "'37.5'", "limit must be a finite number, got '37.5'"),
    ],
)
def test_a_bad_required_field_is_reported_on_its_line(key: str, value: str, message: str) -> None:
    lines = HEAD.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip(" -").startswith(f"{key}:"))
    prefix = lines[row].split(":")[0]
    lines[row] = f"{prefix}: {value}"
    with pytest.raises(ConfigurationError) as caught:
        parse_text("\n".join(lines) + "\n")
    error = caught.value
    assert error.file == "alarms.yaml"
    assert error.line == row + 1
    assert message in str(error)


@pytest.mark.parametrize("key", ["name", "signal", "kind", "limit", "priority"])
def test_a_missing_required_key_names_the_alarm_mapping(key: str) -> None:
    text = "".join(
        line + "\n" for line in HEAD.splitlines() if not line.strip(" -").startswith(key)
    )
    if key == "name":
        text = text.replace("alarms:\n", "alarms:\n  -\n")
    with pytest.raises(ConfigurationError, match=f"missing key '{key}'") as caught:
        parse_text(text)
    assert caught.value.line in (2, 3)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("alarms: {TAH: 1}\n", "1:9", "alarms: expected a list, got a mapping"),
        ("alarms:\n  - just text\n", "2:5", "alarm: expected a mapping, got str 'just text'"),
    ],
)
def test_wrong_shapes_are_reported(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_text(text)
    assert str(caught.value) == f"alarms.yaml:{where}: {message}"


def test_load_alarms_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "line1.alarms.yaml"
    path.write_text(HEAD + "    deadband: -0.5\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_alarms(path)
    assert str(caught.value).startswith(f"{path}:7:15: alarm TAH-101: deadband")
    path.write_text("alarm:\n  - name: x\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r":1:1: alarm file: unknown key 'alarm'"):
        load_alarms(path)
    path.write_text("description: nothing\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="missing key 'alarms'"):
        load_alarms(path)
    with pytest.raises(ConfigurationError, match="cannot read file"):
        load_alarms(tmp_path / "absent.yaml")


# --- the dataclass's own rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": 7}, "name"),
        ({"signal": "bioreactor."}, "signal"),
        ({"signal": ".temperature"}, "signal"),
        ({"signal": "bio-reactor.t"}, "signal"),
        ({"kind": "middle"}, "kind"),
        ({"priority": 1}, "priority"),
        ({"limit": math.inf}, "limit"),
        ({"limit": True}, "limit"),
        ({"deadband": -0.1}, "deadband"),
        ({"deadband": math.nan}, "deadband"),
        ({"deadband": math.inf}, "deadband"),
        ({"on_delay": -1}, "on_delay"),
        ({"on_delay": math.nan}, "on_delay"),
        ({"off_delay": math.inf}, "off_delay"),
        ({"off_delay": "1 min"}, "off_delay"),
        ({"interlock": 1}, "interlock"),
        ({"message": None}, "message"),
    ],
)
def test_the_dataclass_refuses_what_breaks_a_rule(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidAlarmDefinition) as caught:
        definition(**overrides)
    assert caught.value.field == field
    assert isinstance(caught.value, FlexctlError)
    assert isinstance(caught.value, ValueError)


def test_display_names_in_any_case_are_read_as_the_enums() -> None:
    parsed = definition(kind="LOW", priority=" critical ")
    assert parsed.kind is AlarmKind.Low
    assert parsed.priority is AlarmPriority.Critical


def test_a_limit_is_past_beyond_it_and_back_past_the_deadband() -> None:
    high = definition(limit=37.5, deadband=0.5)
    assert [high.past(v) for v in (37.4, 37.5, 37.6)] == [False, False, True]
    assert [high.back(v) for v in (37.6, 37.5, 37.01, 37.0, 36.0)] == [
        False,
        False,
        False,
        True,
        True,
    ]
    low = definition(kind="Low", limit=20, deadband=2)
    assert [low.past(v) for v in (19.9, 20, 20.1)] == [True, False, False]
    assert [low.back(v) for v in (19.0, 20, 21.9, 22, 25)] == [False, False, False, True, True]


# --- hypothesis over values --------------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**9), 10**9),
)


def yaml_number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


def is_finite(value: float) -> bool:
    return math.isfinite(value)


@given(limit=NUMBERS, deadband=NUMBERS, on_delay=NUMBERS, off_delay=NUMBERS)
def test_numbers_are_accepted_exactly_when_the_rules_hold(
    limit: float, deadband: float, on_delay: float, off_delay: float
) -> None:
    text = (
        HEAD.replace("limit: 37.5", f"limit: {yaml_number(limit)}")
        + f"    deadband: {yaml_number(deadband)}\n"
        + f"    on_delay: {yaml_number(on_delay)}\n"
        + f"    off_delay: {yaml_number(off_delay)}\n"
    )
    # Rules in the order they are checked, each with the line its value is on.
    checks = [
        (is_finite(limit), 5),
        (is_finite(deadband) and deadband >= 0, 7),
        (is_finite(on_delay) and 0 <= on_delay <= 100 * 365 * 86_400, 8),
        (is_finite(off_delay) and 0 <= off_delay <= 100 * 365 * 86_400, 9),
    ]
    failing = [line for ok, line in checks if not ok]
    if not failing:
        (parsed,) = parse_text(text)
        assert (parsed.limit, parsed.deadband, parsed.on_delay, parsed.off_delay) == (
            limit,
            deadband,
            on_delay,
            off_delay,
        )
        assert not (parsed.past(limit) or parsed.past(limit - deadband))
        assert parsed.back(limit - deadband)
    else:
        with pytest.raises(ConfigurationError) as caught:
            parse_text(text)
        assert caught.value.file == "alarms.yaml"
        assert caught.value.line == failing[0]


@given(seconds=st.integers(0, 30 * 86_400_000).map(lambda ms: ms / 1000))
def test_delays_written_as_text_read_back_as_seconds(seconds: float) -> None:
    text = HEAD + f"    on_delay: {format_duration(seconds)}\n"
    (parsed,) = parse_text(text)
    assert parsed.on_delay == pytest.approx(seconds, abs=1e-9)


@given(
    limit=st.floats(-1e6, 1e6),
    deadband=st.floats(0, 1e3),
    value=st.floats(-2e6, 2e6),
    kind=st.sampled_from(list(AlarmKind)),
)
def test_past_and_back_never_both_hold(
    limit: float, deadband: float, value: float, kind: AlarmKind
) -> None:
    alarm = definition(kind=kind, limit=limit, deadband=deadband)
    assert not (alarm.past(value) and alarm.back(value))
    if deadband == 0:
        # Without a deadband every value is either past the limit or back.
        assert alarm.past(value) != alarm.back(value)
