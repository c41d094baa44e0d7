"""The northbound rights table, checked for every role, every set of roles and every method."""

from __future__ import annotations

import itertools

import pytest

from flexctl.northbound.calls import ARGUMENTS
from flexctl.northbound.roles import PROMPTS, RIGHTS, Action, may, may_answer, roles_of
from flexctl.procedure.model import Role

A = Action
OPERATOR = {A.Start, A.Pause, A.Resume, A.Hold, A.AcknowledgeAlarm, A.AnswerPrompt}
SUPERVISOR = OPERATOR | {A.Restart, A.Stop, A.ShelveAlarm}
QA = SUPERVISOR | {A.Abort, A.Reset}

#: The expected table, written out in full: (role, method) -> allowed.
EXPECTED = {
    (role, action): action in allowed
    for role, allowed in ((Role.OPERATOR, OPERATOR), (Role.SUPERVISOR, SUPERVISOR), (Role.QA, QA))
    for action in Action
}

ALL_ROLE_SETS = [
    frozenset(combo) for n in range(len(Role) + 1) for combo in itertools.combinations(Role, n)
]


def test_every_role_and_method_is_in_the_table() -> None:
    assert set(RIGHTS) == set(Role)
    assert set(ARGUMENTS) == set(Action)  # every method declares its arguments
    for (role, action), allowed in EXPECTED.items():
        assert (action in RIGHTS[role]) is allowed, (role, action)


@pytest.mark.parametrize("roles", ALL_ROLE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
def test_several_roles_give_the_union_of_their_rights(roles: frozenset[Role]) -> None:
    for action in Action:
        assert may(roles, action) is any(EXPECTED[(role, action)] for role in roles)


def test_rights_grow_from_operator_to_supervisor_to_qa() -> None:
    assert RIGHTS[Role.OPERATOR] < RIGHTS[Role.SUPERVISOR] < RIGHTS[Role.QA]
    assert RIGHTS[Role.QA] == frozenset(Action)


@pytest.mark.parametrize("roles", ALL_ROLE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
def test_a_prompt_is_answered_only_by_someone_holding_its_role(roles: frozenset[Role]) -> None:
    for prompt_role in Role:
        assert may_answer(roles, prompt_role) is (prompt_role in roles)
    assert all(PROMPTS[role] == {role} for role in Role)


def test_roles_of_reads_stored_role_names_and_ignores_others() -> None:
    assert roles_of(["qa", "operator", "admin", ""]) == {Role.QA, Role.OPERATOR}
    assert roles_of([]) == frozenset()
