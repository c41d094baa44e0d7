"""Users: id rules, the bootstrap user, administration by supervisors and QA, all audited."""

from __future__ import annotations

import pytest

from flexctl.procedure.model import Role
from flexctl.record.passwords import PasswordPolicyError, verify_password
from flexctl.record.store import RecordError
from flexctl.record.users import (
    BOOTSTRAP,
    Roles,
    UserError,
    add_user,
    authenticate_admin,
    check_printed_name,
    check_user_id,
    disable_user,
    enable_user,
    list_users,
    parse_roles,
)
from flexctl.supervisor.prompts import SIM_USER
from tests.record_fakes import CHEAP, EPOCH, FakeStore, fixed_utc

QA_PASSWORD = "qa-password-1"


def bootstrapped() -> FakeStore:
    store = FakeStore()
    add_user(
        store,
        "qa.lead",
        "Quinn Lead",
        ["qa"],
        QA_PASSWORD,
        actor=BOOTSTRAP,
        reason="first user",
        cost=CHEAP,
        now=fixed_utc,
    )
    return store


def add(store: FakeStore, user_id: str, roles: list[str], *, actor: str = "qa.lead") -> None:
    add_user(
        store,
        user_id,
        user_id.title(),
        roles,
        f"{user_id}-password",
        actor=actor,
        reason="hired",
        cost=CHEAP,
        now=fixed_utc,
    )


def test_roles_are_the_procedure_roles() -> None:
    assert Roles is Role
    assert {role.value for role in Roles} == {"operator", "supervisor", "qa"}
    assert parse_roles(["qa", Role.OPERATOR, "qa"]) == {Role.QA, Role.OPERATOR}
    with pytest.raises(UserError, match="unknown role 'admin': expected one of operator"):
        parse_roles(["operator", "admin"])
    with pytest.raises(UserError, match="at least one role"):
        parse_roles([])


@pytest.mark.parametrize("user_id", ["a", "jdoe", "j.doe-2_x", "0perator", "x" * 64])
def test_valid_user_ids(user_id: str) -> None:
    assert check_user_id(user_id) == user_id


