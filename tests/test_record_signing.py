"""Electronic signatures: sessions, refusals, lockout, binding, and the signing prompter."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from flexctl.clock import VirtualClock
from flexctl.errors import FlexctlError, Where
from flexctl.procedure.loader import parse_procedure
from flexctl.procedure.model import Entry, EntryType, Meaning, Procedure, Role
from flexctl.record.journal import EntryKind, JSONValue, MemoryJournal
from flexctl.record.passwords import hash_password
from flexctl.record.signing import (
    SessionLocked,
    Signature,
    SignatureRefused,
    Signatures,
    SigningSession,
)
from flexctl.record.sqlite_store import SqliteStore
from flexctl.record.store import UserRecord
from flexctl.record.users import BOOTSTRAP, UserStore, add_user, disable_user
from flexctl.supervisor.batch_state import BatchCommand, BatchState
from flexctl.supervisor.executor import Batch, Executor
from flexctl.supervisor.prompts import (
    SIM_USER,
    PromptDeclined,
    Prompter,
    PromptRequest,
    Signer,
    check_answer,
)
from flexctl.supervisor.signing_prompter import (
    Answer,
    SigningPrompter,
    prompt_content,
    prompt_object,
)
from tests.record_fakes import CHEAP, EPOCH, FakeClock, FakeStore, fixed_utc

IDLE = 15 * 60.0
StoreT = TypeVar("StoreT", bound=UserStore)
REQUEST = PromptRequest("B-001", "thaw", "scan_bag", "Scan the apheresis bag barcode")
CONTENT: dict[str, JSONValue] = prompt_content(REQUEST, "BAG-0042")
PASSWORDS = {"qa.lead": "qa-lead-pw", "olga": "olga-pw-1", "sam": "sam-pw-12"}


def people(store: StoreT) -> StoreT:
    """qa.lead (qa), olga (operator), sam (supervisor, operator)."""
    for user_id, name, roles, actor in [
        ("qa.lead", "Quinn Lead", ["qa"], BOOTSTRAP),
        ("olga", "Olga Operator", ["operator"], "qa.lead"),
        ("sam", "Sam Supervisor", ["supervisor", "operator"], "qa.lead"),
    ]:
        add_user(
            store,
            user_id,
            name,
            roles,
            PASSWORDS[user_id],
            actor=actor,
            reason="test",
            cost=CHEAP,
            now=fixed_utc,
        )
    return store


class Rig:
    def __init__(self, max_failures: int = 3) -> None:
        self.store = people(FakeStore())
        self.clock = FakeClock(100.0)
        self.signatures = Signatures(self.store, self.clock, max_failures=max_failures)
        self.session = SigningSession(now=self.clock.now, idle_timeout=IDLE, name="console-1")

    def sign(
        self,
        user_id: str | None,
        password: str,
        *,
        role: Role = Role.OPERATOR,
        meaning: Meaning = Meaning.PERFORMED,
        content: dict[str, JSONValue] = CONTENT,
    ) -> Signature:
        return self.signatures.sign(
            self.session,
            user_id=user_id,
            password=password,
            role=role,
            meaning=meaning,
            object="prompt:thaw/scan_bag",
            content=content,
            batch="B-001",
        )

    def last(self, action: str | None = None) -> dict[str, object]:
        records = [r for r in self.store.audits if action is None or r.action == action]
        return dataclasses.asdict(records[-1])


@pytest.fixture
def rig() -> Rig:
    return Rig()


# -- sessions (11.200) --------------------------------------------------------------------


def test_the_first_signing_needs_user_id_and_password_later_ones_the_password(rig: Rig) -> None:
    with pytest.raises(SignatureRefused, match="enter user id and password"):
        rig.sign(None, "olga-pw-1")
    refused = rig.last()
    assert refused["action"] == "signature refused" and refused["actor"] == "(no user id)"
    assert rig.session.needs_user_id()
    first = rig.sign("olga", "olga-pw-1")
    assert first.user_id == "olga" and rig.session.user_id == "olga"
    assert not rig.session.needs_user_id()
    rig.clock.advance(60)
    second = rig.sign(None, "olga-pw-1", meaning=Meaning.VERIFIED)
    assert (second.user_id, second.printed_name, second.meaning) == (
        "olga",
        "Olga Operator",
        Meaning.VERIFIED,
    )
    with pytest.raises(SignatureRefused, match="wrong user id or password"):
        rig.sign(None, "not-olgas")  # the password only, but it must still be right
    assert rig.session.user_id == "olga"


def test_a_session_ends_after_the_idle_period(rig: Rig) -> None:
    rig.sign("olga", "olga-pw-1")
    rig.clock.advance(IDLE)  # exactly the idle period: still open
    rig.sign(None, "olga-pw-1")  # and this signing starts the idle period again
    rig.clock.advance(IDLE - 1)
    rig.sign(None, "olga-pw-1")
    rig.clock.advance(IDLE + 0.001)
    assert rig.session.user_id is None and rig.session.needs_user_id()
    with pytest.raises(SignatureRefused, match="idle for more than 900 s"):
        rig.sign(None, "olga-pw-1")
    assert rig.sign("olga", "olga-pw-1").user_id == "olga"


def test_close_ends_the_session(rig: Rig) -> None:
    rig.sign("olga", "olga-pw-1")
    rig.session.close()
    with pytest.raises(SignatureRefused, match="enter user id and password"):
        rig.sign(None, "olga-pw-1")


def test_another_user_id_ends_the_session_and_starts_one_for_that_person(rig: Rig) -> None:
    rig.sign("olga", "olga-pw-1")
    with pytest.raises(SignatureRefused):
        rig.sign("sam", "olga-pw-1")
    # Someone else tried: olga's session ended, so her password alone signs nothing now.
    with pytest.raises(SignatureRefused, match="enter user id and password"):
        rig.sign(None, "olga-pw-1")
    assert rig.sign("sam", "sam-pw-12", role=Role.SUPERVISOR).user_id == "sam"
    assert rig.sign(None, "sam-pw-12").user_id == "sam"
    with pytest.raises(SignatureRefused):
        rig.sign(None, "olga-pw-1")
    assert rig.sign("sam", "sam-pw-12").user_id == "sam"  # the same id again is fine


# -- refusals (11.300) ----------------------------------------------------------------------


def test_a_wrong_password_is_refused_and_audited_without_the_password(rig: Rig) -> None:
    with pytest.raises(SignatureRefused, match="wrong user id or password") as caught:
        rig.sign("olga", "guess-one")
    assert caught.value.reason == "wrong password for 'olga'"
    assert isinstance(caught.value, FlexctlError)
    record = rig.last()
    assert record["action"] == "signature refused" and record["actor"] == "olga"
    assert record["object"] == "prompt:thaw/scan_bag" and record["batch"] == "B-001"
    assert record["reason"] == "wrong password for 'olga'"
    assert record["new_value"] == {"role": "operator", "meaning": "performed", "failures": 1}
    assert record["process_time"] == 100.0 and record["utc"] == EPOCH + timedelta(seconds=100)
    assert "guess-one" not in repr(rig.store.audits)
    assert rig.signatures.failures("olga") == 1 and rig.session.user_id is None


def test_an_unknown_user_is_refused_like_a_wrong_password(rig: Rig) -> None:
    with pytest.raises(SignatureRefused, match="wrong user id or password") as caught:
        rig.sign("ghost", "olga-pw-1")
    assert caught.value.reason == "no user 'ghost'"
    assert rig.last()["reason"] == "no user 'ghost'"
    with pytest.raises(SignatureRefused):
        rig.sign("Typed The Password!", "x")
    assert rig.last()["actor"] == "(invalid user id)"
    assert "Typed The Password!" not in repr(rig.store.audits)


def test_a_role_the_user_lacks_is_refused_and_audited(rig: Rig) -> None:
    with pytest.raises(SignatureRefused, match="'olga' does not hold the qa role"):
        rig.sign("olga", "olga-pw-1", role=Role.QA, meaning=Meaning.APPROVED)
    record = rig.last()
    assert record["action"] == "signature refused" and record["actor"] == "olga"
    assert record["reason"] == "user 'olga' does not hold the qa role (holds operator)"
    assert record["new_value"] == {"role": "qa", "meaning": "approved"}
    # Not a failed authentication, and nothing was signed: no session either.
    assert rig.signatures.failures("olga") == 0 and rig.session.user_id is None
    assert "signed" not in rig.store.actions()


def test_a_disabled_user_is_refused(rig: Rig) -> None:
    rig.sign("olga", "olga-pw-1")
    disable_user(rig.store, "olga", actor="qa.lead", reason="left", now=fixed_utc)
    with pytest.raises(SignatureRefused, match="'olga' is disabled"):
        rig.sign(None, "olga-pw-1")  # even inside her open session
    with pytest.raises(SignatureRefused, match="wrong user id or password"):
        rig.sign("olga", "wrong-pw")  # without her password nobody learns she is disabled
    assert rig.last()["reason"] == "wrong password for 'olga'"


def test_after_three_failures_the_session_is_locked_and_that_is_audited(rig: Rig) -> None:
    for _ in range(2):
        with pytest.raises(SignatureRefused) as caught:
            rig.sign("olga", "guess")
        assert not isinstance(caught.value, SessionLocked)
    with pytest.raises(SessionLocked, match="session locked after 3 consecutive"):
        rig.sign("olga", "guess")
    assert rig.session.locked
    assert rig.store.actions()[-2:] == ["signature refused", "session locked"]
    locked = rig.last("session locked")
    assert locked["actor"] == "olga" and locked["new_value"] == {
        "role": "operator",
        "meaning": "performed",
        "session": "console-1",
    }
    # Locked: even the right password of anyone signs nothing until the session is closed.
    with pytest.raises(SessionLocked, match="close it first"):
        rig.sign("olga", "olga-pw-1")
    with pytest.raises(SessionLocked):
        rig.sign("sam", "sam-pw-12")
    rig.session.close()
    # The count is the user id's, not the session's: one more failure locks again.
    with pytest.raises(SessionLocked):
        rig.sign("olga", "guess")
    rig.session.close()
    assert rig.sign("olga", "olga-pw-1").user_id == "olga"
    assert rig.signatures.failures("olga") == 0


def test_only_consecutive_failures_lock(rig: Rig) -> None:
    for password in ["guess", "guess", "olga-pw-1", "guess", "guess"]:
        try:
            rig.sign("olga", password)
        except SessionLocked:  # pragma: no cover - the assertion below says so
            pytest.fail("two failures, a success, two failures must not lock")
        except SignatureRefused:
            pass
    assert not rig.session.locked and rig.signatures.failures("olga") == 2


def test_the_lock_count_is_configurable() -> None:
    rig = Rig(max_failures=1)
    with pytest.raises(SessionLocked):
        rig.sign("olga", "guess")
    with pytest.raises(ValueError):
        Signatures(rig.store, rig.clock, max_failures=0)


@pytest.mark.parametrize("user_id", [SIM_USER, "sim-auto-signer"])
def test_the_simulation_user_can_never_sign(rig: Rig, user_id: str) -> None:
    # Even a store that somehow holds it (the user rules keep it out) cannot make it sign.
    rig.store.add_user(
        UserRecord(
            user_id=user_id,
            printed_name=SIM_USER,
            roles=frozenset({"operator", "supervisor", "qa"}),
            password_hash=hash_password("sim-password", cost=CHEAP),
            created_utc=EPOCH,
        )
    )
    rig.sign("olga", "olga-pw-1")
    with pytest.raises(SignatureRefused, match="simulation user cannot sign"):
        rig.sign(user_id, "sim-password")
    assert rig.last()["actor"] == SIM_USER or rig.last()["actor"] == user_id
    assert rig.last()["action"] == "signature refused"
    assert rig.session.user_id == "olga"  # the attempt did not take over olga's session


def test_a_record_that_cannot_be_encoded_is_refused_not_a_crash(rig: Rig) -> None:
    with pytest.raises(SignatureRefused, match="cannot be signed"):
        rig.sign("olga", "olga-pw-1", content=prompt_content(REQUEST, float("nan")))
    assert rig.last()["action"] == "signature refused"


def test_a_malformed_stored_hash_is_a_refusal_not_a_crash(rig: Rig) -> None:
    rig.store.add_user(
        UserRecord("broken", "Bro Ken", frozenset({"operator"}), "md5$abc", created_utc=EPOCH)
    )
    with pytest.raises(SignatureRefused, match="stored password hash of 'broken' is unusable"):
        rig.sign("broken", "whatever-pw")


# -- the signature and its binding (11.50, 11.70) ---------------------------------------------


def test_a_signature_shows_who_when_what_and_its_meaning(rig: Rig) -> None:
    rig.clock.advance(42.5)
    signature = rig.sign("sam", "sam-pw-12", role=Role.SUPERVISOR, meaning=Meaning.VERIFIED)
    assert signature.user_id == "sam" and signature.printed_name == "Sam Supervisor"
    assert signature.meaning is Meaning.VERIFIED and signature.role is Role.SUPERVISOR
    assert signature.utc == EPOCH + timedelta(seconds=142.5)
    assert signature.process_time == 142.5 and signature.object == "prompt:thaw/scan_bag"
    assert signature.signer == Signer("sam", "Sam Supervisor")
    assert signature.manifestation() == (
        "Sam Supervisor (sam), 2025-03-01 08:02:22 UTC, verified as supervisor"
    )
    signed = rig.last()
    assert signed["action"] == "signed" and signed["actor"] == "sam"
    assert signed["object"] == "prompt:thaw/scan_bag" and signed["batch"] == "B-001"
    assert signed["process_time"] == 142.5 and signed["reason"] == "verified"
    assert signed["new_value"] == {
        "printed_name": "Sam Supervisor",
        "meaning": "verified",
        "role": "supervisor",
        "record_hash": signature.record_hash,
        "session": "console-1",
    }


def test_the_record_hash_is_sha256_of_the_canonical_record_and_signature(rig: Rig) -> None:
    signature = rig.sign("olga", "olga-pw-1")
    document = {
        "record": {
            "batch": "B-001",
            "unit_procedure": "thaw",
            "step": "scan_bag",
            "text": "Scan the apheresis bag barcode",
            "value": "BAG-0042",
        },
        "signature": {
            "user_id": "olga",
            "printed_name": "Olga Operator",
            "meaning": "performed",
            "role": "operator",
            "utc": "2025-03-01T08:01:40.000000+00:00",
            "process_time": 100.0,
            "object": "prompt:thaw/scan_bag",
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert signature.record_hash == hashlib.sha256(text.encode()).hexdigest()


def test_the_binding_detects_any_change_to_the_record_or_the_signature(rig: Rig) -> None:
    signature = rig.sign("olga", "olga-pw-1")
    assert signature.verify_binding(CONTENT)
    assert signature.verify_binding(dict(reversed(list(CONTENT.items()))))  # order is not content
    for key, changed in [
        ("value", "BAG-0043"),
        ("batch", "B-002"),
        ("step", "other"),
        ("text", "Scan the bag"),
        ("unit_procedure", "seed"),
    ]:
        assert not signature.verify_binding({**CONTENT, key: changed}), key
    assert not signature.verify_binding({**CONTENT, "extra": 1})
    assert not signature.verify_binding({**CONTENT, "value": float("nan")})
    for forged in [
        dataclasses.replace(signature, meaning=Meaning.APPROVED),
        dataclasses.replace(signature, user_id="sam", printed_name="Sam Supervisor"),
        dataclasses.replace(signature, utc=signature.utc + timedelta(seconds=1)),
        dataclasses.replace(signature, process_time=signature.process_time + 1),
        dataclasses.replace(signature, role=Role.QA),
        dataclasses.replace(signature, object="prompt:thaw/other"),
    ]:
        assert not forged.verify_binding(CONTENT), forged
    # Copied onto another record (11.70), the same signature does not verify.
    other = prompt_content(PromptRequest("B-002", "thaw", "scan_bag", REQUEST.text), "BAG-0042")
    assert not signature.verify_binding(other)


def test_the_signing_flow_on_the_sqlite_store(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    with SqliteStore(tmp_path / "x.db") as store:
        people(store)
        signatures = Signatures(store, clock)
        session = SigningSession(now=clock.now, idle_timeout=IDLE, name="console-1")

        def sign(user_id: str | None, password: str, role: Role = Role.OPERATOR) -> Signature:
            return signatures.sign(
                session,
                user_id=user_id,
                password=password,
                role=role,
                meaning=Meaning.PERFORMED,
                object="prompt:thaw/scan_bag",
                content=CONTENT,
                batch="B-001",
            )

        with pytest.raises(SignatureRefused):
            sign(None, "olga-pw-1")
        first = sign("olga", "olga-pw-1")
        clock.advance(30)
        second = sign(None, "olga-pw-1")
        with pytest.raises(SignatureRefused, match="does not hold the qa role"):
            sign(None, "olga-pw-1", Role.QA)
        for _ in range(2):
            with pytest.raises(SignatureRefused):
                sign("sam", "guess")
        with pytest.raises(SessionLocked):
            sign("sam", "guess")
        session.close()
        disable_user(store, "olga", actor="qa.lead", reason="left", now=fixed_utc)
        with pytest.raises(SignatureRefused, match="'olga' is disabled"):
            sign("olga", "olga-pw-1")
        clock.advance(IDLE + 1)
        third = sign("sam", "sam-pw-12", Role.SUPERVISOR)
        trail = store.audit_entries(batch="B-001")
        assert store.verify().ok
    assert [e.record.action for e in trail] == [
        "signature refused",
        "signed",
        "signed",
        "signature refused",
        "signature refused",
        "signature refused",
        "signature refused",
        "session locked",
        "signature refused",
        "signed",
    ]
    signed = [e.record for e in trail if e.record.action == "signed"]
    assert [r.new_value["record_hash"] for r in signed] == [  # type: ignore[index, call-overload]
        first.record_hash,
        second.record_hash,
        third.record_hash,
    ]
    assert [(r.actor, r.process_time) for r in signed] == [
        ("olga", 100.0),
        ("olga", 130.0),
        ("sam", 130.0 + IDLE + 1),
    ]
    assert all(s.verify_binding(CONTENT) for s in (first, second, third))
    assert "guess" not in repr(trail) and "pw-1" not in repr(trail)


def test_sessions_need_a_positive_idle_period() -> None:
    with pytest.raises(ValueError):
        SigningSession(idle_timeout=0)
    assert SigningSession().name.startswith("session-")


# -- the signing prompter ---------------------------------------------------------------------


class Person:
    """An ask callable that answers from a script and remembers what it was asked."""

    def __init__(self, answers: list[Answer | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[PromptRequest, Role, Meaning, Entry | None]] = []

    async def __call__(
        self, prompt: PromptRequest, role: Role, meaning: Meaning, entry: Entry | None
    ) -> Answer | None:
        self.asked.append((prompt, role, meaning, entry))
        return self.answers.pop(0)


def prompter_for(rig: Rig, answers: list[Answer | None]) -> tuple[SigningPrompter, Person]:
    person = Person(answers)
    return SigningPrompter(rig.signatures, rig.session, person), person


async def test_the_prompter_returns_the_value_and_the_signer(rig: Rig) -> None:
    prompter, person = prompter_for(rig, [("olga", "olga-pw-1", "BAG-0042")])
    assert isinstance(prompter, Prompter)
    entry = Entry(EntryType.TEXT, Where("test.yaml"), pattern="^[A-Z0-9-]{6,}$")
    value, signer = await prompter.ask(REQUEST, Role.OPERATOR, Meaning.PERFORMED, entry)
    assert (value, signer) == ("BAG-0042", Signer("olga", "Olga Operator"))
    assert not signer.simulated and check_answer(entry, value) is None
    assert person.asked == [(REQUEST, Role.OPERATOR, Meaning.PERFORMED, entry)]
    [signature] = prompter.signed
    assert signature.object == prompt_object(REQUEST) == "prompt:thaw/scan_bag"
    assert signature.verify_binding(prompt_content(REQUEST, "BAG-0042"))
    assert not signature.verify_binding(prompt_content(REQUEST, "BAG-0043"))


async def test_the_prompter_asks_again_after_a_refusal_and_says_why(rig: Rig) -> None:
    prompter, _ = prompter_for(rig, [("olga", "typo", "BAG-0042"), ("olga", "olga-pw-1", "BAG-1")])
    seen: list[str] = []
    real_ask = prompter._ask

    async def watching(*args: object) -> Answer | None:
        seen.append(str(prompter.last_refusal))
        return await real_ask(*args)  # type: ignore[arg-type]

    prompter._ask = watching
    value, signer = await prompter.ask(REQUEST, Role.OPERATOR, Meaning.PERFORMED, None)
    assert (value, signer.user) == ("BAG-1", "olga")
    assert seen == ["None", "wrong user id or password"]


async def test_the_prompter_declines_on_refusal_to_answer(rig: Rig) -> None:
    prompter, _ = prompter_for(rig, [None])
    with pytest.raises(PromptDeclined, match="scan_bag: the person declined"):
        await prompter.ask(REQUEST, Role.OPERATOR, Meaning.PERFORMED, None)
    assert rig.store.actions().count("signed") == 0


async def test_the_prompter_declines_after_its_attempts(rig: Rig) -> None:
    answers: list[Answer | None] = [("olga", "olga-pw-1", True)] * 3
    prompter, person = prompter_for(rig, answers)
    with pytest.raises(
        PromptDeclined, match=r"not signed after 3 attempts: .*does not hold the qa"
    ):
        await prompter.ask(REQUEST, Role.QA, Meaning.APPROVED, None)
    assert len(person.asked) == 3 and person.answers == []


async def test_the_prompter_declines_at_once_when_the_session_locks(rig: Rig) -> None:
    answers: list[Answer | None] = [("olga", "guess", "BAG-0042")] * 4
    prompter, person = prompter_for(rig, answers)
    with pytest.raises(PromptDeclined, match="session locked") as caught:
        await prompter.ask(REQUEST, Role.OPERATOR, Meaning.PERFORMED, None)
    assert isinstance(caught.value.__cause__, SessionLocked)
    assert len(person.asked) == 3 and isinstance(prompter.last_refusal, SessionLocked)


def test_the_prompter_needs_an_attempt(rig: Rig) -> None:
    with pytest.raises(ValueError):
        SigningPrompter(rig.signatures, rig.session, Person([]), attempts=0)


# -- end to end with the executor ---------------------------------------------------------------

PROMPTS = """\
procedure: signed
version: "1"
unit_procedures:
  - name: main
    steps:
      - id: count
        prompt: Enter the cell count
        entry: {type: int, limits: [1, 10]}
        role: operator
      - {id: check, prompt: Confirm the count, role: supervisor, meaning: verified}
