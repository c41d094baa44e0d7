"""Who may call what on the northbound server: the one table of rights, by role.

Rights add up from operator to supervisor to QA (domain roles of
:class:`~flexctl.procedure.model.Role`); a user holding several roles has the
union of their rights. Answering a prompt is a right of every role, but each
prompt also asks for a role, and only a person who holds that role answers it:
the signature is given *in* that role, and
:class:`~flexctl.record.signing.Signatures` refuses a signer who does not hold
it. So a QA person answers an operator prompt only if they hold the operator
role too (see :data:`PROMPTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from flexctl.procedure.model import Role


class Action(StrEnum):
    """The methods of the server's Batch object; the value is the method's BrowseName."""

    Start = "Start"
    Pause = "Pause"
    Resume = "Resume"
    Hold = "Hold"
    Restart = "Restart"
    Stop = "Stop"
    Abort = "Abort"
    Reset = "Reset"
    AcknowledgeAlarm = "AcknowledgeAlarm"
    ShelveAlarm = "ShelveAlarm"
    AnswerPrompt = "AnswerPrompt"


_A = Action
_OPERATOR = frozenset(
    {_A.Start, _A.Pause, _A.Resume, _A.Hold, _A.AcknowledgeAlarm, _A.AnswerPrompt}
)
_SUPERVISOR = _OPERATOR | {_A.Restart, _A.Stop, _A.ShelveAlarm}
_QA = _SUPERVISOR | {_A.Abort, _A.Reset}

#: The one table: role -> the methods it may call.
RIGHTS: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {Role.OPERATOR: _OPERATOR, Role.SUPERVISOR: _SUPERVISOR, Role.QA: _QA}
)

#: Role held -> the prompts (by the role they ask for) it may answer: its own only.
PROMPTS: Mapping[Role, frozenset[Role]] = MappingProxyType(
    {role: frozenset({role}) for role in Role}
)


def roles_of(names: Iterable[str]) -> frozenset[Role]:
    """The known roles among ``names`` (a user record's role values); others are ignored."""
    known = {role.value: role for role in Role}
    return frozenset(known[name] for name in names if name in known)


def may(roles: Iterable[Role], action: Action) -> bool:
    """True if someone holding ``roles`` may call ``action``."""
    return any(action in RIGHTS[role] for role in roles)


def may_answer(roles: Iterable[Role], prompt_role: Role) -> bool:
    """True if someone holding ``roles`` may answer a prompt asking for ``prompt_role``."""
    return any(prompt_role in PROMPTS[role] for role in roles)
