"""Asking people: the :class:`Prompter` protocol, answer checks and the simulation user.

A prompt step asks a person to confirm or to enter a value (a barcode for the
chain of identity, a count) and to sign it with a role and a meaning (21 CFR
11.50). The executor hands a :class:`PromptRequest` to a :class:`Prompter`
(an operator console, later) and gets back the value and who signed.

:class:`AutoSigner` is the simulation user: a distinct actor, marked as such
in every entry it makes (``sim-auto-signer (simulation)``), that answers at
once with a value from a given mapping or a deterministic default that meets
the entry's pattern or limits. It exists for simulated runs and tests; it
never stands for a person.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from flexctl.errors import FlexctlError
from flexctl.procedure.model import Entry, EntryType, Meaning, Role
from flexctl.profile import Value
from flexctl.record.signers import SIM_SIGNER, SIM_USER, Signer

# Who signs is the record's (flexctl.record.signers); re-exported for prompt users.
__all__ = [
    "SIM_SIGNER",
    "SIM_USER",
    "AutoSigner",
    "PromptDeclined",
    "PromptRequest",
    "Prompter",
    "Signer",
    "check_answer",
    "default_answer",
    "example_for",
]


@dataclass(frozen=True)
class PromptRequest:
    """What a person is asked, and where in the batch.

    ``suggested`` is the entry's suggestion as evaluated now (None when the
    entry has none, or it did not fit the entry): what the batch expects the
    person to enter, shown to them; they may enter another fitting value.
    """

    batch: str
    unit_procedure: str
    step: str
    text: str
    suggested: Value | None = None


@runtime_checkable
class Prompter(Protocol):
    """Asks a person (of ``role``) and returns the answer and the signer.

    A confirmation (``entry`` None) is answered True; a data entry with its
    value. The executor checks the answer against the entry and asks again if
    it does not fit.
    """

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]: ...


class PromptDeclined(FlexctlError):
    """The person did not confirm, or no acceptable value was entered."""


def check_answer(entry: Entry | None, value: object) -> str | None:
    """Why ``value`` does not answer a prompt with ``entry``; None when it does."""
    if entry is None:
        return None if value is True else f"a confirmation is answered true, not {value!r}"
    if entry.type is EntryType.TEXT:
        if not isinstance(value, str):
            return f"expected text, got {value!r}"
        if entry.pattern is not None and re.fullmatch(entry.pattern, value) is None:
            return f"{value!r} does not match {entry.pattern}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {value!r}"
    if entry.type is EntryType.INT and not isinstance(value, int):
        return f"expected a whole number, got {value!r}"
    if not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if entry.limits is not None:
        low, high = entry.limits
        if not low <= value <= high:
            return f"{value!r} is outside [{low:g}, {high:g}]"
    return None


def default_answer(entry: Entry | None, step: str) -> Value:
    """A deterministic answer that satisfies ``entry`` (True for a confirmation).

    Numbers: the middle of the limits (1 without limits). Text: ``SIM-<STEP>``
    when it fits the pattern (the value shows it is simulated), else a short
    example built from the pattern. ValueError when none can be found.
    """
    if entry is None:
        return True
    if entry.type is EntryType.FLOAT:
        return 1.0 if entry.limits is None else (entry.limits[0] + entry.limits[1]) / 2
    if entry.type is EntryType.INT:
        if entry.limits is None:
            return 1
        low, high = math.ceil(entry.limits[0]), math.floor(entry.limits[1])
        if low > high:
            raise ValueError(f"no whole number within {entry.limits}")
        return (low + high) // 2
    candidates = [f"SIM-{step.upper()}", f"SIM-{step.upper().replace('_', '-')}", "SIM-0001"]
    candidates += ["SIM0001", "SIM"]
    if entry.pattern is None:
        return candidates[0]
    for candidate in candidates:
        if re.fullmatch(entry.pattern, candidate):
            return candidate
    example = example_for(entry.pattern)
    if example is not None:
        return example
    raise ValueError(f"cannot make up a value matching {entry.pattern}")


class AutoSigner:
    """The simulation user: answers every prompt at once, signing as :data:`SIM_USER`.

    ``answers`` maps a step id to the value to enter there; other prompts get
    the prompt's suggestion if it has one (the value the batch computed), else
    :func:`default_answer`. ``asked`` lists the step ids asked, in order.
    """

    def __init__(self, answers: Mapping[str, Value] | None = None) -> None:
        self.answers = dict(answers or {})
        self.asked: list[str] = []

    async def ask(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> tuple[Value, Signer]:
        del role, meaning  # the simulation user holds every role
        self.asked.append(prompt.step)
        if prompt.step in self.answers:
            return self.answers[prompt.step], SIM_SIGNER
        if entry is not None and prompt.suggested is not None:
            return prompt.suggested, SIM_SIGNER
        return default_answer(entry, prompt.step), SIM_SIGNER


# -- an example string for a regular expression ------------------------------------------

_parser: Any = importlib.import_module("re._parser")  # the stdlib's own regex parser
_PREFERRED = "SIMABCDEFGHJKLNOPQRTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz-_ .:/#+"
_CATEGORIES: Mapping[str, str] = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def example_for(pattern: str) -> str | None:
    """A short string the whole of ``pattern`` matches, or None if this cannot find one."""
    try:
        parsed = _parser.parse(pattern)
    except re.error:
        return None
    groups: dict[int, str] = {}
    try:
        text = _build(list(parsed), groups)
    except _NoExample:
        return None
    return text if re.fullmatch(pattern, text) else None


class _NoExample(Exception):
    pass


def _build(items: list[tuple[Any, Any]], groups: dict[int, str]) -> str:
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name in ("NOT_LITERAL", "ANY", "IN", "CATEGORY"):
            out.append(_one_char(name, arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = arg
            out.extend(_build(list(sub), groups) for _ in range(low))
        elif name == "SUBPATTERN":
            group, _add, _del, sub = arg
            text = _build(list(sub), groups)
            if group is not None:
                groups[group] = text
            out.append(text)
        elif name == "ATOMIC_GROUP":
            out.append(_build(list(arg), groups))
        elif name == "BRANCH":
            out.append(_build(list(arg[1][0]), groups))
        elif name == "GROUPREF":
            out.append(groups.get(arg, ""))
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:
            raise _NoExample(name)
    return "".join(out)


def _one_char(name: str, arg: Any) -> str:
    if name == "ANY":
        return "A"
    if name == "NOT_LITERAL":
        return next(c for c in _PREFERRED if ord(c) != arg)
    items = [("CATEGORY", arg)] if name == "CATEGORY" else list(arg)
    negate = any(str(op) == "NEGATE" for op, _ in items)
    candidates = list(_PREFERRED)
    for op, value in items:
        if str(op) == "LITERAL":
            candidates.insert(0, chr(value))
        elif str(op) == "RANGE":
            candidates.insert(0, chr(value[0]))
    # Keep the preferred order, but try the class's own characters first.
    for char in dict.fromkeys(candidates):
        if _in_class(items, char) != negate:
            return char
    raise _NoExample("character class")


def _in_class(items: list[tuple[Any, Any]], char: str) -> bool:
    for op, value in items:
        name = str(op)
        if name == "LITERAL" and ord(char) == value:
            return True
        if name == "RANGE" and value[0] <= ord(char) <= value[1]:
            return True
        if name == "CATEGORY":
            regex = _CATEGORIES.get(str(value))
            if regex is not None and re.fullmatch(regex, char):
                return True
    return False