@pytest.mark.parametrize(
    ("user_id", "message"),
    [
        ("", "expected 1 to 64 lowercase"),
        ("JDoe", "expected 1 to 64 lowercase"),
        ("j doe", "expected 1 to 64 lowercase"),
        ("-jdoe", "starting with a letter or digit"),
        (".jdoe", "starting with a letter or digit"),
        ("j\u00e9", "expected 1 to 64 lowercase"),
        ("x" * 65, "expected 1 to 64 lowercase"),
        ("jdoe\n", "expected 1 to 64 lowercase"),
        (SIM_USER, "expected 1 to 64 lowercase"),
        ("sim-auto-signer", "reserved"),
        ("system", "reserved"),
        (BOOTSTRAP, "reserved"),
    ],
)
def test_invalid_user_ids(user_id: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_user_id(user_id)


def test_printed_names() -> None:
    assert check_printed_name("  Jane Doe ") == "Jane Doe"
    assert check_printed_name("Zoë O'Brien-Łukasiewicz") == "Zoë O'Brien-Łukasiewicz"
    for bad in ["", "   ", "Jane\nDoe", "Jane\u200bDoe", "x" * 101, SIM_USER]:
        with pytest.raises(UserError):
            check_printed_name(bad)


def test_the_first_user_is_added_by_bootstrap_with_the_qa_role_and_audited() -> None:
    store = bootstrapped()
    user = store.user("qa.lead")
    assert (user.printed_name, user.roles, user.disabled) == ("Quinn Lead", {"qa"}, False)
    assert user.created_utc == EPOCH
    assert verify_password(QA_PASSWORD, user.password_hash)
    [record] = store.audits
    assert record.actor == BOOTSTRAP and record.action == "user added"
    assert record.object == "user:qa.lead" and record.old_value is None
    assert record.new_value == {
        "user_id": "qa.lead",
        "printed_name": "Quinn Lead",
        "roles": ["qa"],
        "disabled": False,
    }
    assert record.reason == "first user" and record.utc == EPOCH
    assert record.batch == "" and record.process_time is None


def test_the_first_user_must_hold_qa_and_be_added_by_bootstrap() -> None:
    store = FakeStore()
    with pytest.raises(UserError, match="first user must hold the qa role"):
        add(store, "op", ["operator", "supervisor"], actor=BOOTSTRAP)
    with pytest.raises(UserError, match="first user is added by bootstrap"):
        add(store, "qa", ["qa"], actor="someone")
    assert store.users() == [] and store.audits == []


def test_bootstrap_cannot_add_a_second_user() -> None:
    store = bootstrapped()
    with pytest.raises(UserError, match="'bootstrap' is not an enabled supervisor or qa"):
        add(store, "eve", ["qa"], actor=BOOTSTRAP)
    assert [u.user_id for u in store.users()] == ["qa.lead"]


def test_later_users_are_added_by_an_enabled_supervisor_or_qa_user() -> None:
    store = bootstrapped()
    add(store, "sam", ["supervisor"])
    add(store, "olga", ["operator"], actor="sam")
    with pytest.raises(UserError, match="'olga' is not an enabled supervisor or qa user"):
        add(store, "oscar", ["operator"], actor="olga")
    with pytest.raises(UserError, match="'nobody' is not an enabled"):
        add(store, "oscar", ["operator"], actor="nobody")
    disable_user(store, "sam", actor="qa.lead", reason="left the company", now=fixed_utc)
    with pytest.raises(UserError, match="'sam' is not an enabled"):
        add(store, "oscar", ["operator"], actor="sam")
    assert [u.user_id for u in list_users(store)] == ["olga", "qa.lead", "sam"]
    assert [(r.actor, r.object) for r in store.audits if r.action == "user added"] == [
        (BOOTSTRAP, "user:qa.lead"),
        ("qa.lead", "user:sam"),
        ("sam", "user:olga"),
    ]


def test_an_id_is_never_reused_and_nothing_is_audited_for_a_refusal() -> None:
    store = bootstrapped()
    add(store, "olga", ["operator"])
    disable_user(store, "olga", actor="qa.lead", reason="left", now=fixed_utc)
    before = list(store.audits)
    with pytest.raises(RecordError, match="never reused"):
        add(store, "olga", ["operator"])
    with pytest.raises(PasswordPolicyError, match="at least 8"):
        add_user(store, "oscar", "Oscar", ["operator"], "short", actor="qa.lead", reason="")
    with pytest.raises(PasswordPolicyError, match="not be the user id"):
        add_user(store, "oscar1234", "Oscar", ["operator"], "oscar1234", actor="qa.lead", reason="")
    with pytest.raises(UserError, match="reserved"):
        add(store, "system", ["operator"])
    assert store.audits == before
    assert "oscar" not in {u.user_id for u in store.users()}


def test_no_password_or_hash_reaches_the_audit_trail() -> None:
    store = bootstrapped()
    add(store, "olga", ["operator", "qa"])
    disable_user(store, "olga", actor="qa.lead", reason="on leave", now=fixed_utc)
    enable_user(store, "olga", actor="qa.lead", reason="back", now=fixed_utc)
    with pytest.raises(UserError):
        authenticate_admin(store, "qa.lead", "olga-password", now=fixed_utc)
    trail = repr(store.audits)
    for user in store.users():
        for part in user.password_hash.split("$")[4:]:
            assert part not in trail
    for secret in (QA_PASSWORD, "olga-password"):
        assert secret not in trail


def test_disable_and_enable_are_audited_with_old_and_new_value_and_reason() -> None:
    store = bootstrapped()
    add(store, "olga", ["operator"])
    disable_user(store, "olga", actor="qa.lead", reason="  left the site ", now=fixed_utc)
    assert store.user("olga").disabled
    enable_user(store, "olga", actor="qa.lead", reason="returned", now=fixed_utc)
    assert not store.user("olga").disabled
    disabled, enabled = store.audits[-2:]
    assert (disabled.action, disabled.object, disabled.actor) == (
        "user disabled",
        "user:olga",
        "qa.lead",
    )
    assert (disabled.old_value, disabled.new_value, disabled.reason) == (
        {"disabled": False},
        {"disabled": True},
        "left the site",
    )
    assert (enabled.action, enabled.old_value, enabled.new_value, enabled.reason) == (
        "user enabled",
        {"disabled": True},
        {"disabled": False},
        "returned",
    )


def test_disable_needs_a_reason_an_admin_and_a_change() -> None:
    store = bootstrapped()
    add(store, "olga", ["operator"])
    add(store, "otto", ["operator"])
    count = len(store.audits)
    with pytest.raises(UserError, match="a reason is needed"):
        disable_user(store, "olga", actor="qa.lead", reason=" ")
    with pytest.raises(UserError, match="'otto' is not an enabled supervisor or qa"):
        disable_user(store, "olga", actor="otto", reason="why not")
    with pytest.raises(RecordError):
        disable_user(store, "nobody", actor="qa.lead", reason="gone")
    with pytest.raises(UserError, match="is enabled already"):
        enable_user(store, "olga", actor="qa.lead", reason="again")
    assert len(store.audits) == count and not store.user("olga").disabled


def test_the_last_enabled_administrator_cannot_be_disabled() -> None:
    store = bootstrapped()
    with pytest.raises(UserError, match="last enabled supervisor or qa user"):
        disable_user(store, "qa.lead", actor="qa.lead", reason="leaving")
    add(store, "sam", ["supervisor"])
    disable_user(store, "qa.lead", actor="sam", reason="leaving", now=fixed_utc)
    with pytest.raises(UserError, match="last enabled"):
        disable_user(store, "sam", actor="sam", reason="leaving too")
    assert not store.user("sam").disabled


def test_authenticate_admin_checks_password_role_and_state_and_audits_refusals() -> None:
    store = bootstrapped()
    add(store, "olga", ["operator"])
    assert authenticate_admin(store, "qa.lead", QA_PASSWORD).user_id == "qa.lead"
    assert store.audits[-1].action == "user added"  # a success adds nothing
    cases = [
        ("qa.lead", "wrong-password", "wrong user id or password", "wrong password for"),
        ("nobody", QA_PASSWORD, "wrong user id or password", "no user 'nobody'"),
        ("olga", "olga-password", "'olga' is not a supervisor or qa", "not a supervisor"),
    ]
    for user_id, password, told, reason in cases:
        with pytest.raises(UserError, match=told):
            authenticate_admin(store, user_id, password, now=fixed_utc)
        record = store.audits[-1]
        assert record.action == "authentication refused" and reason in record.reason
        assert record.actor == user_id
    add(store, "sam", ["supervisor"])
    disable_user(store, "sam", actor="qa.lead", reason="left", now=fixed_utc)
    with pytest.raises(UserError, match="'sam' is disabled"):
        authenticate_admin(store, "sam", "sam-password")
    # Text that is no user id (a password typed in the id field) is not recorded.
    with pytest.raises(UserError):
        authenticate_admin(store, "My Secret Pw!", QA_PASSWORD)
    assert store.audits[-1].actor == "(invalid user id)"
    assert "My Secret Pw!" not in repr(store.audits)
