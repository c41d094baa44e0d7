"""Driver classes by the name a line file gives them."""

from __future__ import annotations

import importlib

from drivers.base import Driver

_DRIVERS: dict[str, tuple[str, str]] = {
    "bioreactor": ("drivers.bioreactor", "Bioreactor"),
    "cell_processor": ("drivers.cell_processor", "CellProcessor"),
    "thaw": ("drivers.thaw", "ThawDevice"),
    "freezer": ("drivers.freezer", "Freezer"),
}

DRIVER_NAMES = tuple(_DRIVERS)


def driver_class(name: str) -> type[Driver]:
    """The driver class for ``name``; ValueError listing the known ones otherwise."""
    try:
        module_name, class_name = _DRIVERS[name]
    except KeyError:
        raise ValueError(
            f"unknown driver {name!r} (expected one of {', '.join(DRIVER_NAMES)})"
        ) from None
    cls: type[Driver] = getattr(importlib.import_module(module_name), class_name)
    return cls
