"""The lumbosacral pathway's steps: open an episode, apply an event, mark an item done, fire
a timer.

Each is a pure function of (episode, input, clock reading, defaults) returning a
:class:`Step`, the engine's :class:`~engine.pathway.PathwayCode` calls them (``code.py``
binds them) and :mod:`engine.decision` makes a Decision of what they return. A refusal
returns the episode unchanged with the rules and reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine.clinic_time import add_days, day_start, shift_local, to_utc
from engine.due import finish_task, open_task, refresh_task
from engine.episode import EpisodeState, Patient, Step, TimerRequest
from engine.errors import InvalidEvent, RuleRefusal
from engine.events import ClinicalEvent, Opening, check_override_reason
from engine.settings import PathwayDefaults
from pathways import LUMBOSACRAL_RADICULOPATHY, of_episode, opening_version
from pathways.lumbosacral_radiculopathy.chart import CHART
from pathways.lumbosacral_radiculopathy.context import StepContext
from pathways.lumbosacral_radiculopathy.handlers import HANDLERS, intensive_follow_up
from pathways.lumbosacral_radiculopathy.memory import keep_what_rules_read
from pathways.lumbosacral_radiculopathy.urgency import urgency

# Each phase, the timing (days from onset) it starts at, the chart event and its rule.
PHASE_STARTS = (
    ("subacute", "subacute_from_days", "enter_subacute", "PH-SUBACUTE"),
    ("chronic", "chronic_from_days", "enter_chronic", "PH-CHRONIC"),
)
PATIENT_MARKERS = (("prior_lbp", "PRED-PRIOR-LBP"), ("workers_comp", "PRED-WORKCOMP"))
PATIENT_POPULATIONS = (
    ("connective_tissue_disorder", "SP-CTD"),
    ("pelvic_floor_dysfunction", "SP-PELVIC"),
)


def _context(state: EpisodeState, at: datetime, now: datetime, d: PathwayDefaults) -> StepContext:
    step = Step(state=state, accepted=True)
    CHART.validate_stored(state.configuration, state.history)
    return StepContext(state, step, at, now, d)


def open_episode(
    opening: Opening, episode_id: str, now: datetime, defaults: PathwayDefaults
) -> Step:
    """Enrol a patient: the phase their onset implies, the first due items and timers."""
    patient_in = opening.patient
    flags = {
        name: bool(getattr(patient_in, name))
        for name in type(patient_in).model_fields
        if name not in ("ref", "age", "sex")
    }
    enrolled = to_utc(opening.enrolled_at or now)
    state = EpisodeState(
        id=episode_id,
        patient=Patient(patient_in.ref, patient_in.age, patient_in.sex, flags),
        onset=opening.onset,
        enrolled_at=enrolled,
        clinic_timezone=opening.clinic_timezone,
        coordinator=opening.coordinator,
        team=opening.team,
        pathway_id=LUMBOSACRAL_RADICULOPATHY,
        # An opening that names no version (the engine called directly) takes the
        # clinic's choice.
        pathway_version=opening.pathway_version or opening_version(None),
        status="active",
        configuration=CHART.initial_configuration(),
        history={},
        facts={},
        tasks={},
    )
    ctx = _context(state, enrolled, now, defaults)
    ctx.step.add_rule("PH-ACUTE")
    pathway = of_episode(state)
    for phase, timing, chart_event, rule in PHASE_STARTS:
        starts = day_start(add_days(state.onset, pathway.timing(timing)), state.tz)
        if starts <= enrolled:  # late enrolment: start in the phase the onset implies
            ctx.send(chart_event)
            ctx.step.add_rule(rule)
        else:
            ctx.step.timers.append(TimerRequest("phase", starts, f"phase:{phase}", {"to": phase}))
    _patient_markers(ctx)
    first_window = shift_local(
        enrolled, state.tz, days=pathway.timing("first_follow_up_opens_days")
    )
    first_due = (
        first_window
        if intensive_follow_up(ctx)
        else shift_local(enrolled, state.tz, days=pathway.timing("first_follow_up_due_days"))
    )
    open_task(
        state,
        ctx.step,
        now,
        key="first_follow_up",
        rule="FU-FIRST",
        urgency=urgency("FU-FIRST", defaults),
        due_at=first_due,
        window_start=first_window,
    )
    ctx.step.add_rule("FU-FIRST")
    review_opens = day_start(add_days(state.onset, defaults.conservative_window_days), state.tz)
    review = open_task(
        state,
        ctx.step,
        now,
        key="six_week_review",
        rule="FU-6W",
        urgency=urgency("FU-6W", defaults),
        due_at=review_opens + timedelta(days=defaults.review_days_to_complete),
        window_start=review_opens,
    )
    if review.status != "upcoming":
        ctx.send("start_review")
        ctx.step.add_rule("FU-6W")
    return ctx.step


def _patient_markers(ctx: StepContext) -> None:
    patient, facts = ctx.state.patient, ctx.facts
    markers = [rule for flag, rule in PATIENT_MARKERS if patient.has(flag)]
    if patient.sex == "female":
        markers.append("PRED-FEMALE")
    facts["risk_markers"] = markers
    populations = [rule for flag, rule in PATIENT_POPULATIONS if patient.has(flag)]
    if patient.age is not None and patient.age >= ctx.defaults.elderly_age:
        populations.append("FU-ELDERLY")
    facts["populations"] = populations
    ctx.step.add_rule(*markers, *populations)


def check_event(state: EpisodeState, event: ClinicalEvent) -> None:
    """Until 1.1.0 an override reason is checked before anything else, as bad input is;
    from 1.1.0 (NONOVERRIDABLE-FIRST) only where an override could count
    (:func:`.handlers.settle`).

    Raises:
        InvalidEvent: on 1.0.0, an override reason too short to document anything.
    """
    if not of_episode(state).corrects("NONOVERRIDABLE-FIRST"):
        check_override_reason(getattr(event.data, "override_reason", None))


def apply_event(
    state: EpisodeState, event: ClinicalEvent, now: datetime, defaults: PathwayDefaults
) -> Step:
    """Apply one clinical event; a refusal leaves the episode as it was."""
    if state.is_final:
        ended = f"the episode is {state.status}: it accepts no further events"
        if of_episode(state).corrects("EP-FINAL"):
            return Step(state=state, accepted=False, rules=["EP-FINAL"], reason=ended)
        raise InvalidEvent("type", ended)
    at = to_utc(event.occurred_at or now)
    ctx = _context(state.clone(), at, now, defaults)
    data: dict[str, Any] = event.data.model_dump(mode="json", exclude_none=True)
    try:
        HANDLERS[event.type](ctx, data)
    except RuleRefusal as refusal:
        return Step(
            state=state,
            accepted=False,
            rules=refusal.rules + [r for r in ctx.step.rules if r not in refusal.rules],
            reason=refusal.reason,
            override_possible=refusal.override_possible,
            eligible_from=refusal.eligible_from,
        )
    keep_what_rules_read(ctx.facts)
    return ctx.step


def complete_task(state: EpisodeState, key: str, now: datetime) -> Step:
    """A coordinator marks a due item done (the worklist's "done"): its timers are dropped.

    Raises:
        InvalidEvent: the episode has ended, or the item is not open.
    """
    if state.is_final:
        raise InvalidEvent("task", f"the episode is {state.status}: its items are closed")
    step = Step(state=state.clone(), accepted=True)
    if not finish_task(step.state, step, key, to_utc(now), "done"):
        raise InvalidEvent("task", f"{key} is not open")
    step.add_rule(step.state.tasks[key].rule)
    return step


def fire_timer(
    state: EpisodeState,
    kind: str,
    payload: dict[str, Any],
    due_at: datetime,
    now: datetime,
    defaults: PathwayDefaults,
) -> Step:
    """Act on a due timer; a timer whose episode has moved on is a no-op."""
    if state.is_final:
        return Step(state=state, accepted=True, noop=True, reason="episode is final")
    ctx = _context(state.clone(), due_at, now, defaults)
    if kind == "phase":
        moved = False
        for phase, _, chart_event, rule in PHASE_STARTS:
            if phase == payload.get("to") and ctx.send(chart_event):
                ctx.step.add_rule(rule)
                moved = True
    elif kind == "task":
        moved = _step_task(ctx, payload["key"])
    else:
        raise ValueError(f"unknown timer kind {kind!r}")
    if not moved:
        return Step(state=state, accepted=True, noop=True, reason="the episode has moved on")
    return ctx.step


def _step_task(ctx: StepContext, key: str) -> bool:
    state = ctx.state
    task = state.tasks.get(key)
    if task is None or not task.is_open:
        return False
    changed = refresh_task(task, ctx.step, ctx.now)
    ctx.step.add_rule(task.rule)
    if key == "six_week_review" and task.status != "upcoming" and ctx.send("start_review"):
        changed = True
    if (
        key == "referral"
        and task.status in ("overdue", "escalated")
        and ctx.send("deadline_missed")
    ):
        changed = True
    return changed
