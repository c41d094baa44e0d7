"""The protocol-free parts of the northbound server: arguments, view, taps, prompter, methods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import pytest
from test_executor import EPOCH, Rig, close_rig, make_procedure, open_rig

from flexctl.clock import VirtualClock
from flexctl.errors import Where
from flexctl.line_runtime import DeviceDescription
from flexctl.northbound.calls import ARGUMENTS, Caller, CallError, parse_arguments
from flexctl.northbound.methods import BatchMethods
from flexctl.northbound.observe import JournalTap, SampleTap
from flexctl.northbound.packml import PACKML, packml_code
from flexctl.northbound.progress import BatchProgress
from flexctl.northbound.prompter import AnswerRejected, NorthboundPrompter, NoSuchPrompt
from flexctl.northbound.roles import Action
from flexctl.northbound.runner import BatchRunner
from flexctl.northbound.view import Kind, LineView, fit, kind_of_signal
from flexctl.procedure.model import Entry, EntryType, Meaning, Role
from flexctl.profile import parse_profile
from flexctl.record.journal import EntryKind, JournalEntry, MemoryJournal
from flexctl.record.signing import SignatureRefused, Signatures, SigningSession
from flexctl.record.store import Sample
from flexctl.record.users import BOOTSTRAP, add_user, disable_user
from flexctl.supervisor.batch_state import BatchState
from flexctl.supervisor.prompts import PromptRequest
from flexctl.yamlpos import load_text
from tests.record_fakes import CHEAP, FakeClock, FakeStore

S = BatchState
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


# -- arguments -----------------------------------------------------------------------------


def test_optional_arguments_may_be_left_out_and_required_ones_not() -> None:
    assert parse_arguments(Action.Hold, []) == [""]
    assert parse_arguments(Action.Restart, ["done"]) == ["done", ""]
    assert parse_arguments(Action.ShelveAlarm, ["TAH", "why", 60]) == ["TAH", "why", 60.0]
    for raw, status in (
        ([], "BadArgumentsMissing"),
        (["a", "b"], "BadTooManyArguments"),
        ([1], "BadTypeMismatch"),
    ):
        with pytest.raises(CallError) as refused:
            parse_arguments(Action.Abort, raw)
        assert refused.value.status == status
    with pytest.raises(CallError, match="finite"):
        parse_arguments(Action.ShelveAlarm, ["TAH", "why", float("nan")])
    with pytest.raises(CallError) as refused:
        parse_arguments(Action.ShelveAlarm, ["TAH", "why", True])  # a bool is no number here
    assert refused.value.status == "BadTypeMismatch"
    assert parse_arguments(Action.AnswerPrompt, ["s", True, "pw"]) == ["s", True, "pw"]


def test_every_method_has_at_most_trailing_optional_arguments() -> None:
    for action, args in ARGUMENTS.items():
        flags = [arg.required for arg in args]
        assert flags == sorted(flags, reverse=True), action


def test_a_refusal_carries_a_bad_status() -> None:
    with pytest.raises(ValueError, match="Bad status"):
        CallError("Good", "fine")


# -- what is shown ---------------------------------------------------------------------------


def description(name: str, state: str = "connected") -> DeviceDescription:
    return DeviceDescription(name, "fake", "fake.memory", "serial", "twin", "memory://x", state)


def test_the_line_view_keeps_kinds_and_shows_bad_for_a_value_of_another_type() -> None:
    profile = parse_profile(
        load_text(
            "device: d\ntransport: serial\nsignals:\n"
            "  t: {type: float32}\n  n: {type: uint16}\n  lit: {type: bool}\n"
            "  mode: {type: uint16, enum: [a, b]}\n  label: {type: string}\n",
            "d.yaml",
        ),
        "d.memory",
    )
    kinds = {name: kind_of_signal(spec) for name, spec in profile.signals.items()}
    assert kinds == {
        "t": Kind.Double,
        "n": Kind.Int64,
        "lit": Kind.Boolean,
        "mode": Kind.String,
        "label": Kind.String,
    }
    view = LineView("line", {"d": description("d")})
    view.declare("d", profile.signals)
    assert view.update("d", {"t": 3, "n": 2.5, "extra": True})
    assert not view.update("nobody", {"t": 1.0})
    shown = view.shown()
    assert shown["d.Values.t"] == (Kind.Double, 3.0)
    assert shown["d.Values.n"] == (Kind.Int64, None)  # never shown as a number it is not
    assert shown["d.Values.extra"] == (Kind.Boolean, True)
    assert shown["d.Values.lit"] == (Kind.Boolean, None)  # not read yet
    assert shown["d.Status"] == (Kind.String, "UNKNOWN")
    view.describe({"d": description("d", "reconnecting")})
    assert view.shown()["d.Status"] == (Kind.String, "ERROR")
    assert fit(Kind.String, 1.5) == "1.5" and fit(Kind.Boolean, 1) is None


def test_every_batch_state_has_its_packml_state() -> None:
    assert set(PACKML) == set(BatchState)
    codes = [code for _, code in PACKML.values()]
    assert len(set(codes)) == len(codes)
    assert packml_code(S.Running) == 6 and packml_code(S.Held) == 11


def entry(kind: EntryKind, t: float = 0.0, **fields: object) -> JournalEntry:
    payload = fields.pop("payload", {})
    assert isinstance(payload, dict)
    return JournalEntry(t, T0, kind, "system", "B-1", payload=payload, **fields)  # type: ignore[arg-type]


def test_progress_follows_steps_states_and_device_news() -> None:
    line = LineView("line", {"tank": description("tank")})
    progress = BatchProgress()
    assert progress.runtime(50.0) == 0.0
    progress.follow(entry(EntryKind.BATCH_STATE, 10, payload={"old": "Idle", "new": "Running"}))
    progress.follow(entry(EntryKind.STEP_START, 11, unit_procedure="thaw", step="a"))
    assert (progress.unit_procedure, progress.step, progress.runtime(70.0)) == ("thaw", "a", 60.0)
    progress.follow(entry(EntryKind.STEP_END, 12, step="other"))
    assert progress.step == "a"
    progress.follow(entry(EntryKind.STEP_END, 12, step="a"))
    assert progress.step == ""

    check = {"event": "restart check", "status": "busy"}
    news = [
        entry(EntryKind.ALARM, device="tank", payload={"active": ["E12"]}),
        entry(EntryKind.INTERLOCK, device="tank", payload=check),
        entry(EntryKind.COMMAND, device="tank", payload={"set": "setpoint", "value": 37.0}),
        entry(EntryKind.COMMAND_RESULT, device="tank", payload={"set": "setpoint", "ok": True}),
        entry(EntryKind.COMMAND, device="tank", payload={"set": "speed", "value": 9.0}),
        entry(EntryKind.COMMAND_RESULT, device="tank", payload={"set": "speed", "error": "x"}),
    ]
    for item in news:
        progress.follow(item, line)
    tank = line.devices["tank"]
    assert tank.alarms == ("E12",) and tank.status == "BUSY"
    assert tank.values == {"setpoint": 37.0}  # the failed write is not shown as written

    progress.follow(
        entry(EntryKind.BATCH_STATE, 100, payload={"old": "Running", "new": "Complete"})
    )
    assert progress.runtime(500.0) == 90.0
    progress.follow(entry(EntryKind.BATCH_STATE, 200, payload={"old": "Complete", "new": "Idle"}))
    assert (progress.started_at, progress.unit_procedure) == (None, "")


# -- taps ----------------------------------------------------------------------------------


def test_a_failing_observer_never_reaches_the_executor_and_a_failing_sink_does() -> None:
    seen: list[object] = []

    def broken(_item: object) -> None:
        raise RuntimeError("display broke")

    journal = JournalTap(MemoryJournal(), broken)
    journal.append(entry(EntryKind.RECORD))  # no exception: the record is what counts
    assert len(journal.entries()) == 1

    class Full(MemoryJournal):
        def append(self, entry: JournalEntry) -> None:
            raise OSError("disk full")

    failing = JournalTap(Full(), seen.append)
    with pytest.raises(OSError, match="disk full"):
        failing.append(entry(EntryKind.RECORD))
    assert seen == []  # an entry not stored is not shown

    sample = Sample("B-1", "tank", "level", 1.0, T0, 2.0)
    SampleTap(None, seen.append).extend(iter([sample]))
    SampleTap(None, broken).extend([sample])
    assert seen == [sample]
    stored: list[Sample] = []

    class Sink:
        def extend(self, samples: Iterable[Sample]) -> None:
            stored.extend(samples)

    SampleTap(Sink(), broken).add(sample)
    assert stored == [sample]


# -- the prompter --------------------------------------------------------------------------


@pytest.fixture
def people() -> FakeStore:
    store = FakeStore()
    add_user(
        store, "qa1", "Quinn", ["qa"], "qa-password-1", actor=BOOTSTRAP, reason="t", cost=CHEAP
    )
    add_user(
        store, "op1", "Olive", ["operator"], "op-password-1", actor="qa1", reason="t", cost=CHEAP
    )
    return store


async def test_the_prompter_signs_a_fitting_answer_and_keeps_the_prompt_otherwise(
    people: FakeStore,
) -> None:
    prompter = NorthboundPrompter(Signatures(people, FakeClock()))
    changes: list[int] = []
    prompter.on_change(lambda: changes.append(len(prompter.pending())))
    request = PromptRequest("B-1", "thaw", "scan", "Scan the bag", suggested="BAG-0001")
    entry_spec = Entry(type=EntryType.TEXT, where=Where("t.yaml"), pattern="^BAG-[0-9]{4}$")
    asked = asyncio.get_running_loop().create_task(
        prompter.ask(request, Role.OPERATOR, Meaning.PERFORMED, entry_spec)
    )
    await asyncio.sleep(0)
    (pending,) = prompter.pending()
    assert pending.text() == (
        "scan: Scan the bag | operator, performed | enter text matching ^BAG-[0-9]{4}$"
        " | suggested 'BAG-0001'"
    )
    session = SigningSession()
    with pytest.raises(AnswerRejected):
        prompter.answer("scan", "nope", user_id="op1", password="op-password-1", session=session)
    with pytest.raises(SignatureRefused):
        prompter.answer("scan", "BAG-0002", user_id="op1", password="wrong", session=session)
    assert people.actions()[-1] == "signature refused"
    with pytest.raises(NoSuchPrompt):
        prompter.answer("other", True, user_id="op1", password="x", session=session)
    signature = prompter.answer(
        "scan", "BAG-0002", user_id="op1", password="op-password-1", session=session
    )
    value, signer = await asyncio.wait_for(asked, 1)
    assert (value, signer.user, signer.printed_name) == ("BAG-0002", "op1", "Olive")
    assert signature.object == "prompt:thaw/scan" and prompter.signed == [signature]
    assert prompter.pending() == [] and changes[0] == 1 and changes[-1] == 0


async def test_a_prompt_the_executor_gave_up_on_cannot_be_answered(people: FakeStore) -> None:
    prompter = NorthboundPrompter(Signatures(people, FakeClock()))
    request = PromptRequest("B-1", "thaw", "ok", "Confirm")
    asked = asyncio.get_running_loop().create_task(
        prompter.ask(request, Role.QA, Meaning.APPROVED, None)
    )
    await asyncio.sleep(0)
    asked.cancel()  # a hold interrupts the prompt
    with pytest.raises(NoSuchPrompt):
        prompter.answer(
            "ok", True, user_id="qa1", password="qa-password-1", session=SigningSession()
        )
    await asyncio.gather(asked, return_exceptions=True)
    assert prompter.pending() == []
    assert "signed" not in people.actions()


# -- the methods, without the wire ---------------------------------------------------------

SIMPLE = """\
procedure: simple
version: "1"
unit_procedures:
  - name: main
    steps:
      - {id: ok, prompt: Confirm, role: operator}
