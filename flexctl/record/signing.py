"""Electronic signatures of people: sessions, checks, binding and audit (21 CFR Part 11).

The rules this module keeps:

- 11.200(a)(1): the first signing of a :class:`SigningSession` (one person's
  continuous time at a console) needs user id and password; later signings
  in the same session the password only. The session ends on
  :meth:`SigningSession.close`, after an idle period, or when another user id
  is entered; the next signing then needs both again.
- 11.300(d): a refused signing (unknown or disabled user, wrong password, a
  role the user lacks) is audited ("signature refused", with the reason, never
  the password). After ``max_failures`` consecutive failed authentications of
  one user id the session is locked ("session locked") until it is closed.
- 11.50 / 11.70: a :class:`Signature` shows printed name, UTC time and
  meaning, and carries ``record_hash``, the SHA-256 of what was signed
  together with the signature's own fields, so
  :meth:`Signature.verify_binding` shows that it still belongs to its record.
- The simulation user (:data:`SIM_USER`) never signs here: simulated runs use
  :class:`~flexctl.supervisor.prompts.AutoSigner`.

:class:`SigningPrompter` is the :class:`~flexctl.supervisor.prompts.Prompter`
the executor uses when a person answers: it asks through an injected async
callable (the console, a test) and signs each answer through
:class:`Signatures`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, NoReturn, Protocol, TypeAlias

from flexctl.errors import FlexctlError
from flexctl.procedure.model import Meaning, Role
from flexctl.profile import Value
from flexctl.record.canonical import sha256_hex, utc_text
from flexctl.record.journal import JSONValue
from flexctl.record.passwords import PasswordHashError, dummy_verify, verify_password
from flexctl.record.signers import SIM_USER, Signer
from flexctl.record.store import AuditRecord
from flexctl.record.users import UserStore, audit_actor, find_user

#: Seconds without a signing after which a session ends (process seconds of its clock).
DEFAULT_IDLE_TIMEOUT: Final = 15 * 60.0
DEFAULT_MAX_FAILURES: Final = 3

# Ids that name the simulation user: the actor name and its id part.
_SIMULATION_IDS: Final = frozenset({SIM_USER, SIM_USER.split(" ")[0]})


class SignatureRefused(FlexctlError):
    """A signing was refused; the message is what the person may be told.

    ``reason`` is the exact reason, as the audit trail records it.
    """

    def __init__(self, told: str, *, reason: str | None = None) -> None:
        self.reason = reason or told
        super().__init__(told)


class SessionLocked(SignatureRefused):
    """The session is locked after too many failed signings; close it to go on."""


def canonical_sha256(document: Mapping[str, JSONValue]) -> str:
    """SHA-256 (hex) of the canonical encoding of ``document``.

    The one place signatures hash: the record's own canonical encoding
    (:func:`flexctl.record.canonical.sha256_hex`), so a signature's hash and
    the chains' hashes are computed the same way.

    Raises:
        CanonicalError: ``document`` holds a non-finite number or is not JSON data
            (a ValueError).
    """
    return sha256_hex(document)


@dataclass(frozen=True)
class Signature:
    """A person's signature of one record (21 CFR 11.50, 11.70).

    ``object`` names what was signed (``prompt:thaw/scan_bag``); ``record_hash``
    is :func:`canonical_sha256` of ``{"record": <what was signed>, "signature":
    <this signature's fields>}``.
    """

    user_id: str
    printed_name: str
    meaning: Meaning
    role: Role
    utc: datetime
    process_time: float
    object: str
    record_hash: str

    def fields(self) -> dict[str, JSONValue]:
        """The signature's own fields, as they are hashed (everything but the hash)."""
        return {
            "user_id": self.user_id,
            "printed_name": self.printed_name,
            "meaning": self.meaning.value,
            "role": self.role.value,
            "utc": utc_text(self.utc),
            "process_time": self.process_time,
            "object": self.object,
        }

    def verify_binding(self, content: Mapping[str, JSONValue]) -> bool:
        """True if this signature was made over exactly ``content`` (nothing changed since)."""
        try:
            digest = binding_hash(content, self.fields())
        except ValueError:
            return False
        return hmac.compare_digest(digest, self.record_hash)

    @property
    def signer(self) -> Signer:
        """Who signed, as the executor journals it."""
        return Signer(self.user_id, self.printed_name)

    def manifestation(self) -> str:
        """The line a display or printout shows (11.50): name, UTC time, meaning."""
        when = self.utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.printed_name} ({self.user_id}), {when}, {self.meaning.value} as {self.role}"


