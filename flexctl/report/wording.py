"""How a batch record reads to a person: process times, numbers, steps and signers.

Shared by the run's progress lines and summary (:mod:`flexctl.cli.progress`) and
the batch report, so both say the same thing the same way.
"""

from __future__ import annotations

import math
from typing import Final

from flexctl.procedure.model import (
    Argument,
    CommandStep,
    Expr,
    PromptStep,
    RecordStep,
    SetStep,
    Step,
    WaitStep,
    WaitUntilStep,
)
from flexctl.record.signers import SIM_USER

#: Longest text shown for a step on one progress line.
TEXT_WIDTH: Final = 72


def stamp(seconds: float) -> str:
    """Process time since the start as ``dDD HH:MM``."""
    minutes = max(0, math.floor(seconds / 60.0))
    days, minutes = divmod(minutes, 24 * 60)
    return f"d{days:02d} {minutes // 60:02d}:{minutes % 60:02d}"


def span(seconds: float) -> str:
    """A process duration as ``8 d 06:08:30``."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} d {text}" if days else text


def number(value: object, *, pct: bool = False) -> str:
    """A value as a person reads it: ``5.34e5``, ``89.8``, ``683``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if pct:
        return f"{value:.1f}"
    size = abs(value)
    if size and (size >= 1e5 or size < 1e-2):
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def short(text: str, width: int = TEXT_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _argument(arg: Argument) -> str:
    if isinstance(arg.value, Expr):
        return f"{arg.name}=…"
    return f"{arg.name}={arg.value!r}"


def describe_step(step: Step) -> str:
    """What a step does, in one short phrase (from the procedure: no I/O)."""
    if isinstance(step, CommandStep):
        call = step.call
        args = ", ".join(_argument(a) for a in call.args.values())
        return short(f"command {call.target.device}.{call.target.member}({args})")
    if isinstance(step, SetStep):
        value = step.value.value
        shown = value.text if isinstance(value, Expr) else repr(value)
        return short(f"set {step.target.device}.{step.target.member} = {shown}")
    if isinstance(step, WaitStep):
        return f"wait {step.duration.text}"
    if isinstance(step, WaitUntilStep):
        return short(f"wait until {step.condition.text} (within {step.timeout.text})")
    if isinstance(step, RecordStep):
        return short(f"record {step.expression.text}")
    if isinstance(step, PromptStep):
        return short(f"ask {step.role.value}: {step.text}")
    return step.kind


def signer_label(actor: str, simulated: object, *, brief: bool = False) -> str:
    """The signer, marked when it is the simulation user."""
    if simulated is True or actor == SIM_USER:
        return f"{actor} [simulated]" if brief else f"{actor} [SIMULATION USER, not a person]"
    return actor
