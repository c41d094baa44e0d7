"""Find the profiles, lines and procedures that ship with flexctl.

From a checkout they are the top-level ``config/`` and ``procedures/`` folders;
from an installed wheel they are mapped into ``flexctl.shipped`` (see
pyproject.toml). A user's own files are always given by path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flexctl.errors import ConfigurationError, Where
from flexctl.profile import Profile, load_profile

_CHECKOUT = Path(__file__).resolve().parent.parent


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``profiles``, ``lines`` or ``procedures``."""
    parts = ("procedures",) if kind == "procedures" else ("config", kind)
    checkout = _CHECKOUT.joinpath(*parts)
    if checkout.is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return checkout
    package = "flexctl.shipped." + ".".join(parts)
    # A data folder has no __init__.py, so it is a namespace package: its spec
    # names the real folder (resources.files() would give a MultiplexedPath).
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ConfigurationError(Where(package), f"flexctl is installed without its {kind}")
    return Path(locations[0])


def shipped_file(kind: str, name: str) -> Path:
    """A shipped file by name (with or without ``.yaml``); a clear error if there is none."""
    folder = shipped_dir(kind)
    path = folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ConfigurationError(
            Where(str(path)), f"no shipped {kind[:-1]} named {name!r} (shipped: {known})"
        )
    return path


def shipped_profile(name: str) -> Profile:
    return load_profile(shipped_file("profiles", name))