def binding_hash(content: Mapping[str, JSONValue], fields: Mapping[str, JSONValue]) -> str:
    """The hash that binds a signature's ``fields`` to the ``content`` it signs."""
    return canonical_sha256({"record": dict(content), "signature": dict(fields)})


class SigningSession:
    """One person's continuous signing session at one console (21 CFR 11.200).

    Args:
        now: the clock idle time is measured on (seconds; monotonic).
        idle_timeout: seconds without a signing after which the session ends.
        name: names the session in the audit trail (default: a random one).
    """

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.monotonic,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        name: str | None = None,
    ) -> None:
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 seconds, got {idle_timeout!r}")
        self._now = now
        self.idle_timeout = float(idle_timeout)
        self.name = name or f"session-{secrets.token_hex(4)}"
        self._user: str | None = None
        self._last = 0.0
        self._locked = False

    @property
    def user_id(self) -> str | None:
        """The person of this session, or None before its first signing (or once it ended)."""
        self._expire()
        return self._user

    @property
    def locked(self) -> bool:
        return self._locked

    def needs_user_id(self) -> bool:
        """True if the next signing needs the user id as well as the password."""
        return self.user_id is None

    def close(self) -> None:
        """End the session (logout); a lock ends with it."""
        self._user = None
        self._locked = False

    def _expire(self) -> None:
        if self._user is not None and self._now() - self._last > self.idle_timeout:
            self._user = None

    def _signed(self, user_id: str) -> None:
        self._user = user_id
        self._last = self._now()

    def _lock(self) -> None:
        self._user = None
        self._locked = True


class TimeSource(Protocol):
    """What signing asks of a clock (:class:`flexctl.clock.Clock` has both)."""

    def now(self) -> float: ...

    def utcnow(self) -> datetime: ...


