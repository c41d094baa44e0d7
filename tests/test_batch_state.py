"""The ISA-88 batch state machine: the table, row by row, and random walks through it."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from structlog.testing import capture_logs

from flexctl.errors import FlexctlError
from flexctl.supervisor.batch_state import (
    COMPLETIONS,
    FINAL,
    TRANSIENT,
    TRANSITIONS,
    BatchCommand,
    BatchState,
    BatchStateMachine,
    IllegalCommand,
    IllegalCompletion,
    IllegalRestore,
    Transition,
    allowed_commands,
)

S = BatchState
C = BatchCommand

# domain.md 3.1, written out by hand (not derived from the code under test):
# command -> (the states it is allowed from, the state it leads to).
EXPECTED_ROWS: dict[BatchCommand, tuple[set[BatchState], BatchState]] = {
    C.Start: ({S.Idle}, S.Running),
    C.Pause: ({S.Running}, S.Pausing),
    C.Resume: ({S.Paused}, S.Running),
    C.Hold: ({S.Running, S.Pausing, S.Paused, S.Restarting}, S.Holding),
    C.Restart: ({S.Held}, S.Restarting),
    C.Stop: ({S.Running, S.Pausing, S.Paused, S.Holding, S.Held, S.Restarting}, S.Stopping),
    C.Abort: (
        {S.Running, S.Pausing, S.Paused, S.Holding, S.Held, S.Restarting, S.Stopping},
        S.Aborting,
    ),
    C.Reset: ({S.Complete, S.Stopped, S.Aborted}, S.Idle),
}
EXPECTED_COMPLETIONS: dict[BatchState, BatchState] = {
    S.Pausing: S.Paused,
    S.Holding: S.Held,
    S.Restarting: S.Running,
    S.Stopping: S.Stopped,
    S.Aborting: S.Aborted,
    S.Running: S.Complete,
}
EXPECTED_NAMES_STATES = [
    "Idle",
    "Running",
    "Pausing",
    "Paused",
    "Holding",
    "Held",
    "Restarting",
    "Stopping",
    "Stopped",
    "Aborting",
    "Aborted",
    "Complete",
]
EXPECTED_NAMES_COMMANDS = ["Start", "Pause", "Resume", "Hold", "Restart", "Stop", "Abort", "Reset"]


def expected_target(state: BatchState, command: BatchCommand) -> BatchState | None:
    sources, target = EXPECTED_ROWS[command]
    return target if state in sources else None


def machine_in(state: BatchState) -> BatchStateMachine:
    machine = BatchStateMachine()
    machine.restore(state)
    return machine


# --- names ---------------------------------------------------------------------------------


def test_states_and_commands_carry_the_exact_isa88_names() -> None:
    assert [s.value for s in BatchState] == EXPECTED_NAMES_STATES
    assert [c.value for c in BatchCommand] == EXPECTED_NAMES_COMMANDS
    assert all(s.name == s.value for s in BatchState)
    assert all(c.name == c.value for c in BatchCommand)


# --- the table, row by row -----------------------------------------------------------------


@pytest.mark.parametrize("command", list(BatchCommand))
def test_each_row_matches_domain_md(command: BatchCommand) -> None:
    sources, target = EXPECTED_ROWS[command]
    implemented = {state: new for (state, cmd), new in TRANSITIONS.items() if cmd is command}
    assert set(implemented) == sources
    assert set(implemented.values()) == {target}


def test_the_table_has_exactly_the_expected_pairs() -> None:
    expected = {
        (state, command): target
        for command, (sources, target) in EXPECTED_ROWS.items()
        for state in sources
    }
    assert dict(TRANSITIONS) == expected
    assert len(TRANSITIONS) == 24


def test_abort_is_refused_in_idle() -> None:
    machine = BatchStateMachine()
    with pytest.raises(IllegalCommand, match=r"^Abort is not allowed while the batch is Idle"):
        machine.command(C.Abort, actor="op1")
    assert machine.state is S.Idle
    assert machine.history == []


@pytest.mark.parametrize("state", list(BatchState))
@pytest.mark.parametrize("command", list(BatchCommand))
def test_every_pair_follows_the_table_or_is_refused(
    state: BatchState, command: BatchCommand
) -> None:
    machine = machine_in(state)
    before = machine.history
    expected = expected_target(state, command)
    if expected is None:
        with pytest.raises(IllegalCommand) as refused:
            machine.command(command, actor="op1", reason="test")
        assert refused.value.state is state
        assert refused.value.command is command
        assert refused.value.allowed == machine.allowed()
        assert isinstance(refused.value, FlexctlError)
        assert machine.state is state
        assert machine.history == before
    else:
        assert machine.command(command, actor="op1", reason="test") is expected
        assert machine.state is expected
        assert machine.history[-1] == Transition(state, expected, command, "op1", "test")


@pytest.mark.parametrize("state", list(BatchState))
def test_allowed_lists_exactly_the_accepted_commands(state: BatchState) -> None:
    expected = {c for c in BatchCommand if expected_target(state, c) is not None}
    assert machine_in(state).allowed() == expected
    assert allowed_commands(state) == expected


@pytest.mark.parametrize("state", list(BatchState))
def test_complete_follows_the_completions_or_is_refused(state: BatchState) -> None:
    machine = machine_in(state)
    before = machine.history
    if state in EXPECTED_COMPLETIONS:
        assert machine.complete() is EXPECTED_COMPLETIONS[state]
        assert machine.history[-1] == Transition(
            state, EXPECTED_COMPLETIONS[state], "complete", "system", ""
        )
    else:
        with pytest.raises(IllegalCompletion) as refused:
            machine.complete(actor="op1")
        assert refused.value.state is state
        assert isinstance(refused.value, FlexctlError)
        assert machine.state is state
        assert machine.history == before


def test_completions_match_domain_md() -> None:
    assert dict(COMPLETIONS) == EXPECTED_COMPLETIONS


def test_every_transient_state_has_exactly_one_completion() -> None:
    # "Running" ends in -ing too, but it is active, not transient.
    assert {S.Pausing, S.Holding, S.Restarting, S.Stopping, S.Aborting} == TRANSIENT
    assert set(COMPLETIONS) == TRANSIENT | {S.Running}  # a mapping: one completion each
    for state in TRANSIENT:
        assert COMPLETIONS[state] not in TRANSIENT  # a completion settles
        assert state not in FINAL
    # every transient state is entered by a command; commands lead only to those, Running or Idle
    assert set(TRANSITIONS.values()) >= TRANSIENT
    assert set(TRANSITIONS.values()) - TRANSIENT == {S.Running, S.Idle}


def test_final_states_accept_only_reset() -> None:
    assert {S.Complete, S.Stopped, S.Aborted} == FINAL
    for state in FINAL:
        assert allowed_commands(state) == {C.Reset}
        assert state not in COMPLETIONS
    assert {state for (state, cmd) in TRANSITIONS if cmd is C.Reset} == FINAL
    assert not FINAL & TRANSIENT


def test_every_state_is_reachable_from_idle_and_can_get_back() -> None:
    def reachable(start: BatchState) -> set[BatchState]:
        seen, queue = {start}, deque([start])
        while queue:
            state = queue.popleft()
            nexts = [new for (old, _), new in TRANSITIONS.items() if old is state]
            if state in COMPLETIONS:
                nexts.append(COMPLETIONS[state])
            for new in nexts:
                if new not in seen:
                    seen.add(new)
                    queue.append(new)
        return seen

    assert reachable(S.Idle) == set(BatchState)
    for state in BatchState:
        assert S.Idle in reachable(state), f"no way back to Idle from {state}"


# --- messages ------------------------------------------------------------------------------


def test_illegal_command_message() -> None:
    with pytest.raises(IllegalCommand) as refused:
        BatchStateMachine().command(C.Hold, actor="op1")
    assert str(refused.value) == "Hold is not allowed while the batch is Idle (allowed: Start)"
    assert refused.value.allowed == {C.Start}


def test_illegal_command_message_lists_allowed_in_a_fixed_order() -> None:
    with pytest.raises(IllegalCommand) as refused:
        machine_in(S.Held).command(C.Resume, actor="op1")
    assert str(refused.value) == (
        "Resume is not allowed while the batch is Held (allowed: Restart, Stop, Abort)"
    )
    with pytest.raises(IllegalCommand) as refused:
        machine_in(S.Aborting).command(C.Abort, actor="op1")
    assert str(refused.value).endswith("(allowed: none)")


def test_illegal_completion_message() -> None:
    with pytest.raises(IllegalCompletion, match=r"cannot complete while Held") as refused:
        machine_in(S.Held).complete()
    assert "Restart, Stop, Abort" in str(refused.value)


def test_plain_strings_are_read_as_the_enums() -> None:
    machine = BatchStateMachine()
    assert machine.command("Start", actor="op1") is S.Running  # type: ignore[arg-type]
    assert machine.history[-1].command is C.Start
    with pytest.raises(ValueError, match="Hodl"):
        machine.command("Hodl", actor="op1")  # type: ignore[arg-type]


# --- a whole batch -------------------------------------------------------------------------


def test_a_batch_with_a_pause_and_an_interlock_hold() -> None:
    machine = BatchStateMachine()
    machine.command(C.Start, actor="alice", reason="batch B-001")
    machine.command(C.Pause, actor="alice")
    machine.complete()
    machine.command(C.Hold, actor="interlock", reason="bioreactor lost")
    machine.complete()
    machine.command(C.Restart, actor="bob", reason="link back, checked")
    machine.complete()
    assert machine.complete() is S.Complete
    machine.command(C.Reset, actor="bob")
    assert [(t.old, t.new, t.command, t.actor) for t in machine.history] == [
        (S.Idle, S.Running, C.Start, "alice"),
        (S.Running, S.Pausing, C.Pause, "alice"),
        (S.Pausing, S.Paused, "complete", "system"),
        (S.Paused, S.Holding, C.Hold, "interlock"),
        (S.Holding, S.Held, "complete", "system"),
        (S.Held, S.Restarting, C.Restart, "bob"),
        (S.Restarting, S.Running, "complete", "system"),
        (S.Running, S.Complete, "complete", "system"),
        (S.Complete, S.Idle, C.Reset, "bob"),
    ]
    assert machine.history[3].reason == "bioreactor lost"


def test_history_is_a_copy() -> None:
    machine = BatchStateMachine()
    machine.command(C.Start, actor="op1")
    machine.history.clear()
    assert len(machine.history) == 1


# --- restore -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(BatchState))
def test_restore_a_fresh_machine_into_any_state(state: BatchState) -> None:
    machine = BatchStateMachine()
    seen: list[Transition] = []
    machine.on_change(seen.append)
    machine.restore(state, actor="supervisor", reason="resumed from journal")
    assert machine.state is state
    assert (
        machine.history
        == seen
        == [Transition(S.Idle, state, "restore", "supervisor", "resumed from journal")]
    )


def test_restore_into_a_transient_state_waits_for_its_completion() -> None:
    machine = BatchStateMachine()
    machine.restore(S.Stopping)
    assert machine.allowed() == {C.Abort}
    assert machine.complete() is S.Stopped


def test_restore_refused_once_the_machine_has_moved() -> None:
    machine = BatchStateMachine()
    machine.command(C.Start, actor="op1")
    with pytest.raises(IllegalRestore, match="already moved"):
        machine.restore(S.Complete)
    assert machine.state is S.Running
    restored = machine_in(S.Held)
    with pytest.raises(IllegalRestore):
        restored.restore(S.Running)
    assert restored.state is S.Held


# --- listeners -----------------------------------------------------------------------------


def test_listeners_see_each_transition_after_the_state_changed() -> None:
    machine = BatchStateMachine()
    seen: list[tuple[Transition, BatchState]] = []
    machine.on_change(lambda t: seen.append((t, machine.state)))
    machine.command(C.Start, actor="op1")
    assert seen == [(Transition(S.Idle, S.Running, C.Start, "op1"), S.Running)]


def test_a_refused_command_is_not_delivered() -> None:
    machine = BatchStateMachine()
    seen: list[Transition] = []
    machine.on_change(seen.append)
    with pytest.raises(IllegalCommand):
        machine.command(C.Stop, actor="op1")
    with pytest.raises(IllegalCompletion):
        machine.complete()
    assert seen == []


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    machine = BatchStateMachine()
    seen: list[Transition] = []
    unsubscribe = machine.on_change(seen.append)
    machine.command(C.Start, actor="op1")
    unsubscribe()
    unsubscribe()
    machine.command(C.Hold, actor="op1")
    assert [t.new for t in seen] == [S.Running]


def test_a_failing_listener_does_not_break_the_machine() -> None:
    machine = BatchStateMachine()
    after: list[Transition] = []

    def broken(transition: Transition) -> None:
        raise RuntimeError("journal disk full")

    machine.on_change(broken)
    machine.on_change(after.append)
    with capture_logs() as logs:
        assert machine.command(C.Start, actor="op1") is S.Running
        assert machine.command(C.Hold, actor="op1") is S.Holding
        assert machine.complete() is S.Held
    assert machine.state is S.Held
    assert [t.new for t in machine.history] == [S.Running, S.Holding, S.Held]
    assert [t.new for t in after] == [S.Running, S.Holding, S.Held]
    failures = [e for e in logs if e["event"] == "batch_state_listener_failed"]
    assert len(failures) == 3
    assert failures[0]["log_level"] == "error"
    assert failures[0]["new"] == "Running"
    assert "broken" in failures[0]["listener"]
    # and the machine still refuses what it must
    with pytest.raises(IllegalCommand):
        machine.command(C.Resume, actor="op1")
    assert machine.state is S.Held


def test_a_listener_that_commands_the_machine_keeps_the_order_for_everyone() -> None:
    """An interlock reacting to Running by holding: later listeners still see Running first."""
    machine = BatchStateMachine()
    first: list[BatchState] = []
    second: list[BatchState] = []

    def interlock(transition: Transition) -> None:
        first.append(transition.new)
        if transition.new is S.Running and transition.command is C.Start:
            machine.command(C.Hold, actor="interlock", reason="bioreactor lost")

    machine.on_change(interlock)
    machine.on_change(lambda t: second.append(t.new))
    assert machine.command(C.Start, actor="op1") is S.Running
    assert machine.state is S.Holding
    assert first == second == [S.Running, S.Holding]


# --- random walks --------------------------------------------------------------------------


class BatchWalk(RuleBasedStateMachine):
    """Random commands and completions, checked against the hand-written table."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = BatchStateMachine()
        self.delivered: list[Transition] = []
        self.machine.on_change(self.delivered.append)
        self.refused = 0

    @rule(command=st.sampled_from(list(BatchCommand)), actor=st.sampled_from(["op1", "qa"]))
    def give(self, command: BatchCommand, actor: str) -> None:
        before, history = self.machine.state, self.machine.history
        expected = expected_target(before, command)
        if expected is None:
            with pytest.raises(IllegalCommand):
                self.machine.command(command, actor=actor)
            assert self.machine.state is before
            assert self.machine.history == history
            self.refused += 1
        else:
            assert self.machine.command(command, actor=actor) is expected
            assert self.machine.history[-1] == Transition(before, expected, command, actor)

    @rule()
    def complete(self) -> None:
        before, history = self.machine.state, self.machine.history
        if before in EXPECTED_COMPLETIONS:
            assert self.machine.complete() is EXPECTED_COMPLETIONS[before]
        else:
            with pytest.raises(IllegalCompletion):
                self.machine.complete()
            assert self.machine.state is before
            assert self.machine.history == history

    # Steer towards the interesting part: settle transient states more often.
    @precondition(lambda self: self.machine.state in TRANSIENT)
    @rule()
    def settle(self) -> None:
        self.complete()

    @rule(data=st.data())
    def give_an_allowed_command(self, data: st.DataObject) -> None:
        allowed = sorted(self.machine.allowed())
        if allowed:
            self.give(data.draw(st.sampled_from(allowed)), "op1")

    @invariant()
    def state_is_one_of_the_twelve(self) -> None:
        assert self.machine.state in set(BatchState)
        assert len(BatchState) == 12

    @invariant()
    def history_is_consistent(self) -> None:
        history = self.machine.history
        assert history == self.delivered
        previous = S.Idle
        for transition in history:
            assert transition.old is previous
            previous = transition.new
        assert previous is self.machine.state

    @invariant()
    def complete_only_from_running(self) -> None:
        for t in self.machine.history:
            if t.new is S.Complete:
                assert t.old is S.Running
                assert t.command == "complete"

    @invariant()
    def held_only_left_by_restart_stop_or_abort(self) -> None:
        for t in self.machine.history:
            if t.old is S.Held:
                assert t.command in {C.Restart, C.Stop, C.Abort}

    @invariant()
    def idle_only_reentered_by_reset(self) -> None:
        for t in self.machine.history:
            if t.new is S.Idle:
                assert t.command is C.Reset
                assert t.old in FINAL


def test_random_walks_through_the_machine() -> None:
    run_state_machine_as_test(
        BatchWalk, settings=settings(max_examples=300, stateful_step_count=60, deadline=None)
    )


def test_a_typo_is_an_unknown_command_in_the_error_tree() -> None:
    from flexctl.errors import FlexctlError
    from flexctl.supervisor.batch_state import UnknownCommand

    machine = BatchStateMachine()
    with pytest.raises(UnknownCommand, match="'Holdd' is not a batch command") as caught:
        machine.command("Holdd", actor="op1")  # type: ignore[arg-type]
    assert isinstance(caught.value, FlexctlError)
    assert machine.state is BatchState.Idle
