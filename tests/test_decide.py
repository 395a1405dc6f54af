"""The pure decisions (decide.py), from literals: target choice, the fleet state machine, the status condition."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from gitops_agent.decide import (
    Candidate, Closed, Complete, FleetPolicy, Halt, Head, Hold, NodeResult, RollBack, StepNodes, Target, choose_target,
    closed_windows, condition, fallback, next_fleet_step,
)
from gitops_agent.errors import Problem
from gitops_agent.reasons import Reason
from gitops_agent.windows import Schedule, Window
from gitops_agent.state import (
    AgentState, Applied, Failure, LastResult, NodeProgress, Rejection, RolloutState, Suspension,
)

APPLIED = Applied("a" * 40, "main@sha1:" + "a" * 40)
HEAD = Head("b" * 40, "main@sha1:" + "b" * 40)
PROBLEM = Problem("app.yaml", 3, "Deployment/web", "spec.replicas", "must be >= 0")


def rollout(statuses: dict[str, str], phase: str = "progressing", target_sha: str = "b" * 40,
            failure: dict[str, Any] | None = None) -> RolloutState:
    return RolloutState(target="main@b", target_sha=target_sha, previous="main@a", previous_sha="a" * 40,
                        order=tuple(statuses), nodes={n: NodeProgress(status=s) for n, s in statuses.items()},
                        phase=phase, failure=failure or {})


# --- choose_target: every branch ------------------------------------------------------------


def test_a_new_head_is_validated_and_reconciled() -> None:
    expected = Target(Reason.APPLIED, (Candidate("head", HEAD.sha),))
    assert choose_target(HEAD, AgentState(applied=APPLIED), "p1") == expected


def test_suspended_pins_the_revision_and_does_not_follow_git() -> None:
    pin = Suspension("main@c", "c" * 40, 1.0, "gitops-agent rollback to main@c")
    state = AgentState(applied=APPLIED, suspended=pin)
    choice = choose_target(HEAD, state, "p1")
    assert isinstance(choice, Target)
    assert choice.candidates == (Candidate("suspended", "c" * 40),)
    assert (choice.reason, choice.result, choice.waiting) == (Reason.SUSPENDED, "suspended", True)
    assert "gitops-agent resume" in choice.error and "rollback to main@c" in choice.error


def test_a_rejected_head_is_not_retried_under_the_same_policy() -> None:
    rejection = Rejection(HEAD.sha, "revision rejected: 1 problem(s)", (PROBLEM,), "p1")
    state = AgentState(applied=APPLIED, rejected=rejection)
    choice = choose_target(HEAD, state, "p1")
    assert choice == Target(Reason.REVISION_REJECTED, (Candidate("applied", APPLIED.sha),), "rejected",
                            "revision rejected: 1 problem(s)", True, (PROBLEM,))


def test_a_policy_change_judges_the_rejected_head_again() -> None:
    state = AgentState(applied=APPLIED, rejected=Rejection(HEAD.sha, "rejected", (PROBLEM,), "p1"))
    assert choose_target(HEAD, state, "p2") == Target(Reason.APPLIED, (Candidate("head", HEAD.sha),))


def test_a_rejection_of_an_older_commit_does_not_hold_a_new_head() -> None:
    state = AgentState(applied=APPLIED, rejected=Rejection("c" * 40, "rejected", (), "p1"))
    assert choose_target(HEAD, state, "p1") == Target(Reason.APPLIED, (Candidate("head", HEAD.sha),))


def test_a_failed_head_is_not_retried_and_the_stable_revision_is_kept() -> None:
    state = AgentState(applied=APPLIED, failed=Failure(HEAD.sha, "main@b", node="n1", error="pod web-1 crashed"))
    choice = choose_target(HEAD, state, "p1")
    assert isinstance(choice, Target)
    assert choice.candidates == (Candidate("applied", APPLIED.sha),)
    assert (choice.reason, choice.result, choice.waiting) == (Reason.REVISION_FAILED, "failed", True)
    assert choice.error == "revision main@b failed on node n1: pod web-1 crashed; not retried until Git moves"


def test_a_halted_failed_head_holds_every_node_as_it_is() -> None:
    state = AgentState(failed=Failure(HEAD.sha, "main@b", halted=True, error="boom"))
    assert choose_target(HEAD, state, "p1") == Hold(
        Reason.ROLLOUT_HALTED, "failed", "revision main@b failed: boom; not retried until Git moves")


def test_git_down_falls_back_to_the_stable_revision() -> None:
    choice = choose_target(Head(error="git: connection refused"), AgentState(applied=APPLIED), "p1")
    assert choice == Target(Reason.SOURCE_UNAVAILABLE, (Candidate("applied", APPLIED.sha),), "source-error",
                            "git: connection refused")


def test_git_down_mid_rollout_keeps_going_to_the_rollout_target() -> None:
    state = AgentState(applied=APPLIED, rollout=rollout({"n1": "done", "n2": "pending"}))
    choice = choose_target(Head(error="down"), state, "p1")
    assert isinstance(choice, Target)
    assert choice.candidates == (Candidate("rollout", "b" * 40), Candidate("applied", APPLIED.sha))


def test_fallback_skips_a_rollout_whose_target_failed_or_that_is_finished() -> None:
    failed = AgentState(applied=APPLIED, rollout=rollout({"n1": "failed"}), failed=Failure("b" * 40))
    assert fallback(failed) == (Candidate("applied", APPLIED.sha),)
    finished = AgentState(applied=APPLIED, rollout=rollout({"n1": "done"}, phase="complete"))
    assert fallback(finished) == (Candidate("applied", APPLIED.sha),)
    assert fallback(AgentState()) == ()  # nothing applied yet: nothing to reconcile


# --- next_fleet_step: the rollout state machine ------------------------------------------------

POLICY = FleetPolicy(batch=2)


def test_a_rollout_steps_the_nodes_in_order_a_batch_at_a_time() -> None:
    r = rollout({"n1": "pending", "n2": "pending", "n3": "pending"})
    assert next_fleet_step(r, {}, POLICY) == StepNodes(("n1", "n2"), Reason.ROLLOUT_STARTED)
    done = {n: NodeResult(n, "done", Reason.STEP_DONE) for n in ("n1", "n2")}
    r = rollout({"n1": "done", "n2": "done", "n3": "pending"})
    assert next_fleet_step(r, done, POLICY) == StepNodes(("n3",), Reason.ROLLOUT_STARTED)
    r = rollout({"n1": "done", "n2": "done", "n3": "done"})
    assert next_fleet_step(r, {**done, "n3": NodeResult("n3", "done", Reason.STEP_DONE)}, POLICY) == Complete()


def test_resume_after_a_crash_mid_step_steps_done_nodes_again_then_the_rest() -> None:
    r = rollout({"n1": "done", "n2": "updating", "n3": "pending"})
    assert next_fleet_step(r, {}, FleetPolicy(batch=1)) == StepNodes(("n1",), Reason.ROLLOUT_RESUMED)
    step = next_fleet_step(r, {"n1": NodeResult("n1", "done", Reason.STEP_DONE)}, FleetPolicy(batch=1))
    assert step == StepNodes(("n2",), Reason.ROLLOUT_STARTED)


def test_resume_after_a_crash_after_a_failure_goes_straight_to_the_rollback() -> None:
    r = rollout({"n1": "done", "n2": "failed", "n3": "pending"}, failure={"node": "n2", "error": "crashed"})
    assert next_fleet_step(r, {}, POLICY) == RollBack("n2", Reason.ROLLOUT_FAILED, True)


def test_resume_after_a_crash_mid_rollback_goes_on_newest_first() -> None:
    r = rollout({"n1": "done", "n2": "rolled-back", "n3": "failed"}, phase="rolling-back")
    rolled = {"n3": NodeResult("n3", "rolled-back", Reason.ROLLED_BACK)}
    assert next_fleet_step(r, {}, POLICY) == RollBack("n3", Reason.ROLLOUT_FAILED, False)
    r2 = rollout({"n1": "done", "n2": "rolled-back", "n3": "rolled-back"}, phase="rolling-back")
    assert next_fleet_step(r2, rolled, POLICY) == RollBack("n1", Reason.ROLLOUT_FAILED, False)


def test_a_failure_rolls_back_every_reached_node_newest_first() -> None:
    r = rollout({"n1": "done", "n2": "done", "n3": "failed", "n4": "pending"}, failure={"node": "n3"})
    assert next_fleet_step(r, {}, POLICY) == RollBack("n3", Reason.ROLLOUT_FAILED, True)
    back = rollout({"n1": "done", "n2": "done", "n3": "rolled-back", "n4": "pending"}, phase="rolling-back")
    results = {"n3": NodeResult("n3", "rolled-back", Reason.ROLLED_BACK)}
    assert next_fleet_step(back, results, POLICY) == RollBack("n2", Reason.ROLLOUT_FAILED, False)
    end = rollout({"n1": "rolled-back", "n2": "rolled-back", "n3": "rolled-back", "n4": "pending"},
                  phase="rolling-back")
    results = {n: NodeResult(n, "rolled-back", Reason.ROLLED_BACK) for n in ("n1", "n2", "n3")}
    assert next_fleet_step(end, results, POLICY) == Halt("rolled-back", Reason.ROLLED_BACK)


def test_a_rollback_failure_stops_and_suspends() -> None:
    r = rollout({"n1": "done", "n2": "failed"}, phase="rolling-back")
    results = {"n2": NodeResult("n2", "failed", Reason.ROLLBACK_FAILED, "rollback failed: no space")}
    assert next_fleet_step(r, results, POLICY) == Halt("rollback-failed", Reason.ROLLBACK_FAILED, ("n2",), suspend=True)


def test_an_unreachable_node_during_rollback_is_deferred_and_the_rest_go_on() -> None:
    r = rollout({"n1": "done", "n2": "rollback-deferred"}, phase="rolling-back")
    results = {"n2": NodeResult("n2", "rollback-deferred", Reason.NODE_DEFERRED)}
    assert next_fleet_step(r, results, POLICY) == RollBack("n1", Reason.ROLLOUT_FAILED, False)
    r = rollout({"n1": "rolled-back", "n2": "rollback-deferred"}, phase="rolling-back")
    results = {**results, "n1": NodeResult("n1", "rolled-back", Reason.ROLLED_BACK)}
    assert next_fleet_step(r, results, POLICY) == Halt("rolled-back", Reason.ROLLED_BACK, ("n2",))


def test_no_previous_revision_or_auto_rollback_off_halts() -> None:
    r = rollout({"n1": "failed", "n2": "pending"}, failure={"node": "n1"})
    expected = Halt("halted", Reason.ROLLOUT_HALTED, ("n1",), record_failure=True)
    assert next_fleet_step(r, {}, FleetPolicy(has_previous=False)) == expected
    assert next_fleet_step(r, {}, FleetPolicy(auto_rollback=False)) == expected


def test_a_node_lost_during_its_own_step_rolls_back_but_is_retried() -> None:
    # a record of this agent, and one of an older agent (a flag instead of the reason)
    for failure in ({"node": "n1", "reason": "NodeUnreachable"}, {"node": "n1", "unreachable": True}):
        r = rollout({"n1": "failed", "n2": "pending"}, failure=failure)
        assert next_fleet_step(r, {}, POLICY) == RollBack("n1", Reason.ROLLOUT_FAILED, record_failure=False)


def test_a_prune_refusal_is_not_rolled_back_on_the_refusing_node() -> None:
    r = rollout({"n1": "failed", "n2": "pending"}, failure={"node": "n1", "reason": "PruneRefused"})
    assert next_fleet_step(r, {}, POLICY) == Halt("rolled-back", Reason.ROLLED_BACK, ("n1",), record_failure=True)
    r = rollout({"n1": "done", "n2": "failed"}, failure={"node": "n2", "reason": "PruneRefused"})
    assert next_fleet_step(r, {}, POLICY) == RollBack("n1", Reason.ROLLOUT_FAILED, True)


def test_a_deferred_unreachable_node_leaves_the_rollout_progressing() -> None:
    r = rollout({"n1": "done", "n2": "deferred", "n3": "done"})
    results = {n: NodeResult(n, s, Reason.STEP_DONE) for n, s in (("n1", "done"), ("n2", "deferred"), ("n3", "done"))}
    assert next_fleet_step(r, results, POLICY) == Halt("progressing", Reason.NODE_DEFERRED, ("n2",))


def test_a_registry_outage_stops_the_rollout_where_it_is() -> None:
    r = rollout({"n1": "done", "n2": "waiting", "n3": "pending"})
    results = {"n1": NodeResult("n1", "done", Reason.STEP_DONE),
               "n2": NodeResult("n2", "waiting", Reason.IMAGE_PULL_BACKOFF)}
    assert next_fleet_step(r, results, POLICY) == Halt("progressing", Reason.IMAGE_PULL_BACKOFF, ("n2",))


def test_rollover_a_newer_commit_supersedes_between_batches_not_before_the_first() -> None:
    r = rollout({"n1": "pending", "n2": "pending"})
    assert next_fleet_step(r, {}, FleetPolicy(batch=1), superseded=True) == StepNodes(("n1",), Reason.ROLLOUT_STARTED)
    r = rollout({"n1": "done", "n2": "pending"})
    step = next_fleet_step(r, {"n1": NodeResult("n1", "done", Reason.STEP_DONE)}, FleetPolicy(batch=1), superseded=True)
    assert step == Halt("superseded", Reason.SUPERSEDED)


# --- condition: what status says ---------------------------------------------------------------------


def test_the_condition_follows_the_same_state() -> None:
    attempted = HEAD.revision
    ready = AgentState(applied=Applied(HEAD.sha, attempted), attempted=attempted, last=LastResult("applied"))
    assert (condition(ready, "").type, condition(ready, "").reason) == ("Ready", Reason.APPLIED)
    assert condition(ready, "disk full").type == "Stalled"
    rejected = AgentState(applied=APPLIED, attempted=attempted, last=LastResult("rejected"),
                          rejected=Rejection(HEAD.sha, "x", (PROBLEM,), "p1"))
    c = condition(rejected, "")
    assert (c.type, c.reason, c.problems) == ("Stalled", Reason.REVISION_REJECTED, (PROBLEM,))
    down = AgentState(applied=APPLIED, attempted=attempted, last=LastResult("source-error", "refused"),
                      rejected=Rejection(HEAD.sha, "x", (), "p1"))
    assert condition(down, "").message.startswith("Git source unavailable: refused; nodes keep")
    moving = AgentState(applied=APPLIED, attempted=attempted, last=LastResult("progressing"),
                        rollout=rollout({"n1": "done", "n2": "deferred"}))
    assert condition(moving, "").message == "rollout of main@b: progressing, 1/2 node(s)"
    assert condition(AgentState(), "").message == "no sync has run yet"


def test_an_outcome_gives_the_reason_of_its_final_result() -> None:
    from gitops_agent.agent import Outcome

    out = Outcome(result="suspended")
    out.explain(Reason.SUSPENDED)
    assert out.why is Reason.SUSPENDED
    out.result = "failed"  # a node failed later in the pass: the reason follows the result
    assert out.why is Reason.ROLLOUT_FAILED
    fresh = Outcome()
    fresh.explain(Reason.APPLIED)  # a new head: no result yet
    fresh.result = "in-sync"
    assert fresh.why is Reason.IN_SYNC


def test_the_break_glass_rollback_goes_to_the_stable_revision_before_or_the_one_named() -> None:
    import pytest

    from gitops_agent.decide import rollback_target
    from gitops_agent.errors import AgentError
    from gitops_agent.state import Stable

    stable = (Stable("main@sha1:" + "1" * 40, "1" * 40), Stable("main@sha1:" + "2" * 40, "2" * 40),
              Stable("main@sha1:" + "3" * 40, "3" * 40))
    assert rollback_target(stable, "3" * 40, None) == stable[1]
    assert rollback_target(stable, "9" * 40, None) == stable[2]  # the current one is not stable (rebuilt): the newest
    assert rollback_target(stable, None, "main@1111") == stable[0]
    assert rollback_target(stable, None, stable[1].revision) == stable[1]
    with pytest.raises(AgentError, match="no earlier stable revision"):
        rollback_target(stable, "1" * 40, None)
    with pytest.raises(AgentError, match="matches 0 stable revision"):
        rollback_target(stable, None, "main@abcd")
    with pytest.raises(AgentError, match="matches 0"):
        rollback_target(stable, None, "12")  # too short a prefix matches nothing


# --- maintenance windows (the clock injected) ---------------------------------------------------

NIGHTLY = Schedule("Europe/Berlin", (Window("0 2 * * *", timedelta(hours=3)),))
NIGHTLY_STRICT = Schedule("Europe/Berlin", NIGHTLY.allow, (), "inWindow")
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)  # 13:00 in Berlin: the nightly window is closed
NIGHT = datetime(2026, 3, 10, 2, 0, tzinfo=timezone.utc)  # 03:00 in Berlin: open


def test_closed_windows_from_the_injected_clock() -> None:
    schedules = {"n1": NIGHTLY, "n2": NIGHTLY_STRICT, "n3": None}
    assert closed_windows(schedules, NOON) == Closed(frozenset({"n1", "n2"}), frozenset({"n2"}))
    assert closed_windows(schedules, NIGHT) == Closed()
    assert closed_windows(schedules, NOON, ignore=True) == Closed()  # `sync --ignore-window`, `rollback`


def test_a_closed_window_holds_a_node_that_has_not_started_and_the_others_go_on() -> None:
    closed = closed_windows({"n1": NIGHTLY, "n2": None, "n3": NIGHTLY}, NOON)
    r = rollout({"n1": "pending", "n2": "pending", "n3": "pending"})
    assert next_fleet_step(r, {}, POLICY, closed=closed) == StepNodes(("n2",), Reason.ROLLOUT_STARTED)
    r = rollout({"n1": "pending", "n2": "done", "n3": "pending"})
    step = next_fleet_step(r, {"n2": NodeResult("n2", "done", Reason.STEP_DONE)}, POLICY, closed=closed)
    assert step == Halt("progressing", Reason.WAITING_FOR_WINDOW, ("n1", "n3"))


def test_a_window_closing_mid_rollout_finishes_the_node_on_its_way_then_waits() -> None:
    closed = closed_windows({"n1": NIGHTLY, "n2": NIGHTLY}, NOON)
    r = rollout({"n1": "updating", "n2": "pending"})  # n1 was started inside the window (or before a crash)
    assert next_fleet_step(r, {}, FleetPolicy(batch=1), closed=closed) == StepNodes(("n1",), Reason.ROLLOUT_RESUMED)
    r = rollout({"n1": "done", "n2": "pending"})
    step = next_fleet_step(r, {"n1": NodeResult("n1", "done", Reason.STEP_DONE)}, FleetPolicy(batch=1), closed=closed)
    assert step == Halt("progressing", Reason.WAITING_FOR_WINDOW, ("n2",))


def test_a_node_held_by_its_window_starts_once_it_opens() -> None:
    r = rollout({"n1": "done", "n2": "window"})
    held = closed_windows({"n1": NIGHTLY, "n2": NIGHTLY}, NOON)
    assert next_fleet_step(r, {}, FleetPolicy(batch=1), closed=held) == StepNodes(("n1",), Reason.ROLLOUT_RESUMED)
    r = rollout({"n1": "done", "n2": "pending"})  # the next pass resets `window` to pending (fleet._start)
    opened = closed_windows({"n1": NIGHTLY, "n2": NIGHTLY}, NIGHT)
    step = next_fleet_step(r, {"n1": NodeResult("n1", "done", Reason.STEP_DONE)}, FleetPolicy(batch=1), closed=opened)
    assert step == StepNodes(("n2",), Reason.ROLLOUT_STARTED)


def test_drift_repair_in_window_only_skips_done_nodes_while_closed() -> None:
    r = rollout({"n1": "done", "n2": "done"})
    closed = closed_windows({"n1": NIGHTLY_STRICT, "n2": NIGHTLY}, NOON)
    assert next_fleet_step(r, {}, FleetPolicy(batch=1), closed=closed) == StepNodes(("n2",), Reason.ROLLOUT_RESUMED)
    step = next_fleet_step(r, {"n2": NodeResult("n2", "done", Reason.STEP_DONE)}, FleetPolicy(batch=1), closed=closed)
    assert step == Complete()


def test_status_says_when_the_window_opens() -> None:
    r = rollout({"n1": "done", "n2": "window"})
    state = AgentState(applied=APPLIED, attempted=HEAD.revision, rollout=r)
    cond = condition(state, "", {"n1": NIGHTLY, "n2": NIGHTLY}, NOON)
    assert cond.type == "Progressing" and cond.reason == Reason.WAITING_FOR_WINDOW
    assert cond.message == "rollout of main@b held: node n2: waiting for window (opens 02:00 Europe/Berlin, in 13 h)"
