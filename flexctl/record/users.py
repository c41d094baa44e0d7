"""The people who may sign: adding, disabling and listing users, each audited.

A user id is unique to one person and never reused (21 CFR 11.100): users are
disabled, never deleted. Every change goes to the audit trail with who did it,
what changed (old and new value) and why; a password or its hash never does.

Who may change users: an enabled supervisor or QA user. The one exception is
the first user of an empty store, created by :data:`BOOTSTRAP`, who must hold
the QA role so that someone can administer users afterwards. These functions
check the actor's authority; the caller first checks that the actor is who
they say (:func:`authenticate_admin`, as ``flexctl users`` does).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final, Protocol

from flexctl.errors import FlexctlError
from flexctl.procedure.model import Role
from flexctl.record.journal import SYSTEM, JSONValue
from flexctl.record.passwords import (
    DEFAULT_COST,
    ScryptCost,
    check_policy,
    dummy_verify,
    hash_password,
    verify_password,
)
from flexctl.record.signers import SIM_USER
from flexctl.record.store import AuditEntry, AuditRecord, RecordError, UserRecord

#: The roles a user holds are the roles a prompt asks for: one enum, not two.
Roles = Role

#: The actor recorded for the first user of an empty store.
BOOTSTRAP: Final = "bootstrap"

#: Ids no person may take: they name the system, the bootstrap and the simulation user.
RESERVED_IDS: Final = frozenset({SYSTEM, BOOTSTRAP, SIM_USER, SIM_USER.split(" ")[0]})

#: The roles that may administer users (as stored: role values).
ADMIN_ROLES: Final = frozenset({Role.SUPERVISOR.value, Role.QA.value})

_USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_NAME = 100

Now = Callable[[], datetime]


class UserStore(Protocol):
    """The part of :class:`~flexctl.record.store.Store` that users and signatures need."""

    def add_user(self, user: UserRecord) -> None: ...

    def user(self, user_id: str) -> UserRecord: ...

    def users(self) -> list[UserRecord]: ...

    def set_user_disabled(self, user_id: str, disabled: bool) -> None: ...

    def audit(self, record: AuditRecord) -> AuditEntry: ...


class UserError(FlexctlError, ValueError):
    """A user id, printed name, role or administrator does not meet the rules."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def check_user_id(user_id: str) -> str:
    """``user_id`` if it is a valid new id, else UserError saying what is expected."""
    if not isinstance(user_id, str) or _USER_ID.fullmatch(user_id) is None:
        raise UserError(
            f"user id {user_id!r}: expected 1 to 64 lowercase letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    if user_id in RESERVED_IDS:
        raise UserError(f"user id {user_id!r} is reserved (system, bootstrap or simulation)")
    return user_id


def check_printed_name(name: str) -> str:
    """The printed name, stripped; UserError if empty, too long or holding control characters."""
    text = name.strip()
    if not text or len(text) > _MAX_NAME:
        raise UserError(f"a printed name needs 1 to {_MAX_NAME} characters, got {len(text)}")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise UserError(f"printed name {text!r} holds control characters")
    if text == SIM_USER:
        raise UserError("the simulation user's name cannot be a person's printed name")
    return text


def parse_roles(names: Iterable[str | Role]) -> frozenset[Role]:
    """The roles named (at least one); UserError naming an unknown one and the known ones."""
    roles: set[Role] = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(role.value for role in Role)
            raise UserError(f"unknown role {name!r}: expected one of {known}") from None
    if not roles:
        raise UserError("a user needs at least one role")
    return frozenset(roles)


def find_user(store: UserStore, user_id: str) -> UserRecord | None:
    """The user with this id, or None."""
    try:
        return store.user(user_id)
    except RecordError:
        return None


def list_users(store: UserStore) -> list[UserRecord]:
    """Every user, enabled or not, by id."""
    return sorted(store.users(), key=lambda user: user.user_id)


def add_user(
    store: UserStore,
    user_id: str,
    printed_name: str,
    roles: Iterable[str | Role],
    password: str,
    *,
    actor: str,
    reason: str,
    cost: ScryptCost = DEFAULT_COST,
    now: Now = _utcnow,
) -> UserRecord:
    """Add a user and audit it ("user added").

    Args:
        store: where users live.
        user_id: the new, never used id.
        printed_name: the name a signature shows (21 CFR 11.50).
        roles: operator, supervisor, qa (at least one).
        password: the initial password (checked against the policy, stored hashed).
        actor: an enabled supervisor or QA user, or :data:`BOOTSTRAP` on an empty store.
        reason: why (shown in the audit trail).
        cost: scrypt's cost; lower it in tests only.
        now: the UTC clock.

    Raises:
        UserError: a rule is broken (the message says which).
        PasswordPolicyError: the password does not meet the policy.
        RecordError: the id exists already.
    """
    check_user_id(user_id)
    name = check_printed_name(printed_name)
    held = parse_roles(roles)
    existing = store.users()
    if not existing:
        if actor != BOOTSTRAP:
            raise UserError(f"the store has no users yet: the first user is added by {BOOTSTRAP}")
        if Role.QA not in held:
            raise UserError("the first user must hold the qa role, to administer users later")
    else:
        _check_admin(store, actor)
    if any(user.user_id == user_id for user in existing):
        raise RecordError(f"user {user_id!r} exists already; user ids are never reused")
    check_policy(password, user_id)
    when = now()
    record = UserRecord(
        user_id=user_id,
        printed_name=name,
        roles=frozenset(role.value for role in held),
        password_hash=hash_password(password, cost=cost),
        created_utc=when,
    )
    store.add_user(record)
    store.audit(
        AuditRecord(
            utc=when,
            actor=actor,
            action="user added",
            object=f"user:{user_id}",
            old_value=None,
            new_value=describe(record),
            reason=reason,
        )
    )
    return record


def disable_user(
    store: UserStore, user_id: str, *, actor: str, reason: str, now: Now = _utcnow
) -> None:
    """Disable a user (they can no longer sign) and audit it ("user disabled").

    The last enabled supervisor or QA user cannot be disabled: nobody could
    administer users afterwards.
    """
    _set_disabled(store, user_id, True, actor=actor, reason=reason, now=now)


def enable_user(
    store: UserStore, user_id: str, *, actor: str, reason: str, now: Now = _utcnow
) -> None:
    """Enable a disabled user again and audit it ("user enabled")."""
    _set_disabled(store, user_id, False, actor=actor, reason=reason, now=now)


def authenticate_admin(
    store: UserStore, user_id: str, password: str, *, now: Now = _utcnow
) -> UserRecord:
    """The enabled supervisor or QA user ``user_id``, if ``password`` is theirs.

    A refusal is audited ("authentication refused", with the reason; never
    the password) and raised as UserError.
    """
    user = find_user(store, user_id)
    # The audit trail says exactly why; the person is told only "id or password",
    # so nobody learns which ids exist by trying.
    told = "wrong user id or password"
    if user is None:
        dummy_verify(password)  # the same time as for a known user
        why = f"no user {audit_actor(user_id)!r}"
    elif not verify_password(password, user.password_hash):
        why = f"wrong password for {user_id!r}"
    elif user.disabled:
        why = told = f"user {user_id!r} is disabled"
    elif not is_admin(user):
        why = told = f"user {user_id!r} is not a supervisor or qa user"
    else:
        return user
    store.audit(
        AuditRecord(
            utc=now(),
            actor=audit_actor(user_id),
            action="authentication refused",
            object="user administration",
            reason=why,
        )
    )
    raise UserError(f"not allowed to administer users: {told}")


def audit_actor(user_id: str | None) -> str:
    """How the audit trail names whoever typed ``user_id`` in a refused attempt.

    Text that is no valid user id is not recorded: it may be a password typed
    into the id field.
    """
    if user_id is None:
        return "(no user id)"
    if user_id == SIM_USER:
        return SIM_USER
    return user_id if _USER_ID.fullmatch(user_id) else "(invalid user id)"


def is_admin(user: UserRecord) -> bool:
    """True if ``user`` holds a role that administers users (enabled or not)."""
    return bool(ADMIN_ROLES & user.roles)


def describe(user: UserRecord) -> dict[str, JSONValue]:
    """What the audit trail shows of a user: never the password hash."""
    return {
        "user_id": user.user_id,
        "printed_name": user.printed_name,
        "roles": list[JSONValue](sorted(user.roles)),
        "disabled": user.disabled,
    }


def _set_disabled(
    store: UserStore, user_id: str, disabled: bool, *, actor: str, reason: str, now: Now
) -> None:
    verb = "disabled" if disabled else "enabled"
    if not reason.strip():
        raise UserError(f"a reason is needed to have a user {verb}")
    _check_admin(store, actor)
    user = store.user(user_id)
    if user.disabled == disabled:
        raise UserError(f"user {user_id!r} is {verb} already")
    if disabled and _is_last_admin(store, user):
        raise UserError(
            f"user {user_id!r} is the last enabled supervisor or qa user; "
            "enable or add another one first"
        )
    store.set_user_disabled(user_id, disabled)
    store.audit(
        AuditRecord(
            utc=now(),
            actor=actor,
            action=f"user {verb}",
            object=f"user:{user_id}",
            old_value={"disabled": user.disabled},
            new_value={"disabled": disabled},
            reason=reason.strip(),
        )
    )


def _check_admin(store: UserStore, actor: str) -> None:
    admin = find_user(store, actor)
    if admin is None or admin.disabled or not is_admin(admin):
        raise UserError(
            f"{actor!r} is not an enabled supervisor or qa user; only they change users"
        )


def _is_last_admin(store: UserStore, user: UserRecord) -> bool:
    if not is_admin(user):
        return False
    return not any(
        is_admin(other) and not other.disabled and other.user_id != user.user_id
        for other in store.users()
    )
