"""The procedure loader: YAML to the model, with the place of everything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flexctl.errors import ConfigurationError, Where
from flexctl.procedure.loader import _Reader, load_procedure, parse_procedure, read_procedure
from flexctl.procedure.model import (
    AlarmInterlock,
    BandInterlock,
    CommandStep,
    EntryType,
    Expr,
    Meaning,
    OnTimeout,
    ParameterType,
    Procedure,
    ProcedureError,
    PromptStep,
    RecordStep,
    Role,
    SetStep,
    TextSpan,
    WaitStep,
    WaitUntilStep,
)

DATA = Path(__file__).parent / "data" / "procedures"
GOOD = DATA / "good.yaml"


def test_the_good_procedure_loads_into_the_model() -> None:
    procedure = load_procedure(GOOD)
    assert (procedure.name, procedure.version, procedure.line) == ("thaw-and-seed", "1.0", "sim")
    assert procedure.file == str(GOOD)
    assert [u.name for u in procedure.unit_procedures] == ["thaw", "expansion"]
    assert procedure.unit_procedures[0].description == "Thaw the bag on the dry plate"
    kinds = [type(s).__name__ for s in procedure.steps()]
    assert kinds == [
        "CommandStep",
        "CommandStep",
        "WaitUntilStep",
        "PromptStep",
        "WaitStep",
        "RecordStep",
        "SetStep",
        "CommandStep",
        "CommandStep",
        "WaitUntilStep",
        "PromptStep",
    ]
    assert all(s.unit_procedure == "thaw" for s in procedure.unit_procedures[0].steps)
    assert procedure.step("settle").id_where.line == 33


def test_parameters_have_types_defaults_and_limits() -> None:
    params = load_procedure(GOOD).parameters
    volume = params["apheresis_volume"]
    assert volume.type is ParameterType.FLOAT
    assert (volume.unit, volume.default, volume.limits) == ("mL", 100.0, (20.0, 250.0))
    assert volume.description == "bag volume"
    # 8.0e9 is text to YAML 1.1 (PyYAML); unquoted, the language reads the number it means.
    assert params["target_dose"].default == 8.0e9
    assert params["target_dose"].limits == (1.0e8, 2.0e10)
    limit = params["expansion_limit"]
    assert limit.type is ParameterType.DURATION
    assert (limit.default, limit.limits) == (14 * 86400, (7 * 86400, 14 * 86400))
    assert params["wash_cycles"].default == 2
    assert params["irradiated"].default is False
    lot = params["vector_lot"]
    assert (lot.type, lot.pattern, lot.default, lot.required) == (
        ParameterType.TEXT,
        "^[A-Z0-9-]+$",
        None,
        True,
    )
    assert lot.where == Where(str(GOOD), 14, 3)


def test_steps_carry_what_they_say() -> None:
    procedure = load_procedure(GOOD)
    load = procedure.step("load_bag")
    assert isinstance(load, CommandStep)
    assert (load.call.target.device, load.call.target.member) == ("thaw", "twin_load_bag")
    volume = load.call.args["volume_ml"].value
    assert isinstance(volume, Expr)
    assert volume.text == "apheresis_volume"
    assert volume.names == frozenset({"apheresis_volume"})
    assert load.call.args["start_temperature_c"].value == -150
    start = procedure.step("start_thaw")
    assert isinstance(start, CommandStep)
    assert start.call.args["program"].value == "standard"

    thawed = procedure.step("thawed")
    assert isinstance(thawed, WaitUntilStep)
    assert thawed.condition.text == "thaw.thaw_complete"
    assert (thawed.timeout.seconds, thawed.poll.seconds) == (1800, 30)
    assert thawed.on_timeout is OnTimeout.HOLD
    dose = procedure.step("dose_ok")
    assert isinstance(dose, WaitUntilStep)
    assert dose.on_timeout is OnTimeout.CONTINUE

    bag = procedure.step("bag_id")
    assert isinstance(bag, PromptStep)
    assert (bag.role, bag.meaning) == (Role.OPERATOR, Meaning.PERFORMED)
    assert bag.entry is not None
    assert (bag.entry.type, bag.entry.pattern) == (EntryType.TEXT, "^[A-Z0-9-]{6,}$")
    confirm = procedure.step("confirm")
    assert isinstance(confirm, PromptStep)
    assert (confirm.entry, confirm.role, confirm.meaning) == (
        None,
        Role.SUPERVISOR,
        Meaning.VERIFIED,
    )

    settle = procedure.step("settle")
    assert isinstance(settle, WaitStep)
    assert settle.duration.seconds == 300
    curve = procedure.step("thaw_curve")
    assert isinstance(curve, RecordStep)
    assert (curve.expression.text, curve.unit) == ("thaw.sample_temperature", "degC")
    warm = procedure.step("warm")
    assert isinstance(warm, SetStep)
    assert str(warm.target) == "bioreactor.temperature_sp"
    assert isinstance(warm.value.value, Expr)

    (rule,) = procedure.unit_procedures[1].rules
    assert (rule.id, rule.every.seconds, rule.unit_procedure) == ("perfusion", 43200, "expansion")
    assert rule.when is not None
    assert rule.when.text == "bioreactor.sample_vcd > 0"
    assert str(rule.call.target) == "bioreactor.perfuse"


def _load(text: str) -> tuple[object, tuple[ConfigurationError, ...]]:
    loaded = parse_procedure(text, "p.yaml")
    return loaded.procedure, loaded.problems


HEAD = 'procedure: p\nversion: "1"\nunit_procedures:\n  - name: u\n    steps:\n'


def test_values_are_literals_unless_they_start_with_equals() -> None:
    procedure, problems = _load(
        HEAD + "      - id: s\n        command: d.m\n        args:\n"
        "          a: 1\n          b: 2.5\n          c: true\n          d: text\n"
        "          e: '=a + 1'\n          f: '8.0e9'\n          g: 8.0e9\n          h: 1e6\n"
    )
    assert problems == ()
    step = procedure.step("s")  # type: ignore[attr-defined]
    values = {name: arg.value for name, arg in step.call.args.items()}
    assert values["a"] == 1 and values["b"] == 2.5 and values["c"] is True
    assert values["d"] == "text"
    assert isinstance(values["e"], Expr) and values["e"].text == "a + 1"
    assert values["f"] == "8.0e9"  # quoted: text
    assert values["g"] == 8.0e9 and values["h"] == 1e6


def test_a_default_poll_and_on_timeout() -> None:
    procedure, problems = _load(HEAD + "      - {id: w, wait_until: 'x > 1', timeout: 1 h}\n")
    step = procedure.step("w")  # type: ignore[attr-defined]
    assert isinstance(step, WaitUntilStep)
    assert (step.poll.seconds, step.poll.text, step.on_timeout) == (60, "1 min", OnTimeout.HOLD)
    assert problems == ()


@pytest.mark.parametrize(
    ("scalar", "text", "columns"),
    [
        ("abc d", "abc d", (11, 12, 13, 14, 15)),
        ('"abc"', "abc", (12, 13, 14)),
        ("'abc'", "abc", (12, 13, 14)),
        ("'it''s'", "it's", (12, 13, 14, 16)),
        ('"a\\"b"', 'a"b', (12, 13, 15)),
        ('"\\x41b"', "Ab", (12, 16)),
    ],
)
def test_text_spans_point_into_plain_and_quoted_scalars(
    scalar: str, text: str, columns: tuple[int, ...]
) -> None:
    source = HEAD + f"      - id: s\n        record: {scalar}\n"
    span = _Reader("p.yaml", source).span(Where("p.yaml", 7, 17), text)
    # the value starts at column 17 of line 7: the columns above are relative to column 11
    assert span.columns == tuple(c + 6 for c in columns)
    assert span.at(0).column == columns[0] + 6
    assert span.at(len(text)).column == span.end


def test_a_span_that_cannot_be_mapped_points_at_the_value() -> None:
    where = Where("p.yaml", 3, 5)
    assert TextSpan(where).at(7) == where
    assert TextSpan(where, (5, 6), 7).at(-1) == where
    assert TextSpan(where, (5, 6), 7).skip(1).at(0).column == 6


def test_a_missing_file_and_bad_yaml_are_problems_not_exceptions(tmp_path: Path) -> None:
    loaded = read_procedure(tmp_path / "nope.yaml")
    assert loaded.procedure is None
    (problem,) = loaded.problems
    assert problem.where == Where(str(tmp_path / "nope.yaml"))
    assert "cannot read file" in problem.message

    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "      - {id: s, wait: 5 min\n")
    (problem,) = read_procedure(bad).problems
    assert problem.where.file == str(bad)
    assert problem.where.line >= 6
    assert "YAML syntax" in problem.message

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    (problem,) = read_procedure(binary).problems
    assert "not UTF-8" in problem.message


def test_load_procedure_raises_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        HEAD
        + "      - {id: a, wait: 5}\n      - {id: b, wiat: 5 min}\n      - {id: c, record: '('}\n"
    )
    with pytest.raises(ProcedureError) as caught:
        load_procedure(path)
    problems = caught.value.problems
    assert [p.where.line for p in problems] == [6, 7, 7, 8]
    assert "no step kind" in problems[1].message
    assert "unknown key 'wiat', did you mean 'wait'?" in problems[2].message
    assert "(and 3 more problems)" in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


def test_a_malformed_step_is_remembered_as_skipped() -> None:
    loaded = parse_procedure(
        HEAD + "      - {id: a, wait: 5}\n      - {id: b, wait: 1 s}\n", "p.yaml"
    )
    assert loaded.procedure is not None
    assert [s.id for s in loaded.procedure.steps()] == ["b"]
    assert set(loaded.skipped) == {"a"}


# -- interlocks and suggestions ---------------------------------------------------------------

INTERLOCKS = (
    'procedure: p\nversion: "1"\n'
    "interlocks:\n"
    "  - {name: culture_temperature, band: bioreactor.temperature, low: 35.5, high: 38.5,"
    " delay: 30 min}\n"  # line 4
    "  - {name: do_floor, band: bioreactor.do, low: 10, delay: 1 h}\n"  # line 5
    "  - {name: bioreactor_alarms, alarm: bioreactor, codes: [DO_CRITICAL, OVERFILL]}\n"
    "  - {name: freezer_door, alarm: freezer}\n"  # line 7
    "unit_procedures:\n  - name: u\n"
    "    interlocks:\n"
    "      - name: ph\n        band: bioreactor.ph\n        high: 7.6\n"  # lines 11-13
    "    steps:\n      - {id: w, wait: 1 min}\n"
)


def test_interlocks_load_into_the_model_with_their_places() -> None:
    procedure, problems = _load(INTERLOCKS)
    assert problems == ()
    assert isinstance(procedure, Procedure)
    temperature, do_floor, alarms, door = procedure.interlocks
    assert isinstance(temperature, BandInterlock)
    assert (temperature.name, str(temperature.target)) == (
        "culture_temperature",
        "bioreactor.temperature",
    )
    assert (temperature.low, temperature.high) == (35.5, 38.5)
    assert temperature.delay is not None
    assert (temperature.delay.text, temperature.delay.seconds) == ("30 min", 1800)
    assert temperature.where == Where("p.yaml", 4, 5)
    assert temperature.name_where == Where("p.yaml", 4, 12)
    assert temperature.target.device_where == Where("p.yaml", 4, 39)
    assert temperature.target.member_where == Where("p.yaml", 4, 50)
    assert isinstance(do_floor, BandInterlock)
    assert (do_floor.low, do_floor.high, do_floor.delay is not None) == (10.0, None, True)
    assert isinstance(do_floor.low, float)  # an int in the file is a float in the model
    assert isinstance(alarms, AlarmInterlock)
    assert (alarms.device, alarms.codes) == ("bioreactor", ("DO_CRITICAL", "OVERFILL"))
    assert alarms.device_where == Where("p.yaml", 6, 38)
    assert isinstance(door, AlarmInterlock)
    assert (door.name, door.device, door.codes) == ("freezer_door", "freezer", ())
    (ph,) = procedure.unit_procedures[0].interlocks
    assert isinstance(ph, BandInterlock)
    assert (ph.low, ph.high, ph.delay) == (None, 7.6, None)  # no delay: trip at once
    assert (ph.where, ph.name_where) == (Where("p.yaml", 11, 9), Where("p.yaml", 11, 15))
    assert ph.target.member_where == Where("p.yaml", 12, 26)


def test_no_interlocks_and_an_empty_list_are_the_same() -> None:
    procedure, problems = _load(HEAD + "      - {id: w, wait: 1 min}\n")
    assert problems == ()
    assert isinstance(procedure, Procedure)
    assert procedure.interlocks == ()
    assert procedure.unit_procedures[0].interlocks == ()
    procedure, problems = _load(
        'procedure: p\nversion: "1"\ninterlocks: []\nunit_procedures:\n  - name: u\n'
        "    interlocks:\n    steps:\n      - {id: w, wait: 1 min}\n"
    )
    assert problems == ()
    assert isinstance(procedure, Procedure)
    assert (procedure.interlocks, procedure.unit_procedures[0].interlocks) == ((), ())


def test_a_suggestion_is_a_value_like_a_command_argument() -> None:
    procedure, problems = _load(
        HEAD + "      - {id: a, prompt: Count, role: qa, entry: {type: int, suggest: 3}}\n"
        "      - id: b\n        prompt: Add it\n        role: operator\n"
        "        entry: {type: float, limits: [0.1, 200], suggest: '=a.value * 2'}\n"  # line 10
        "      - {id: c, prompt: Scan, role: qa, entry: {suggest: LOT-1}}\n"
        "      - {id: d, prompt: Scan, role: qa, entry: {type: text}}\n"
    )
    assert problems == ()
    assert isinstance(procedure, Procedure)
    suggestions = {}
    for step in procedure.steps():
        assert isinstance(step, PromptStep) and step.entry is not None
        suggestions[step.id] = step.entry.suggest
    a, b, c, d = (suggestions[k] for k in "abcd")
    assert a is not None and (a.name, a.value) == ("suggest", 3)
    assert b is not None and isinstance(b.value, Expr)
    assert b.value.text == "a.value * 2"
    assert b.value.names == frozenset({"a.value"})
    assert b.where == Where("p.yaml", 10, 59)
    assert b.value.where == Where("p.yaml", 10, 61)  # after the quote and the =
    assert b.key_where == Where("p.yaml", 10, 50)
    assert c is not None and c.value == "LOT-1"
    assert d is None


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.tuples(finite, finite).map(sorted),
    open_side=st.sampled_from(["", "low", "high"]),
    delay=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_any_finite_band_with_low_at_most_high_loads_and_keeps_its_numbers(
    bounds: list[float], open_side: str, delay: int | None
) -> None:
    low, high = bounds
    spec: dict[str, object] = {"name": "band", "band": "bioreactor.temperature"}
    if open_side != "low":
        spec["low"] = low
    if open_side != "high":
        spec["high"] = high
    if delay is not None:
        spec["delay"] = f"{delay} s"
    text = yaml.safe_dump(
        {
            "procedure": "p",
            "version": "1",
            "interlocks": [spec],
            "unit_procedures": [{"name": "u", "steps": [{"id": "w", "wait": "1 min"}]}],
        }
    )
    procedure, problems = _load(text)
    assert problems == ()
    assert isinstance(procedure, Procedure)
    (band,) = procedure.interlocks
    assert isinstance(band, BandInterlock)
    assert band.low == (None if open_side == "low" else low)
    assert band.high == (None if open_side == "high" else high)
    assert (band.delay.seconds if band.delay else None) == delay


@settings(max_examples=100, deadline=None)
@given(st.tuples(finite, finite).filter(lambda b: b[0] > b[1]))
def test_a_band_with_low_above_high_is_refused_at_low(bounds: tuple[float, float]) -> None:
    low, high = bounds
    text = (
        'procedure: p\nversion: "1"\ninterlocks:\n'
        f"  - {{name: b, band: bioreactor.do, low: {low!r}, high: {high!r}}}\n"
        "unit_procedures:\n  - name: u\n    steps:\n      - {id: w, wait: 1 min}\n"
    )
    procedure, problems = _load(text)
    (problem,) = problems
    assert problem.where == Where("p.yaml", 4, 41)
    assert problem.message == f"interlock b: low {low:g} is above high {high:g}"
    assert isinstance(procedure, Procedure)
    assert procedure.interlocks == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True), max_size=5))
def test_alarm_codes_are_kept_as_written(codes: list[str]) -> None:
    text = yaml.safe_dump(
        {
            "procedure": "p",
            "version": "1",
            "interlocks": [{"name": "a", "alarm": "freezer", "codes": codes}],
            "unit_procedures": [{"name": "u", "steps": [{"id": "w", "wait": "1 min"}]}],
        }
    )
    procedure, problems = _load(text)
    assert problems == ()
    assert isinstance(procedure, Procedure)
    (alarm,) = procedure.interlocks
    assert isinstance(alarm, AlarmInterlock)
    assert alarm.codes == tuple(codes)
