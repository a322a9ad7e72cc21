"""A step's decision is whole: the new state, the audit row's facts with the version that
decided it, the event row, and the view — the unit of work only writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.decision import decide_event, decide_opening, decide_task_done, decide_timer
from engine.events import parse_event, parse_opening
from engine.settings import DEFAULTS
from pathways.lumbosacral_radiculopathy.code import CODE

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)
OPENING = parse_opening({"patient": {"ref": "P-1"}, "onset": "2026-01-05"})


def test_an_opening_decides_the_state_its_audit_row_and_its_view() -> None:
    opened = decide_opening(CODE, OPENING, "ep-1", NOW, DEFAULTS, actor="alex")
    audit = opened.audit
    assert (audit["trigger"], audit["type"], audit["actor"]) == ("open", "open", "alex")
    assert audit["configuration_before"] == []
    assert audit["configuration_after"] == opened.state.configuration
    assert (audit["pathway_id"], audit["pathway_version"]) == ("lumbosacral-radiculopathy", "1.0.0")
    assert opened.view["id"] == "ep-1"
    assert opened.view is opened.view  # built once


def test_a_refused_event_is_a_decision_with_the_episode_unchanged() -> None:
    opened = decide_opening(CODE, OPENING, "ep-1", NOW, DEFAULTS, actor=None)
    mri = parse_event({"type": "order", "data": {"kind": "mri"}, "actor": "dr-b"})
    refused = decide_event(CODE, opened.state, mri, NOW, DEFAULTS)
    assert not refused.step.accepted
    assert refused.audit["accepted"] is False
    assert refused.audit["rules"][0] == "IMG-NO-EARLY"
    assert refused.audit["configuration_after"] == opened.state.configuration
    assert refused.event is not None
    assert (refused.event["type"], refused.event["accepted"]) == ("order", False)
    assert refused.audit["payload"]["data"]["kind"] == "mri"


def test_a_timer_and_a_task_done_decide_their_audit_facts() -> None:
    opened = decide_opening(CODE, OPENING, "ep-1", NOW, DEFAULTS, actor=None)
    [first] = [t for t in opened.step.timers if t.ref == "task:first_follow_up"]
    timer = {"kind": first.kind, "ref": first.ref, "payload": first.payload, "due_at": first.due_at}
    fired = decide_timer(CODE, opened.state, timer, first.due_at, DEFAULTS)
    assert fired.audit["trigger"] == "timer"
    assert fired.audit["type"] == "task:first_follow_up"
    assert fired.outcome == "FU-FIRST"
    done = decide_task_done(
        CODE, fired.state, "first_follow_up", "alex", first.due_at + timedelta(hours=1), DEFAULTS
    )
    assert (done.audit["type"], done.audit["payload"]) == ("task_done", {"task": "first_follow_up"})
    assert done.state.tasks["first_follow_up"].status == "done"


def test_a_handover_moves_the_coordinator_and_nothing_of_the_clinical_state() -> None:
    opening = parse_opening({"patient": {"ref": "P-1"}, "onset": "2026-01-05",
                             "coordinator": "alex", "team": "spine-north"})  # fmt: skip
    opened = decide_opening(CODE, opening, "ep-1", NOW, DEFAULTS, actor=None)
    assert opened.audit["payload"]["team"] == "spine-north"
    to_sam = parse_event({"type": "handover", "data": {"from": "alex", "to": "sam"}, "actor": "a"})
    handed = decide_event(CODE, opened.state, to_sam, NOW, DEFAULTS)
    assert handed.step.accepted
    assert handed.step.rules == []
    assert (handed.state.coordinator, handed.state.team) == ("sam", "spine-north")
    assert handed.state.configuration == opened.state.configuration
    assert handed.state.facts == opened.state.facts
    assert handed.step.timers == []
    assert handed.view["coordinator"] == "sam"
    assert handed.audit["payload"]["data"] == {"from": "alex", "to": "sam"}
    stale = decide_event(CODE, handed.state, to_sam, NOW, DEFAULTS)  # alex no longer has it
    assert not stale.step.accepted
    assert "sam's" in (stale.step.reason or "")
    assert stale.state.coordinator == "sam"
    release = parse_event({"type": "handover", "data": {"from": "sam"}, "actor": "sam"})
    assert decide_event(CODE, handed.state, release, NOW, DEFAULTS).state.coordinator is None


def test_an_opening_without_a_team_keeps_the_digest_it_had_before_teams() -> None:
    from engine.decision import opening_json

    assert "team" not in opening_json(OPENING)


def test_a_reopened_item_is_open_again_as_late_as_its_dates_say() -> None:
    import pytest

    from engine.decision import decide_task_reopened
    from engine.errors import InvalidEvent

    opened = decide_opening(CODE, OPENING, "ep-1", NOW, DEFAULTS, actor=None)
    with pytest.raises(InvalidEvent, match="first_follow_up"):
        decide_task_reopened(CODE, opened.state, "first_follow_up", "alex", NOW, DEFAULTS)
    done = decide_task_done(CODE, opened.state, "first_follow_up", "alex", NOW, DEFAULTS)
    item = done.state.tasks["first_follow_up"]
    late = item.due_at + timedelta(hours=1)
    reopened = decide_task_reopened(CODE, done.state, "first_follow_up", "alex", late, DEFAULTS)
    again = reopened.state.tasks["first_follow_up"]
    assert (again.status, again.completed_at) == ("overdue", None)
    assert [t.ref for t in reopened.step.timers] == ["task:first_follow_up"]
    assert reopened.audit["type"] == "task_reopened"
    assert reopened.audit["payload"] == {"reopen": "first_follow_up"}
    assert done.state.tasks["first_follow_up"].status == "done"  # the step made a copy


def test_an_item_a_later_one_of_its_kind_replaced_is_not_reopened() -> None:
    import dataclasses

    import pytest

    from engine.decision import decide_task_reopened
    from engine.errors import InvalidEvent

    opened = decide_opening(CODE, OPENING, "ep-1", NOW, DEFAULTS, actor=None)
    done = decide_task_done(CODE, opened.state, "first_follow_up", "alex", NOW, DEFAULTS)
    state = done.state.clone()
    first = state.tasks["first_follow_up"]
    later = dataclasses.replace(first, key="first_follow_up_2", status="due", completed_at=None)
    state.tasks[later.key] = later
    with pytest.raises(InvalidEvent, match="replaced by first_follow_up_2"):
        decide_task_reopened(CODE, state, "first_follow_up", "alex", NOW, DEFAULTS)
