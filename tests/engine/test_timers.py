"""Timers and due items at the right instants: DST, month ends, late enrolment."""

from __future__ import annotations

from datetime import UTC, date, datetime

from engine.clinic_time import add_months, day_start
from tests.engine.helpers import Episode


def test_months_clamp_to_the_last_day() -> None:
    assert add_months(date(2026, 1, 31), 3) == date(2026, 4, 30)
    assert add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


def test_phase_changes_at_local_midnight_across_dst() -> None:
    # Onset 2026-02-20 in London: day 42 is 2026-04-03, after the clocks go forward (29 March).
    ep = Episode(onset="2026-02-20", tz="Europe/London")
    timers = {t.ref: t.due_at for t in ep.timers}
    assert timers["phase:subacute"] == datetime(2026, 4, 2, 23, 0, tzinfo=UTC)
    assert timers["phase:chronic"] == datetime(2026, 5, 14, 23, 0, tzinfo=UTC)
    ep.run_until(datetime(2026, 4, 2, 22, 59, tzinfo=UTC))
    assert ep.state.phase == "acute"
    ep.run_until(datetime(2026, 4, 2, 23, 0, tzinfo=UTC))
    assert ep.state.phase == "subacute"


def test_first_follow_up_keeps_wall_clock_time_across_dst() -> None:
    # Enrolled 12:00 London on 20 March (GMT); +14 days is 3 April 12:00 BST = 11:00 UTC.
    ep = Episode(onset="2026-03-10", enrolled_day=10, tz="Europe/London")
    task = ep.task("first_follow_up")
    assert task.window_start == datetime(2026, 4, 3, 11, 0, tzinfo=UTC)
    assert task.due_at == datetime(2026, 4, 17, 11, 0, tzinfo=UTC)


def test_first_follow_up_moves_upcoming_due_overdue_escalated() -> None:
    ep = Episode()
    assert ep.task("first_follow_up").status == "upcoming"
    ep.run_until(ep.day(14))
    assert ep.task("first_follow_up").status == "due"
    ep.run_until(ep.day(28))
    assert ep.task("first_follow_up").status == "overdue"
    ep.run_until(ep.day(35))
    assert ep.task("first_follow_up").status == "escalated"


def test_six_week_review_opens_and_moves_management() -> None:
    ep = Episode()
    ep.run_until(ep.day(41))
    assert ep.state.management == "conservative"
    ep.run_until(ep.day(42))
    assert ep.state.management == "review"
    assert ep.task("six_week_review").status == "due"


def test_three_month_referral_deadline_goes_overdue_and_escalates() -> None:
    ep = Episode(onset="2026-01-31")
    ep.send(1, "assessment", vas_leg=6, odi=40)
    ep.send(20, "assessment", vas_leg=6, odi=40)
    task = ep.task("referral")
    assert task.rule == "REF-3M"
    assert task.due_at == day_start(date(2026, 4, 30), ep.tz)
    ep.run_until(datetime(2026, 4, 30, tzinfo=UTC))
    assert ep.state.referral == "overdue"
    ep.run_until(datetime(2026, 5, 2, tzinfo=UTC))
    assert ep.task("referral").status == "escalated"


def test_late_enrolment_starts_in_implied_phase_with_missed_items_due_once() -> None:
    ep = Episode(enrolled_day=56)
    assert ep.state.phase == "subacute"
    assert ep.state.management == "review"
    review = ep.task("six_week_review")
    assert review.status == "due"
    assert review.due_at == day_start(date(2026, 3, 3), ep.tz)
    assert not [t for t in ep.timers if t.ref == "phase:subacute"]


def test_very_late_enrolment_is_chronic() -> None:
    ep = Episode(enrolled_day=100)
    assert ep.state.phase == "chronic"


def test_periodic_review_interval_is_shorter_for_workers_comp() -> None:
    ep = Episode(workers_comp=True)
    ep.send(0, "assessment", vas_leg=6, odi=40)
    ep.send(14, "assessment", vas_leg=6, odi=40)
    review = ep.task("periodic_review_1")
    assert review.rule == "FU-ACTIVE"
    assert review.due_at == day_start(date(2026, 2, 2), ep.tz)


def test_reviews_after_twelve_weeks_are_three_monthly() -> None:
    ep = Episode()
    ep.send(0, "assessment", vas_leg=6, odi=40)
    ep.send(20, "assessment", vas_leg=6, odi=40)
    ep.send(70, "assessment", vas_leg=6, odi=40)
    review = ep.task("periodic_review_2")
    assert review.rule == "FU-3M"
    assert review.due_at == day_start(add_months(date(2026, 3, 16), 3), ep.tz)


def test_ces_emergency_task_due_in_six_hours() -> None:
    ep = Episode()
    ep.send(21, "assessment", vas_leg=8, odi=60, ces_screen={"saddle_anaesthesia": True})
    task = ep.task("ces_emergency")
    assert task.rule == "RF-CES"
    assert (task.due_at - task.window_start).total_seconds() == 6 * 3600


def test_timer_for_resolved_episode_is_a_no_op() -> None:
    ep = Episode()
    ep.send(10, "resolve", reason="recovered")
    assert ep.timers == []
    assert ep.state.status == "resolved"
