"""The hand-kept package list in pyproject.toml matches the tree, so the wheel is whole."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_in_the_tree_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("flexctl", "drivers", "simulators")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject.toml packages: {sorted(found - listed)}"
    mapped = set(config["package-dir"])
    assert mapped <= listed
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder).is_dir(), f"{package} maps to missing folder {folder}"
