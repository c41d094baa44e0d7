"""The Batch methods' arguments, who calls, and how a call is refused (protocol-free).

Each method's input arguments are declared once in :data:`ARGUMENTS`; the
address space declares them to clients from here and :func:`parse_arguments`
checks what a client sent. Trailing optional arguments may be left out. A
refusal is a :class:`CallError` naming the OPC UA status code the client gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from flexctl.errors import FlexctlError
from flexctl.northbound.roles import Action
from flexctl.profile import Value
from flexctl.record.signing import SigningSession


class ArgKind(StrEnum):
    """An argument's OPC UA data type."""

    String = "String"
    Double = "Double"
    Any = "BaseDataType"  # the answer to a prompt: text, a number or true


@dataclass(frozen=True)
class Arg:
    """One input argument of a method."""

    name: str
    kind: ArgKind
    required: bool
    description: str


_REASON = Arg("Reason", ArgKind.String, False, "why (kept in the journal and audit trail)")

#: The one declaration of every method's input arguments, in order.
ARGUMENTS: Mapping[Action, tuple[Arg, ...]] = MappingProxyType(
    {
        Action.Start: (),
        Action.Pause: (_REASON,),
        Action.Resume: (_REASON,),
        Action.Hold: (_REASON,),
        Action.Restart: (
            Arg(
                "Resolve",
                ArgKind.String,
                False,
                "for a step command of unknown outcome: resend or done ('' if none)",
            ),
            _REASON,
        ),
        Action.Stop: (_REASON,),
        Action.Abort: (Arg("Reason", ArgKind.String, True, "why the batch is aborted"),),
        Action.Reset: (_REASON,),
        Action.AcknowledgeAlarm: (
            Arg("Name", ArgKind.String, True, "the alarm's name"),
            Arg("Reason", ArgKind.String, True, "why"),
        ),
        Action.ShelveAlarm: (
            Arg("Name", ArgKind.String, True, "the alarm's name"),
            Arg("Reason", ArgKind.String, True, "why"),
            Arg("DurationS", ArgKind.Double, True, "process seconds until it comes back"),
        ),
        Action.AnswerPrompt: (
            Arg("Step", ArgKind.String, True, "the step id of the pending prompt"),
            Arg("Value", ArgKind.Any, True, "the answer: true to confirm, or the entry"),
            Arg("Password", ArgKind.String, True, "your password, to sign the answer"),
        ),
    }
)


class CallError(FlexctlError):
    """A refused call: ``status`` is the OPC UA status code's name (``BadInvalidState``)."""

    def __init__(self, status: str, message: str) -> None:
        if not status.startswith("Bad"):
            raise ValueError(f"a refusal carries a Bad status code, not {status!r}")
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    """Who calls: the logged-in user and their OPC UA session's signing session."""

    user_id: str
    signing: SigningSession


def parse_arguments(action: Action, raw: Sequence[object]) -> list[Value]:
    """The arguments of a call to ``action``, checked; optional ones left out are ``""``.

    Raises:
        CallError: too few (BadArgumentsMissing) or too many (BadTooManyArguments)
            arguments, or one of the wrong type (BadTypeMismatch).
    """
    declared = ARGUMENTS[action]
    if len(raw) > len(declared):
        raise CallError(
            "BadTooManyArguments", f"{action} takes {len(declared)} argument(s), got {len(raw)}"
        )
    values: list[Value] = []
    for index, arg in enumerate(declared):
        if index >= len(raw):
            if arg.required:
                missing = ", ".join(a.name for a in declared[index:] if a.required)
                raise CallError("BadArgumentsMissing", f"{action}: missing {missing}")
            values.append("")
            continue
        values.append(_checked(action, arg, raw[index]))
    return values


def _checked(action: Action, arg: Arg, value: object) -> Value:
    if arg.kind is ArgKind.String and isinstance(value, str):
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if arg.kind is ArgKind.Double and number:
        assert isinstance(value, int | float)
        if not math.isfinite(value):
            raise CallError("BadInvalidArgument", f"{action}: {arg.name} must be finite")
        return float(value)
    if arg.kind is ArgKind.Any and isinstance(value, bool | int | float | str):
        return value
    raise CallError(
        "BadTypeMismatch",
        f"{action}: {arg.name} must be {arg.kind.value}, got {type(value).__name__}",
    )