class Signatures:
    """Checks and records people's signatures against the users of ``store``.

    Args:
        store: the users and the audit trail.
        clock: process time and UTC time of each signature.
        max_failures: consecutive failed authentications of one user id that lock a session.
    """

    def __init__(
        self, store: UserStore, clock: TimeSource, *, max_failures: int = DEFAULT_MAX_FAILURES
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        self.store = store
        self.clock = clock
        self.max_failures = max_failures
        self._failures: dict[str, int] = {}

    def failures(self, user_id: str) -> int:
        """Consecutive failed authentications of ``user_id`` (0 after a success)."""
        return self._failures.get(user_id, 0)

    def sign(
        self,
        session: SigningSession,
        *,
        user_id: str | None,
        password: str,
        role: Role,
        meaning: Meaning,
        object: str,
        content: Mapping[str, JSONValue],
        batch: str = "",
    ) -> Signature:
        """Sign ``content`` as the session's person (or ``user_id``, starting a session).

        Args:
            session: the console session.
            user_id: required on a session's first signing; another id than the
                session's ends it and starts one for that person.
            password: the person's password (never stored or audited).
            role: the role the signing asks for; the user must hold it.
            meaning: performed, verified or approved.
            object: what is signed, as text (``prompt:thaw/scan_bag``).
            content: what is signed, as JSON data (bound by ``record_hash``).
            batch: the batch, for the audit trail.

        Raises:
            SessionLocked: the session is locked, or this failure locked it.
            SignatureRefused: any other refusal (audited).
        """
        attempt = _Attempt(
            self,
            session,
            user_id=user_id,
            role=role,
            meaning=meaning,
            object=object,
            batch=batch,
        )
        if session.locked:
            attempt.refuse(
                f"session {session.name} is locked after failed signings; close it first",
                locked=True,
            )
        try:
            canonical_sha256(content)
        except ValueError as exc:
            attempt.refuse(f"the record cannot be signed: {exc}")
        if user_id in _SIMULATION_IDS:
            attempt.refuse("the simulation user cannot sign for a person; it signs simulated runs")
        signer = session.user_id
        if user_id is not None and user_id != signer:
            session.close()  # someone else at the console: the last person's session ends
            signer = user_id
        if signer is None:
            attempt.refuse(
                "no open session (none yet, closed, or idle for more than "
                f"{session.idle_timeout:g} s): enter user id and password"
            )
        attempt.user_id = signer
        user = find_user(self.store, signer)
        if user is None:
            dummy_verify(password)  # as slow as a known user: timing does not tell ids apart
            attempt.fail(f"no user {audit_actor(signer)!r}")
        try:
            matches = verify_password(password, user.password_hash)
        except PasswordHashError as exc:
            attempt.refuse(f"the stored password hash of {signer!r} is unusable: {exc}")
        if not matches:
            attempt.fail(f"wrong password for {signer!r}")
        if user.disabled:
            attempt.fail(f"user {signer!r} is disabled", told=f"user {signer!r} is disabled")
        self._failures.pop(signer, None)
        if role.value not in user.roles:
            held = ", ".join(sorted(user.roles))
            attempt.refuse(f"user {signer!r} does not hold the {role.value} role (holds {held})")
        signature = self._make(
            user_id=user.user_id,
            printed_name=user.printed_name,
            role=role,
            meaning=meaning,
            object=object,
            content=content,
        )
        session._signed(signer)
        self.store.audit(
            AuditRecord(
                utc=signature.utc,
                actor=signer,
                action="signed",
                object=object,
                new_value={
                    "printed_name": signature.printed_name,
                    "meaning": meaning.value,
                    "role": role.value,
                    "record_hash": signature.record_hash,
                    "session": session.name,
                },
                reason=meaning.value,
                batch=batch,
                process_time=signature.process_time,
            )
        )
        return signature

    def _make(
        self,
        *,
        user_id: str,
        printed_name: str,
        role: Role,
        meaning: Meaning,
        object: str,
        content: Mapping[str, JSONValue],
    ) -> Signature:
        unsigned = Signature(
            user_id=user_id,
            printed_name=printed_name,
            meaning=meaning,
            role=role,
            utc=self.clock.utcnow().astimezone(UTC),
            process_time=float(self.clock.now()),
            object=object,
            record_hash="",
        )
        digest = binding_hash(content, unsigned.fields())
        return replace(unsigned, record_hash=digest)

    def _failed(self, user_id: str) -> int:
        count = self._failures.get(user_id, 0) + 1
        self._failures[user_id] = count
        return count


class _Attempt:
    """One signing attempt: refuses it, audits why, and counts failed authentications."""

    def __init__(
        self,
        service: Signatures,
        session: SigningSession,
        *,
        user_id: str | None,
        role: Role,
        meaning: Meaning,
        object: str,
        batch: str,
    ) -> None:
        self.service = service
        self.session = session
        self.user_id = user_id
        self.role = role
        self.meaning = meaning
        self.object = object
        self.batch = batch

    def fail(self, reason: str, *, told: str = "wrong user id or password") -> NoReturn:
        """A failed authentication: counted, audited, and the session locked at the limit."""
        assert self.user_id is not None
        count = self.service._failed(self.user_id)
        self._audit("signature refused", reason, {"failures": count})
        if count >= self.service.max_failures:
            self.session._lock()
            why = f"{count} consecutive failed signings of {audit_actor(self.user_id)!r}"
            self._audit("session locked", why, {"session": self.session.name})
            raise SessionLocked(f"{told}; session locked after {why}", reason=reason)
        raise SignatureRefused(told, reason=reason)

    def refuse(self, reason: str, *, locked: bool = False) -> NoReturn:
        """A refusal that is not a failed authentication: audited, not counted."""
        self._audit("signature refused", reason, None)
        raise (SessionLocked if locked else SignatureRefused)(reason)

    def _audit(self, action: str, reason: str, extra: Mapping[str, JSONValue] | None) -> None:
        clock = self.service.clock
        new_value: dict[str, JSONValue] = {"role": self.role.value, "meaning": self.meaning.value}
        new_value.update(extra or {})
        self.service.store.audit(
            AuditRecord(
                utc=clock.utcnow().astimezone(UTC),
                actor=audit_actor(self.user_id),
                action=action,
                object=self.object,
                new_value=new_value,
                reason=reason,
                batch=self.batch,
                process_time=float(clock.now()),
            )
        )


# -- the prompter ------------------------------------------------------------------------

#: What a person answers: their user id (None to sign within the session), password, value.
Answer: TypeAlias = tuple[str | None, str, Value]
#: Asks a person; None means they decline to answer.
