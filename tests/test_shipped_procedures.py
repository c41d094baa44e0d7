"""The shipped procedures (procedures/*.yaml): valid on the simulated line, shaped as promised.

car-t.yaml is the whole autologous CAR-T process; the other files are its unit
operations, each usable alone. Every one validates on the sim line with no
problem, every prompt is signed by a role, and batch parameters outside their
limits (or pattern) are refused before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flexctl.cli.main import main
from flexctl.procedure.loader import load_procedure, read_procedure
from flexctl.procedure.model import (
    AlarmInterlock,
    BandInterlock,
    CommandStep,
    Expr,
    InterlockSpec,
    Meaning,
    Parameter,
    ParameterType,
    Procedure,
    ProcedureError,
    PromptStep,
    RecordStep,
    Role,
)
from flexctl.procedure.validate import check_procedure, parse_parameter_values

PROCEDURES = Path(__file__).resolve().parent.parent / "procedures"
SHIPPED = sorted(PROCEDURES.glob("*.yaml"))
CAR_T = PROCEDURES / "car-t.yaml"
#: ISA-88 unit procedures of the CAR-T batch (domain.md 3.1), in the order they run.
UNIT_PROCEDURES = (
    "thaw",
    "isolation",
    "activation",
    "expansion",
    "harvest",
    "formulation",
    "cryopreservation",
)
STANDALONE = ("thaw", "isolation", "expansion", "harvest", "formulation", "cryopreservation")


def _name(path: Path) -> str:
    return path.name


def test_the_procedure_and_its_unit_operations_are_shipped() -> None:
    names = {path.stem for path in SHIPPED}
    assert {"car-t", *STANDALONE} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_validates_on_the_sim_line_with_no_problem(path: Path) -> None:
    check = check_procedure(path)
    assert not check.problems, "\n".join(str(problem) for problem in check.problems)
    assert check.line is not None and check.line.name == "sim"


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_flexctl_validate_exits_0(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "OK on line sim" in out
    assert err == ""


def test_car_t_has_the_seven_unit_procedures_in_order() -> None:
    procedure = load_procedure(CAR_T)
    assert tuple(unit.name for unit in procedure.unit_procedures) == UNIT_PROCEDURES


@pytest.mark.parametrize("name", STANDALONE)
def test_each_unit_operation_is_one_unit_procedure_of_its_name(name: str) -> None:
    procedure = load_procedure(PROCEDURES / f"{name}.yaml")
    assert [unit.name for unit in procedure.unit_procedures] == [name]


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_every_prompt_is_signed_by_a_role(path: Path) -> None:
    prompts = [step for step in load_procedure(path).steps() if isinstance(step, PromptStep)]
    assert prompts, "a GMP procedure has people sign somewhere"
    for prompt in prompts:
        assert isinstance(prompt.role, Role), prompt.id
        assert isinstance(prompt.meaning, Meaning), prompt.id


def test_car_t_signatures_are_by_the_right_people() -> None:
    procedure = load_procedure(CAR_T)

    def prompt(step_id: str) -> PromptStep:
        step = procedure.step(step_id)
        assert isinstance(step, PromptStep)
        return step

    # chain of identity: the operator scans the apheresis bag
    bag = prompt("bag_id")
    assert (bag.role, bag.meaning) == (Role.OPERATOR, Meaning.PERFORMED)
    assert bag.entry is not None and bag.entry.pattern
    # the vector lot is entered, then verified by a supervisor (Annex 11 section 6)
    lot = prompt("vector_lot")
    assert lot.entry is not None and lot.entry.pattern
    check = prompt("vector_lot_verified")
    assert (check.role, check.meaning) == (Role.SUPERVISOR, Meaning.VERIFIED)
    # QA approves the final bag labels
    labels = prompt("label_check")
    assert (labels.role, labels.meaning) == (Role.QA, Meaning.APPROVED)


def test_car_t_defaults_are_a_valid_batch_once_the_identity_is_set() -> None:
    procedure = load_procedure(CAR_T)
    with pytest.raises(ProcedureError, match="coi_id"):
        parse_parameter_values(procedure, [])  # chain of identity: set per batch
    values = parse_parameter_values(procedure, ["coi_id=W1234-25-000042"])
    assert values["target_dose"] == 8.0e9
    assert values["expansion_limit"] == 14 * 86400
    assert values["seed_density"] == 0.5e6


# -- batch parameters outside their limits -------------------------------------------------


def _outside(param: Parameter) -> list[str]:
    """Texts just below and just above a parameter's limits."""
    assert param.limits is not None
    low, high = param.limits
    if param.type is ParameterType.DURATION:
        return [f"{int(low) - 60} s", f"{int(high) + 60} s"]
    if param.type is ParameterType.INT:
        return [str(int(low) - 1), str(int(high) + 1)]
    step = max(abs(low), abs(high)) * 1e-3
    return [repr(low - step), repr(high + step)]


def _limit_cases() -> list[tuple[Path, str, str]]:
    cases: list[tuple[Path, str, str]] = []
    for path in SHIPPED:
        procedure = read_procedure(path).procedure
        if procedure is None:
            continue  # reported by the validation test
        for param in procedure.parameters.values():
            if param.limits is not None:
                cases += [(path, param.name, text) for text in _outside(param)]
    return cases


