"""The hand-kept package list in pyproject.toml matches the tree, so the wheel is whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
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


def test_the_wheel_carries_and_finds_every_shipped_profile(tmp_path: Path) -> None:
    """Build the wheel, unpack it, and resolve a profile from it as an installed flexctl would."""
    # pip builds in the source tree; build from a copy so the checkout stays clean.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("flexctl-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(unpacked)
    for folder, shipped in (
        ("config/profiles", "config/profiles"),
        ("config/lines", "config/lines"),
        ("procedures", "procedures"),
    ):
        files = list((ROOT / folder).glob("*.yaml"))
        assert files, f"nothing to ship in {folder}"
        for path in files:
            assert f"flexctl/shipped/{shipped}/{path.name}" in names
    probe = (
        "from flexctl.resources import shipped_file; "
        "print(shipped_file('profiles', 'demo.opcua')); "
        "print(shipped_file('lines', 'sim')); "
        "print(shipped_file('procedures', 'car-t'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
    )
    assert found.returncode == 0, found.stderr[-2000:]
    printed = found.stdout.split()
    assert len(printed) == 3
    assert all(path.startswith(str(unpacked)) for path in printed)
