"""The ISA-18.2 alarm state machine: every state against every event, and random walks."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from flexctl.errors import FlexctlError
from flexctl.supervisor.alarm_states import (
    ANNUNCIATED,
    ATTRIBUTED,
    REMOVED,
    TRANSITIONS,
    AlarmEvent,
    AlarmState,
    AlarmStateMachine,
    AlarmTransition,
    IllegalAlarmEvent,
    InvalidShelveTime,
    MissingAttribution,
    ProcessCondition,
    allowed_events,
)

S = AlarmState
E = AlarmEvent
ACT, INACT = ProcessCondition.Active, ProcessCondition.Inactive

# --- the oracle: domain.md 3.6 written out by hand, not derived from the table ---------------

# Where each of the four ISA-18.2 alarm states puts the process condition.
IMPLIED = {
    S.Normal: INACT,
    S.Unacknowledged: ACT,
    S.Acknowledged: ACT,
    S.ReturnedToNormalUnacknowledged: INACT,
}
ALARM_STATES = {S.Normal, S.Unacknowledged, S.Acknowledged, S.ReturnedToNormalUnacknowledged}
# Shelved < Suppressed < Out-of-service: a removal is accepted from the alarm states and
# from the removals below it.
ENTERED_FROM = {
    E.Shelve: (ALARM_STATES, S.Shelved),
    E.Suppress: (ALARM_STATES | {S.Shelved}, S.Suppressed),
    E.RemoveFromService: (ALARM_STATES | {S.Shelved, S.Suppressed}, S.OutOfService),
}
LEAVES = {
    E.Unshelve: S.Shelved,
    E.ShelveExpiry: S.Shelved,
    E.Unsuppress: S.Suppressed,
    E.ReturnToService: S.OutOfService,
}


def possible(state: AlarmState, cond: ProcessCondition) -> bool:
    return state not in IMPLIED or IMPLIED[state] is cond


def expected(
    state: AlarmState, cond: ProcessCondition, event: AlarmEvent
) -> tuple[AlarmState, ProcessCondition] | None:
    """The target per domain.md, or None for a refusal."""
    if not possible(state, cond):
        return None
    active = cond is ACT
    removed = state in {S.Shelved, S.Suppressed, S.OutOfService}
    if event is E.Activate:
        if active:
            return None
        return (state if removed else S.Unacknowledged), ACT
    if event is E.Clear:
        if not active:
            return None
        if removed:
            return state, INACT
        return {S.Unacknowledged: S.ReturnedToNormalUnacknowledged, S.Acknowledged: S.Normal}[
            state
        ], INACT
    if event is E.Acknowledge:
        return {
            S.Unacknowledged: (S.Acknowledged, ACT),
            S.ReturnedToNormalUnacknowledged: (S.Normal, INACT),
        }.get(state)
    if event in ENTERED_FROM:
        sources, target = ENTERED_FROM[event]
        return (target, cond) if state in sources else None
    if state is LEAVES[event]:
        # Back where the process condition says, whatever it was before.
        return (S.Unacknowledged, ACT) if active else (S.Normal, INACT)
    return None


SITUATIONS = [(s, c) for s in AlarmState for c in ProcessCondition if possible(s, c)]
SITUATION_IDS = [f"{s.value}/{c.value}" for s, c in SITUATIONS]
PATHS: dict[tuple[AlarmState, ProcessCondition], list[AlarmEvent]] = {
    (S.Normal, INACT): [],
    (S.Unacknowledged, ACT): [E.Activate],
    (S.Acknowledged, ACT): [E.Activate, E.Acknowledge],
    (S.ReturnedToNormalUnacknowledged, INACT): [E.Activate, E.Clear],
    (S.Shelved, INACT): [E.Shelve],
    (S.Shelved, ACT): [E.Activate, E.Shelve],
    (S.Suppressed, INACT): [E.Suppress],
    (S.Suppressed, ACT): [E.Activate, E.Suppress],
    (S.OutOfService, INACT): [E.RemoveFromService],
    (S.OutOfService, ACT): [E.Activate, E.RemoveFromService],
}


def args_for(event: AlarmEvent, now: float) -> dict[str, Any]:
    """What an operator gives with ``event``: user and reason, and an expiry for a shelve."""
    kwargs: dict[str, Any] = {"now": now}
    if event in ATTRIBUTED:
        kwargs.update(user="op1", reason="seen, operator on it")
    if event is E.Shelve:
        kwargs["until"] = now + 600.0
    return kwargs


def machine_in(state: AlarmState, cond: ProcessCondition) -> AlarmStateMachine:
    machine = AlarmStateMachine("TAH-101")
    for step, event in enumerate(PATHS[(state, cond)]):
        machine.apply(event, **args_for(event, float(step)))
    assert (machine.state, machine.condition) == (state, cond)
    return machine


# --- names and shape -------------------------------------------------------------------------


def test_states_and_events_carry_the_display_names() -> None:
    assert [s.value for s in AlarmState] == [
        "Normal",
        "Unacknowledged",
        "Acknowledged",
        "Returned-to-normal-unacknowledged",
        "Shelved",
        "Suppressed",
        "Out-of-service",
    ]
    assert [e.value for e in AlarmEvent] == [
        "Activate",
        "Clear",
        "Acknowledge",
        "Shelve",
        "Unshelve",
        "Shelve expiry",
        "Suppress",
        "Unsuppress",
        "Remove from service",
        "Return to service",
    ]
    assert [c.value for c in ProcessCondition] == ["Inactive", "Active"]


def test_the_paths_reach_every_possible_situation() -> None:
    assert set(PATHS) == set(SITUATIONS)
    assert len(SITUATIONS) == 10


def test_the_table_is_exactly_the_oracle() -> None:
    oracle = {
        (s, c, e): target
        for s in AlarmState
        for c in ProcessCondition
        for e in AlarmEvent
        if (target := expected(s, c, e)) is not None
    }
    assert dict(TRANSITIONS) == oracle
    assert len(TRANSITIONS) == 38


def test_the_table_only_holds_possible_situations() -> None:
    for (state, cond, _), (new, new_cond) in TRANSITIONS.items():
        assert possible(state, cond)
        assert possible(new, new_cond)


def test_state_groups() -> None:
    assert {S.Unacknowledged, S.Acknowledged, S.ReturnedToNormalUnacknowledged} == ANNUNCIATED
    assert {S.Shelved, S.Suppressed, S.OutOfService} == REMOVED
    assert {E.Acknowledge, E.Shelve, E.RemoveFromService} == ATTRIBUTED


# --- every situation x every event -----------------------------------------------------------


@pytest.mark.parametrize(("state", "cond"), SITUATIONS, ids=SITUATION_IDS)
@pytest.mark.parametrize("event", list(AlarmEvent))
def test_every_event_in_every_situation_follows_the_table_or_is_refused(
    state: AlarmState, cond: ProcessCondition, event: AlarmEvent
) -> None:
    machine = machine_in(state, cond)
    until = machine.shelved_until
    target = expected(state, cond, event)
    # A shelve expiry is only due once the shelve has run out.
    now = 10_000.0
    if target is None:
        with pytest.raises(IllegalAlarmEvent) as refused:
            machine.apply(event, **args_for(event, now))
        error = refused.value
        assert isinstance(error, FlexctlError)
        assert (error.alarm, error.state, error.condition, error.event) == (
            "TAH-101",
            state,
            cond,
            event,
        )
        assert error.allowed == machine.allowed()
        assert "TAH-101" in str(error)
        assert state.value in str(error)
        assert event.value in str(error)
        assert (machine.state, machine.condition, machine.shelved_until) == (state, cond, until)
    else:
        transition = machine.apply(event, **args_for(event, now), value=37.9)
        assert (machine.state, machine.condition) == target
        assert transition.old is state
        assert transition.new is target[0]
        assert transition.event is event
        assert transition.time == now
        assert transition.active is (target[1] is ACT)
        assert transition.value == 37.9
        assert transition.alarm == "TAH-101"


@pytest.mark.parametrize(("state", "cond"), SITUATIONS, ids=SITUATION_IDS)
def test_allowed_lists_exactly_the_accepted_events(
    state: AlarmState, cond: ProcessCondition
) -> None:
    accepted = {e for e in AlarmEvent if expected(state, cond, e) is not None}
    assert machine_in(state, cond).allowed() == accepted
    assert allowed_events(state, cond) == accepted


@pytest.mark.parametrize("event", [E.Unshelve, E.ShelveExpiry, E.Unsuppress, E.ReturnToService])
@pytest.mark.parametrize("cond", list(ProcessCondition))
def test_leaving_a_removal_lands_where_the_process_condition_says(
    event: AlarmEvent, cond: ProcessCondition
) -> None:
    removal = {
        E.Unshelve: S.Shelved,
        E.ShelveExpiry: S.Shelved,
        E.Unsuppress: S.Suppressed,
        E.ReturnToService: S.OutOfService,
    }[event]
    machine = machine_in(removal, cond)
    # the condition flips while removed, and the landing follows the latest one
    flip = E.Clear if cond is ACT else E.Activate
    machine.apply(flip, now=5.0)
    transition = machine.apply(event, now=10_000.0)
    assert transition.new is (S.Normal if cond is ACT else S.Unacknowledged)


def test_every_situation_is_reachable_and_can_get_back_to_normal() -> None:
    def reachable(start: tuple[AlarmState, ProcessCondition]) -> set[tuple[Any, ...]]:
        seen, queue = {start}, deque([start])
        while queue:
            state, cond = queue.popleft()
            for (old, old_cond, _), new in TRANSITIONS.items():
                if (old, old_cond) == (state, cond) and new not in seen:
                    seen.add(new)
                    queue.append(new)
        return seen

    assert reachable((S.Normal, INACT)) == set(SITUATIONS)
    for situation in SITUATIONS:
        assert (S.Normal, INACT) in reachable(situation)


# --- attribution, shelve times, messages -----------------------------------------------------


@pytest.mark.parametrize("event", sorted(ATTRIBUTED))
@pytest.mark.parametrize(
    ("user", "reason", "missing"),
    [("", "checked", ("user",)), ("op1", "", ("reason",)), (" ", "\t", ("user", "reason"))],
)
def test_attributed_events_need_a_user_and_a_reason(
    event: AlarmEvent, user: str, reason: str, missing: tuple[str, ...]
) -> None:
    machine = machine_in(S.Unacknowledged, ACT)
    kwargs = args_for(event, 10.0) | {"user": user, "reason": reason}
    with pytest.raises(MissingAttribution) as refused:
        machine.apply(event, **kwargs)
    assert refused.value.missing == missing
    assert refused.value.event is event
    assert isinstance(refused.value, FlexctlError)
    assert str(refused.value).startswith(f"alarm TAH-101: {event.value} needs a user and a reason")
    assert machine.state is S.Unacknowledged


def test_other_events_need_no_attribution() -> None:
    machine = machine_in(S.Shelved, ACT)
    assert machine.apply(E.Unshelve, now=10.0).user == ""


@pytest.mark.parametrize("until", [None, 10.0, 9.0, math.nan, math.inf])
def test_a_shelve_needs_a_finite_expiry_after_now(until: float | None) -> None:
    machine = machine_in(S.Unacknowledged, ACT)
    with pytest.raises(InvalidShelveTime, match="TAH-101"):
        machine.apply(E.Shelve, now=10.0, user="op1", reason="chattering", until=until)
    assert machine.state is S.Unacknowledged
    assert machine.shelved_until is None


def test_only_a_shelve_takes_an_expiry() -> None:
    machine = machine_in(S.Unacknowledged, ACT)
    with pytest.raises(InvalidShelveTime, match="Acknowledge takes no expiry"):
        machine.apply(E.Acknowledge, now=1.0, user="op1", reason="seen", until=100.0)
    assert machine.state is S.Unacknowledged


def test_a_shelve_expiry_is_refused_before_the_shelve_runs_out() -> None:
    machine = AlarmStateMachine("TAH-101")
    machine.apply(E.Shelve, now=0.0, user="op1", reason="sensor swap", until=300.0)
    with pytest.raises(IllegalAlarmEvent, match=r"shelved until 300, now 299.5"):
        machine.apply(E.ShelveExpiry, now=299.5)
    assert machine.state is S.Shelved
    assert machine.apply(E.ShelveExpiry, now=300.0).new is S.Normal
    assert machine.shelved_until is None


def test_the_shelve_expiry_survives_condition_changes_and_goes_with_the_shelve() -> None:
    machine = AlarmStateMachine("TAH-101")
    machine.apply(E.Shelve, now=0.0, user="op1", reason="sensor swap", until=300.0)
    machine.apply(E.Activate, now=1.0)
    machine.apply(E.Clear, now=2.0)
    assert machine.shelved_until == 300.0
    machine.apply(E.Suppress, now=3.0)
    assert machine.shelved_until is None
    assert machine.apply(E.Unsuppress, now=4.0).new is S.Normal


def test_illegal_event_message() -> None:
    with pytest.raises(IllegalAlarmEvent) as refused:
        AlarmStateMachine("TAH-101").apply(E.Acknowledge, now=0.0, user="op1", reason="x")
    assert str(refused.value) == (
        "alarm TAH-101: Acknowledge is not allowed while Normal and inactive"
        " (allowed: Activate, Shelve, Suppress, Remove from service)"
    )


def test_plain_strings_are_read_as_events() -> None:
    machine = AlarmStateMachine("TAH-101")
    assert machine.apply("Activate", now=0.0).event is E.Activate  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Activte"):
        machine.apply("Activte", now=0.0)  # type: ignore[arg-type]


def test_a_transition_is_a_journal_payload() -> None:
    machine = machine_in(S.Unacknowledged, ACT)
    transition = machine.apply(
        E.Shelve, now=60.0, user="op1", reason="known fault", value=38.2, until=660.0
    )
    assert transition == AlarmTransition(
        alarm="TAH-101",
        old=S.Unacknowledged,
        new=S.Shelved,
        event=E.Shelve,
        time=60.0,
        active=True,
        user="op1",
        reason="known fault",
        value=38.2,
        until=660.0,
    )
    assert transition.payload() == {
        "alarm": "TAH-101",
        "old": "Unacknowledged",
        "new": "Shelved",
        "event": "Shelve",
        "time": 60.0,
        "active": True,
        "user": "op1",
        "reason": "known fault",
        "value": 38.2,
        "until": 660.0,
    }


# --- random walks ----------------------------------------------------------------------------


class AlarmWalk(RuleBasedStateMachine):
    """Random events against the oracle and an independent model of the three ISA-18.2 facts.

    The model keeps the process condition, the acknowledgement and the removal
    (Shelved / Suppressed / Out-of-service) apart, as OPC UA Part 9 does; the
    machine's one state must always be what those three say.
    """

    def __init__(self) -> None:
        super().__init__()
        self.machine = AlarmStateMachine("FAL-7")
        self.now = 0.0
        self.active = False
        self.acked = True
        self.removal: AlarmState | None = None
        self.until: float | None = None

    @rule(
        event=st.sampled_from(list(AlarmEvent)),
        dt=st.floats(0, 400, allow_nan=False),
        attributed=st.booleans(),
        shelve_for=st.floats(1, 600, allow_nan=False),
    )
    def fire(self, event: AlarmEvent, dt: float, attributed: bool, shelve_for: float) -> None:
        self.now += dt
        before = (self.machine.state, self.machine.condition)
        kwargs: dict[str, Any] = {"now": self.now}
        if attributed:
            kwargs.update(user="op2", reason="walk")
        if event is E.Shelve:
            kwargs["until"] = self.now + shelve_for
        target = expected(*before, event)
        if target is None:
            with pytest.raises(IllegalAlarmEvent):
                self.machine.apply(event, **kwargs)
        elif event in ATTRIBUTED and not attributed:
            with pytest.raises(MissingAttribution):
                self.machine.apply(event, **kwargs)
        elif event is E.ShelveExpiry and self.until is not None and self.now < self.until:
            with pytest.raises(IllegalAlarmEvent, match="shelved until"):
                self.machine.apply(event, **kwargs)
        else:
            transition = self.machine.apply(event, **kwargs)
            assert (transition.old, transition.new) == (before[0], target[0])
            self._model(event, kwargs.get("until"))
            if event in LEAVES:
                assert transition.new is (S.Unacknowledged if self.active else S.Normal)
            return
        assert (self.machine.state, self.machine.condition) == before

    def _model(self, event: AlarmEvent, until: float | None) -> None:
        if event is E.Activate:
            self.active = True
            self.acked = self.acked if self.removal else False
        elif event is E.Clear:
            self.active = False
        elif event is E.Acknowledge:
            self.acked = True
        elif event in ENTERED_FROM:
            self.removal = ENTERED_FROM[event][1]
            self.until = until
        else:  # leaving a removal: a new annunciation if active, Normal if not
            self.removal = None
            self.until = None
            self.acked = not self.active

    @invariant()
    def state_is_one_of_the_named_ones(self) -> None:
        assert self.machine.state in set(AlarmState)
        assert len(AlarmState) == 7

    @invariant()
    def state_is_what_the_three_facts_say(self) -> None:
        if self.removal is not None:
            expected_state = self.removal
        elif self.active:
            expected_state = S.Acknowledged if self.acked else S.Unacknowledged
        else:
            expected_state = S.Normal if self.acked else S.ReturnedToNormalUnacknowledged
        assert self.machine.state is expected_state
        assert self.machine.active is self.active
        assert self.machine.shelved_until == self.until

    @invariant()
    def normal_only_when_inactive_acked_and_in_service(self) -> None:
        if self.machine.state is S.Normal:
            assert not self.active
            assert self.acked
            assert self.removal is None


def test_random_walks_through_the_alarm_machine() -> None:
    run_state_machine_as_test(
        AlarmWalk, settings=settings(max_examples=300, stateful_step_count=60, deadline=None)
    )