@pytest.mark.parametrize(
    ("path", "name", "text"),
    _limit_cases(),
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_every_limit_refuses_a_value_just_outside(path: Path, name: str, text: str) -> None:
    procedure = load_procedure(path)
    with pytest.raises(ProcedureError) as refused:
        parse_parameter_values(procedure, [f"{name}={text}"], require_all=False)
    assert len(refused.value.problems) == 1
    assert f"parameter {name}:" in refused.value.problems[0].message


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("apheresis_volume", "20 mL", "outside the limits"),
        ("apheresis_volume", "300", "outside the limits"),
        ("apheresis_viability", "60", "outside the limits"),
        ("seed_density", "2e6", "outside the limits"),
        ("culture_temperature", "39.5", "outside the limits"),
        ("rock_rate", "40", "outside the limits"),
        ("target_dose", "5e10", "outside the limits"),
        ("expansion_limit", "21 d", "outside the limits"),
        ("expansion_limit", "3 d", "outside the limits"),
        ("bag_count", "9", "outside the limits"),
        ("bag_count", "0", "outside the limits"),
        ("bag_volume", "300 mL", "outside the limits"),
        ("wash_cycles", "5", "outside the limits"),
        ("coi_id", "not a barcode", "does not match the pattern"),
        ("bag_count", "2.5", "expected a whole number"),
        ("expansion_limit", "14", "unit"),
    ],
)
def test_car_t_refuses_bad_batch_parameters(name: str, text: str, why: str) -> None:
    procedure = load_procedure(CAR_T)
    with pytest.raises(ProcedureError) as refused:
        parse_parameter_values(procedure, [f"{name}={text}"], require_all=False)
    [problem] = refused.value.problems
    assert f"parameter {name}:" in problem.message
    assert why in problem.message


def test_flexctl_validate_refuses_a_param_out_of_limits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(CAR_T), "--param", "target_dose=5e10"]) == 2
    _, err = capsys.readouterr()
    assert "target_dose" in err and "outside the limits" in err


# -- interlocks and suggestions --------------------------------------------------------------

MODELS = Path(__file__).resolve().parent.parent / "simulators" / "models"


def _interlocks(procedure: Procedure) -> dict[str | None, list[InterlockSpec]]:
    """Interlocks by where they are armed: None for the whole batch, else the unit procedure."""
    armed: dict[str | None, list[InterlockSpec]] = {None: list(procedure.interlocks)}
    for unit in procedure.unit_procedures:
        armed[unit.name] = list(unit.interlocks)
    return armed


def test_car_t_arms_interlocks_where_the_product_is() -> None:
    armed = {
        scope: {spec.name for spec in specs}
        for scope, specs in _interlocks(load_procedure(CAR_T)).items()
    }
    assert armed == {
        None: {"bioreactor_overfill_temperature"},
        "thaw": {"thaw_alarms"},
        "isolation": set(),
        "activation": {"activation_temperature", "activation_culture_alarms"},
        "expansion": {"expansion_temperature", "do_floor", "culture_ph", "expansion_do_critical"},
        "harvest": set(),
        "formulation": set(),
        "cryopreservation": {"freezer_alarms"},
    }


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_every_watched_alarm_code_is_one_the_twin_raises(path: Path) -> None:
    check = check_procedure(path)
    assert check.procedure is not None and check.line is not None
    for specs in _interlocks(check.procedure).values():
        for spec in specs:
            if not isinstance(spec, AlarmInterlock):
                continue
            assert spec.codes, f"{spec.name}: name the codes that should hold the batch"
            source = (MODELS / f"{check.line.devices[spec.device].driver}.py").read_text()
            for code in spec.codes:
                assert code == code.upper(), f"{spec.name}: {code} as the device writes it"
                assert f'"{code}"' in source, f"{spec.name}: the {spec.device} twin has no {code}"


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_no_do_or_ph_band_is_armed_while_the_bag_may_be_empty(path: Path) -> None:
    # The empty bag reads DO and pH 0, and a restart is refused while an armed band is
    # outside: a band armed before the seed would stop a batch whose seed failed.
    procedure = load_procedure(path)
    for unit in procedure.unit_procedures:
        seeds = any(
            isinstance(step, CommandStep) and str(step.call.target) == "bioreactor.seed"
            for step in unit.steps
        )
        for spec in unit.interlocks if seeds else ():
            if isinstance(spec, BandInterlock):
                assert str(spec.target) not in ("bioreactor.do", "bioreactor.ph"), spec.name
    whole_batch = {str(s.target) for s in procedure.interlocks if isinstance(s, BandInterlock)}
    assert not whole_batch & {"bioreactor.do", "bioreactor.ph"}


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_temperature_bands_hold_every_allowed_culture_temperature(path: Path) -> None:
    procedure = load_procedure(path)
    setpoint = procedure.parameters.get("culture_temperature")
    for specs in _interlocks(procedure).values():
        for spec in specs:
            if isinstance(spec, BandInterlock) and str(spec.target) == "bioreactor.temperature":
                assert setpoint is not None and setpoint.limits is not None
                assert spec.low is not None and spec.high is not None
                low, high = setpoint.limits
                # 0.5 degC to spare at either end of the setpoint's limits
                assert spec.low <= low - 0.5 and high + 0.5 <= spec.high, spec.name


def test_the_vector_volume_entered_is_suggested_from_the_computed_one() -> None:
    procedure = load_procedure(CAR_T)
    added = procedure.step("vector_added")
    assert isinstance(added, PromptStep)
    assert added.entry is not None and added.entry.suggest is not None
    suggestion = added.entry.suggest.value
    assert isinstance(suggestion, Expr)
    assert suggestion.names == frozenset({"vector_volume.value"})
    computed = procedure.step("vector_volume")
    assert isinstance(computed, RecordStep) and computed.unit == added.entry.unit == "mL"
