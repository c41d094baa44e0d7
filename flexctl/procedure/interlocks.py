"""Read the ``interlocks:`` of a procedure or unit procedure into the model.

Part of the loader (:mod:`flexctl.procedure.loader`), kept apart for size: the
same reader collects every problem with its file:line:column. What the loader
checks here is what an interlock says on its own (name, kind, band numbers,
delay, codes); the validator checks the device and signal against the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flexctl.errors import Where
from flexctl.procedure.model import AlarmInterlock, BandInterlock, Duration, InterlockSpec
from flexctl.yamlpos import PosDict

if TYPE_CHECKING:
    from flexctl.procedure.loader import _Reader

#: The keys of each kind of interlock (the kind key is one of them).
INTERLOCK_KEYS: Mapping[str, tuple[str, ...]] = {
    "band": ("name", "band", "low", "high", "delay"),
    "alarm": ("name", "alarm", "codes"),
}


def read_interlocks(reader: _Reader, parent: PosDict, where: str) -> tuple[InterlockSpec, ...]:
    """The interlocks under ``parent["interlocks"]``; ``where`` names the parent in messages.

    ``where`` is ``""`` for the procedure's own and ``"unit procedure u: "`` for a
    unit procedure's. An interlock with a problem is left out (the problem says why).
    """
    if "interlocks" not in parent or parent["interlocks"] is None:
        return ()
    raw = reader.sequence(parent["interlocks"], parent.at("interlocks"), f"{where}interlocks")
    if raw is None:
        return ()
    found: list[InterlockSpec] = []
    for index, item in enumerate(raw):
        spec = _interlock(reader, item, raw.at(index), f"{where}interlock {index + 1}")
        if spec is not None:
            found.append(spec)
    return tuple(found)


def _interlock(reader: _Reader, raw: Any, where: Where, label: str) -> InterlockSpec | None:
    spec = reader.mapping(raw, where, label)
    if spec is None:
        return None
    name = spec.get("name")
    what = f"interlock {name}" if isinstance(name, str) and name.strip() else label
    kinds = [key for key in INTERLOCK_KEYS if key in spec]
    if len(kinds) != 1:
        every = sorted({key for keys in INTERLOCK_KEYS.values() for key in keys})
        reader.keys(spec, every, what, ("name",))
        if kinds:
            reader.problem(
                spec.key_at(kinds[1]), f"{what}: one of band or alarm per interlock, got both"
            )
        else:
            reader.problem(
                spec.where,
                f"{what}: expected 'band: device.signal' (a value kept in a band) "
                "or 'alarm: device' (the device's alarms)",
            )
        return None
    kind = kinds[0]
    reader.keys(spec, INTERLOCK_KEYS[kind], f"{what} ({kind})", ("name",))
    name = reader.name_of(spec, "name", what) if "name" in spec else None
    if kind == "band":
        return _band(reader, spec, what, name)
    return _alarm(reader, spec, what, name)


def _band(reader: _Reader, spec: PosDict, what: str, name: str | None) -> BandInterlock | None:
    target = reader.target(spec, "band", what, "signal")
    low_ok, low = _bound(reader, spec, "low", what)
    high_ok, high = _bound(reader, spec, "high", what)
    ok = target is not None and low_ok and high_ok
    if "low" not in spec and "high" not in spec:
        reader.problem(spec.where, f"{what}: a band needs low, high or both")
        ok = False
    if low is not None and high is not None and low > high:
        reader.problem(spec.at("low"), f"{what}: low {low:g} is above high {high:g}")
        ok = False
    delay: Duration | None = None
    if "delay" in spec:
        # 0 s is allowed: the same as no delay, trip on the first reading out of the band
        delay = reader.duration_value(spec["delay"], spec.at("delay"), f"{what}: delay")
        ok = ok and delay is not None
    if not ok or name is None or target is None:
        return None
    return BandInterlock(
        name=name,
        target=target,
        low=low,
        high=high,
        delay=delay,
        where=spec.where,
        name_where=spec.at("name"),
    )


def _bound(reader: _Reader, spec: PosDict, key: str, what: str) -> tuple[bool, float | None]:
    """Whether ``spec[key]`` is well formed, and it as a float (None when absent or wrong)."""
    if key not in spec:
        return True, None
    value = spec[key]
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return True, float(value)
    reader.problem(spec.at(key), f"{what}: {key}: expected a finite number, got {_kind(value)}")
    return False, None


def _alarm(reader: _Reader, spec: PosDict, what: str, name: str | None) -> AlarmInterlock | None:
    device = spec["alarm"]
    ok = True
    if not isinstance(device, str) or not _is_name(device):
        reader.problem(
            spec.at("alarm"), f"{what}: alarm: expected a device name, got {_kind(device)}"
        )
        ok = False
    codes: list[str] = []
    raw_codes = spec.get("codes")
    if raw_codes is not None:
        listed = reader.sequence(raw_codes, spec.at("codes"), f"{what}: codes")
        ok = ok and listed is not None
        for index, code in enumerate(listed or ()):
            if isinstance(code, str) and code.strip():
                codes.append(code.strip())
            else:
                reader.problem(
                    listed.at(index) if listed is not None else spec.at("codes"),
                    f"{what}: codes: expected an alarm code (text), got {_kind(code)}",
                )
                ok = False
    if not ok or name is None:
        return None
    return AlarmInterlock(
        name=name,
        device=device,
        codes=tuple(codes),
        where=spec.where,
        device_where=spec.at("alarm"),
        name_where=spec.at("name"),
    )


# The loader imports this module, so its helpers are imported when called.
def _is_name(text: str) -> bool:
    from flexctl.procedure.loader import is_name

    return is_name(text)


def _kind(value: Any) -> str:
    from flexctl.procedure.loader import kind_of

    return kind_of(value)