"""


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    the_rig = await open_rig(VirtualClock(epoch=EPOCH))
    yield the_rig
    await close_rig(the_rig)


async def test_rights_are_read_from_the_store_at_each_call(people: FakeStore, rig: Rig) -> None:
    prompter = NorthboundPrompter(Signatures(people, rig.clock))
    executor = rig.make(make_procedure(SIMPLE), prompter=prompter, monitor_period=3600)
    runner = BatchRunner()
    methods = BatchMethods(
        executor=lambda: executor, store=people, runner=runner, prompter=prompter
    )
    op = Caller("op1", SigningSession())
    try:
        assert await methods.call(Action.Start, op, []) == "Start: Idle -> Running"
        with pytest.raises(CallError) as refused:
            await methods.call(Action.Start, op, [])
        assert refused.value.status == "BadInvalidState"
        assert people.actions()[-1] == "opcua call refused"
        disable_user(people, "op1", actor="qa1", reason="left")
        with pytest.raises(CallError) as refused:
            await methods.call(Action.Hold, op, [])
        assert refused.value.status == "BadUserAccessDenied"
        assert people.audits[-1].reason.endswith("(holds no role)")
        assert executor.state is S.Running
    finally:
        await runner.close()
    assert executor.state is S.Running  # cancelled with the server, never completed


async def test_a_restart_resolve_must_be_resend_done_or_empty(people: FakeStore, rig: Rig) -> None:
    executor = rig.make(
        make_procedure(SIMPLE), prompter=NorthboundPrompter(Signatures(people, rig.clock))
    )
    methods = BatchMethods(executor=lambda: executor, store=people, runner=BatchRunner())
    with pytest.raises(CallError) as refused:
        await methods.call(Action.Restart, Caller("qa1", SigningSession()), ["maybe"])
    assert refused.value.status == "BadInvalidArgument"
    with pytest.raises(CallError) as refused:
        await methods.call(Action.Restart, Caller("qa1", SigningSession()), ["done"])
    assert refused.value.status == "BadInvalidState"  # Idle; and nothing to resolve


async def test_without_a_batch_or_alarms_the_methods_say_so(people: FakeStore) -> None:
    methods = BatchMethods(executor=lambda: None, store=people, runner=BatchRunner())
    qa = Caller("qa1", SigningSession())
    for action, args, status in (
        (Action.Hold, [], "BadInvalidState"),
        (Action.AcknowledgeAlarm, ["TAH", "why"], "BadNotFound"),
        (Action.AnswerPrompt, ["s", True, "pw"], "BadNotFound"),
    ):
        with pytest.raises(CallError) as refused:
            await methods.call(action, qa, args)
        assert refused.value.status == status
