"""``flexctl validate``: exit 0 with a summary, or exit 2 with file:line:column lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flexctl.cli.main import main

GOOD = Path(__file__).parent / "data" / "procedures" / "good.yaml"
PLACE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


def test_a_valid_procedure_exits_0_with_a_one_line_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(GOOD)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "thaw-and-seed 1.0: OK on line sim (2 unit procedures, 11 steps, 1 rule); "
        "set per batch: vector_lot\n"
    )
    assert err == ""


def test_batch_parameters_and_a_line_can_be_given(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["validate", str(GOOD), "--line", "sim", "--param", "vector_lot=LV-1", "--param"]
    assert main([*argv, "culture_temp=36.5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("thaw-and-seed 1.0: OK on line sim")
    assert "set per batch" not in out


def test_every_problem_is_one_line_on_stderr_and_the_exit_is_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    text = GOOD.read_text()
    for old, new in [
        ("command: thaw.start,", "command: thaw.strat,"),
        ('value: "=culture_temp"', "value: 45"),
        ("wait: 5 min", "wait: 5"),
    ]:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[-1] == f"flexctl validate: 3 problems in {path}"
    places = [PLACE.match(line) for line in lines[:-1]]
    assert all(places), lines
    assert [(m["file"], int(m["line"])) for m in places if m] == [
        (str(path), 22),
        (str(path), 33),
        (str(path), 37),
    ]
    assert "has no command 'strat'" in lines[0]
    assert "45 degC is outside the limits [30, 39] degC of profile bioreactor.opcua" in lines[2]
    assert "Traceback" not in err


def test_bad_parameter_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GOOD), "--param", "culture_temp=45", "--param", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "--param culture_temp=45: parameter culture_temp: 45 degC is outside the limits" in err
    assert "--param nope=1: unknown parameter 'nope'" in err


def test_a_missing_file_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{missing}: cannot read file: No such file or directory"
    assert "Traceback" not in err


def test_bad_yaml_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('procedure: p\nversion: "1"\nunit_procedures: [\n  {name: u,\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    match = PLACE.match(err.splitlines()[0])
    assert match is not None, err
    assert match["file"] == str(path)
    assert int(match["line"]) >= 4
    assert "YAML syntax" in match["message"]
    assert "Traceback" not in err


def test_an_unknown_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GOOD), "--line", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("--line: no shipped line named 'nope' (shipped: sim")


def test_a_file_that_is_not_a_procedure_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{path}:1:1: procedure: expected a mapping, got a list"


def test_validate_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2
    assert "required: file" in capsys.readouterr().err
