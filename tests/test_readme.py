"""The README's two Quick start commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from flexctl.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands() -> None:
    assert len(_quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test_command = _quick_start_commands()
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_main_job_command_is_a_real_flexctl_command() -> None:
    main_job, _ = _quick_start_commands()
    flexctl_part = main_job.split("&&")[-1].strip()
    words = shlex.split(flexctl_part)
    assert words[0].endswith("flexctl")
    args = build_parser().parse_args(words[1:])
    assert callable(args.handler)