"""


def make_procedure(text: str) -> Procedure:
    loaded = parse_procedure(textwrap.dedent(text), "test.yaml")
    assert not loaded.problems, [str(p) for p in loaded.problems]
    assert loaded.procedure is not None
    return loaded.procedure


@pytest.fixture
async def clock() -> AsyncIterator[VirtualClock]:
    the_clock = VirtualClock(epoch=EPOCH)
    yield the_clock
    await the_clock.aclose()


def executor_for(
    clock: VirtualClock, answers: list[Answer | None]
) -> tuple[Executor, SigningPrompter, FakeStore, MemoryJournal]:
    store = people(FakeStore())
    session = SigningSession(now=clock.now, idle_timeout=IDLE, name="console-1")
    prompter = SigningPrompter(Signatures(store, clock), session, Person(answers))
    journal = MemoryJournal()
    batch = Batch.create("B-001", make_procedure(PROMPTS))
    executor = Executor(batch, {}, clock=clock, journal=journal, prompter=prompter)
    return executor, prompter, store, journal


async def test_a_signed_run_end_to_end(clock: VirtualClock) -> None:
    answers: list[Answer | None] = [
        ("olga", "olga-pw-1", 42),  # signed as entered, then rejected by the executor
        (None, "olga-pw-x", 7),  # a typo: refused, asked again
        (None, "olga-pw-1", 7),  # within olga's session: the password only
        ("sam", "sam-pw-12", True),  # someone else: id and password
    ]
    executor, prompter, store, journal = executor_for(clock, answers)
    assert await executor.run(actor="olga") is BatchState.Complete
    prompts = [e for e in journal.entries() if e.kind is EntryKind.PROMPT]
    rejected = [e for e in prompts if "rejected" in e.payload]
    assert [(e.actor, e.payload["rejected"]) for e in rejected] == [("olga", 42)]
    signatures = [e for e in journal.entries() if e.kind is EntryKind.SIGNATURE]
    assert [
        (e.step, e.actor, e.payload["printed_name"], e.payload["value"]) for e in signatures
    ] == [
        ("count", "olga", "Olga Operator", 7),
        ("check", "sam", "Sam Supervisor", True),
    ]
    assert [e.payload["simulated"] for e in signatures] == [False, False]
    # The prompter's signatures bind exactly what the executor accepted.
    made = prompter.signed
    assert [(s.user_id, s.meaning, s.role) for s in made] == [
        ("olga", Meaning.PERFORMED, Role.OPERATOR),
        ("olga", Meaning.PERFORMED, Role.OPERATOR),
        ("sam", Meaning.VERIFIED, Role.SUPERVISOR),
    ]
    count = PromptRequest("B-001", "main", "count", "Enter the cell count")
    assert made[0].verify_binding(prompt_content(count, 42))
    assert made[1].verify_binding(prompt_content(count, 7))
    assert not made[1].verify_binding(prompt_content(count, 8))
    check = PromptRequest("B-001", "main", "check", "Confirm the count")
    assert made[2].verify_binding(prompt_content(check, True))
    actions = [r.action for r in store.audits if r.batch == "B-001"]
    assert actions == ["signed", "signature refused", "signed", "signed"]
    assert all(r.process_time is not None for r in store.audits if r.batch == "B-001")


async def test_a_declined_prompt_holds_the_batch(clock: VirtualClock) -> None:
    executor, _, store, journal = executor_for(clock, [None])
    run = asyncio.get_running_loop().create_task(executor.run(actor="olga"))
    assert await executor.wait_for(BatchState.Held) is BatchState.Held
    deviation = next(e for e in journal.entries() if e.kind is EntryKind.DEVIATION)
    assert deviation.payload["error_type"] == "PromptDeclined"
    executor.command(BatchCommand.Abort, actor="olga", reason="test")
    assert await run is BatchState.Aborted
    assert "signed" not in store.actions()


async def test_a_locked_session_holds_the_batch(clock: VirtualClock) -> None:
    answers: list[Answer | None] = [("olga", "nope-nope", 5)] * 3
    executor, _, store, journal = executor_for(clock, answers)
    run = asyncio.get_running_loop().create_task(executor.run(actor="olga"))
    assert await executor.wait_for(BatchState.Held) is BatchState.Held
    deviation = next(e for e in journal.entries() if e.kind is EntryKind.DEVIATION)
    assert "session locked" in str(deviation.payload)
    assert store.actions()[-1] == "session locked"
    assert not any(e.kind is EntryKind.SIGNATURE for e in journal.entries())
    executor.command(BatchCommand.Abort, actor="olga", reason="test")
    assert await run is BatchState.Aborted
