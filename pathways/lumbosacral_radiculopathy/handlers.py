"""What each clinical event does to an episode (CONTRACT.md section 2).

A handler reads the validated data (a plain dict), changes the episode through the
:class:`StepContext`, and raises :class:`RuleRefusal` when the guideline forbids the request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from engine.clinic_time import add_days, add_months, day_start, local_date, shift_local
from engine.due import finish_task, open_task, open_tasks
from engine.errors import RuleRefusal
from engine.events import check_override_reason
from pathways import of_episode
from pathways.lumbosacral_radiculopathy.context import StepContext
from pathways.lumbosacral_radiculopathy.corrected_findings import (
    persisting_without_baseline,
    plexus_distribution,
    serious_combination,
)
from pathways.lumbosacral_radiculopathy.findings import (
    Findings,
    motor_scores,
    read_assessment,
    response,
)
from pathways.lumbosacral_radiculopathy.guards import (
    Verdict,
    check_order,
    check_procedure,
    check_treatment,
    imaging_indicated_at_3_months,
)
from pathways.lumbosacral_radiculopathy.invasive_guards import (
    INTERVENTIONS,
    SURGERY,
    check_invasive_procedure,
    check_plexus_imaging,
    procedures_done,
)
from pathways.lumbosacral_radiculopathy.urgency import urgency

FLAG_RULES = {
    "ces": ("RF-CES", "emergency"),
    "progressive_deficit": ("RF-PROG", "urgent"),
    "malignancy": ("RF-SERIOUS", "urgent"),
    "infection": ("RF-SERIOUS", "urgent"),
    "fracture": ("RF-SERIOUS", "urgent"),
    "trauma": ("RF-SERIOUS", "urgent"),
}
IMAGING_ORDERS = ("mri", "ct", "xray", "xray_flexion_extension", "mri_plexus")
REFERRAL_ORDERS = ("specialist_referral", "surgical_referral")


def intensive_follow_up(ctx: StepContext) -> bool:
    """FU-ELDERLY and PRED-WORKCOMP shorten the follow-up intervals."""
    age = ctx.state.patient.age
    elderly = age is not None and age >= ctx.defaults.elderly_age
    return elderly or ctx.state.patient.has("workers_comp")


# --- red flags -----------------------------------------------------------------------------


def raise_flag(ctx: StepContext, kind: str, from_findings: bool = False) -> None:
    rule, level = FLAG_RULES[kind]
    ctx.step.add_rule(rule)
    current = ctx.facts.get("red_flag")
    if current is not None and ctx.state.in_red_flag:
        if level == "emergency" and current["level"] != "emergency":
            ctx.send("raise_emergency_flag")
            current.update(rule=rule, kind=kind, level=level)
        current.setdefault("kinds", []).append(kind)
    else:
        ctx.send(f"raise_{level}_flag")
        ctx.facts["red_flag"] = {
            "rule": rule,
            "kind": kind,
            "level": level,
            "raised_at": _iso(ctx),
            "kinds": [kind],
        }
        if from_findings and of_episode(ctx.state).corrects("RF-CARE"):
            ctx.facts["red_flag"]["from_findings"] = True
    hours = ctx.defaults.ces_task_hours if level == "emergency" else ctx.defaults.urgent_task_hours
    key = "ces_emergency" if level == "emergency" else "urgent_workup"
    if key not in ctx.state.tasks or not ctx.state.tasks[key].is_open:
        open_task(
            ctx.state,
            ctx.step,
            ctx.now,
            key=key,
            rule=rule,
            urgency=urgency(rule, ctx.defaults, level),
            due_at=ctx.at + timedelta(hours=hours),
            window_start=ctx.at,
        )


def _iso(ctx: StepContext) -> str:
    return ctx.at.isoformat().replace("+00:00", "Z")


def _active_flag(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    flag: dict[str, Any] | None = ctx.facts.get("red_flag")
    rule = FLAG_RULES[data["kind"]][0]
    if flag is None or not ctx.state.in_red_flag:
        raise RuleRefusal([rule], "no red flag is active on this episode", False)
    if data["kind"] not in flag.get("kinds", [flag["kind"]]):
        raise RuleRefusal(
            [rule], f"the active red flag is {flag['kind']}, not {data['kind']}", False
        )
    ctx.step.add_rule(flag["rule"])
    return flag


def _finish_workup(ctx: StepContext) -> None:
    for key in ("ces_emergency", "urgent_workup"):
        finish_task(ctx.state, ctx.step, key, ctx.now, "done")


def on_red_flag(ctx: StepContext, data: dict[str, Any]) -> None:
    raise_flag(ctx, data["kind"])
    if data["kind"] == "trauma" and of_episode(ctx.state).corrects("IMG-PLEXUS-TRAUMA"):
        ctx.facts["trauma_on"] = local_date(ctx.at, ctx.state.tz).isoformat()


def on_red_flag_cleared(ctx: StepContext, data: dict[str, Any]) -> None:
    _active_flag(ctx, data)
    _end_flag(ctx)


def _end_flag(ctx: StepContext) -> None:
    ctx.send("clear_red_flag")
    ctx.facts["red_flag"] = None
    _finish_workup(ctx)


def _treated_flag_settles(ctx: StepContext, found: Findings) -> bool:
    """RF-CARE (from 1.1.0): a flag the findings raised (RF-CES, RF-PROG) ends once its
    treating operation is recorded and a later visit shows neither progression nor the
    signs that raised it."""
    flag = ctx.facts.get("red_flag")
    if not ctx.state.in_red_flag or not flag or not flag.get("from_findings"):
        return False
    operated = procedures_done(ctx.facts, SURGERY)
    treated = any(at > flag["raised_at"] for at in operated)
    if treated and not found.ces_signs and not found.progression:
        ctx.step.add_rule(flag["rule"])
        return True
    return False


def on_red_flag_confirmed(ctx: StepContext, data: dict[str, Any]) -> None:
    flag = _active_flag(ctx, data)
    ctx.send("confirm_red_flag")
    ctx.send("referral_made")
    flag["confirmed_at"] = _iso(ctx)
    _finish_workup(ctx)
    finish_task(ctx.state, ctx.step, "referral", ctx.now, "done")


# --- assessments ---------------------------------------------------------------------------


def on_assessment(ctx: StepContext, data: dict[str, Any]) -> None:
    facts, state = ctx.facts, ctx.state
    found = read_assessment(data, facts, state.patient.flags, ctx.defaults)
    if found.missing_content:
        ctx.step.add_rule("FU-CONTENT")
    visit = {"vas_leg": data["vas_leg"], "odi": data["odi"], "at": _iso(ctx)}
    pathway = of_episode(state)
    if facts.get("baseline") is None:
        facts["baseline"] = visit
        if pathway.corrects("FU-RESPONSE-NO-BASELINE") and persisting_without_baseline(
            state, ctx.at, data, ctx.defaults
        ):
            found.response = facts["response"] = "stable"
            ctx.step.add_rule("FU-RESPONSE")
    else:
        facts["response"] = found.response
        ctx.step.add_rule("FU-RESPONSE")
    facts["last_assessment"] = visit
    facts["assessments"] = facts.get("assessments", 0) + 1
    _since_surgery(ctx, data)
    scores = motor_scores(data)
    if scores:
        facts["last_motor"] = scores
    facts["deficit"] = found.deficit
    facts["markers"] = found.markers
    if found.markers:
        ctx.step.add_rule("RF-MARKERS")
    serious = serious_combination(found.markers) if pathway.corrects("RF-MARKERS-SERIOUS") else None
    if pathway.corrects("SP-PLEXUS-ADJACENT"):
        found.several_dermatomes = plexus_distribution(data, ctx.defaults)
    _risk_markers(ctx, data, found.slr_positive)
    _populations(ctx, found)
    treated = pathway.corrects("RF-CARE") and _treated_flag_settles(ctx, found)
    if treated:
        _end_flag(ctx)
    elif found.ces_signs:
        raise_flag(ctx, "ces", from_findings=True)
    elif found.progression:
        raise_flag(ctx, "progressive_deficit", from_findings=True)
    elif serious is not None:
        raise_flag(ctx, serious)
    if not state.in_red_flag:
        _referral_triggers(ctx, found.severe_disabling, found.deficit, found.response)
    _assessment_completes_reviews(ctx)
    if (
        local_date(ctx.at, state.tz)
        >= add_months(state.onset, pathway.timing("persisting_pain_months"))
        and found.response in ("stable", "worsening")
        and imaging_indicated_at_3_months(state)
    ):
        ctx.step.add_rule("IMG-3M")


def _since_surgery(ctx: StepContext, data: dict[str, Any]) -> None:
    """SCS-POSTOP (from 1.1.0): leg pain against the last visit before the operation, at a
    visit the configured number of weeks or more after it."""
    before = ctx.facts.get("before_surgery")
    operated = procedures_done(ctx.facts, SURGERY)
    if not before or not operated:
        return
    weeks = (ctx.at - datetime.fromisoformat(max(operated))).days / 7
    if weeks >= ctx.defaults.scs_after_surgery_weeks:
        ctx.facts["since_surgery"] = response(before, data, False, ctx.defaults)


def _risk_markers(ctx: StepContext, data: dict[str, Any], slr: bool) -> None:
    markers: list[str] = ctx.facts.setdefault("risk_markers", [])
    if slr and "PRED-SLR" not in markers:
        markers.append("PRED-SLR")
        ctx.step.add_rule("PRED-SLR")
    baseline = ctx.facts["baseline"]
    high = baseline["vas_leg"] >= ctx.defaults.high_vas
    persisting = ctx.facts.get("response") in ("stable", "worsening")
    if high and persisting and "PRED-HIGH-VAS" not in markers:
        markers.append("PRED-HIGH-VAS")
        ctx.step.add_rule("PRED-HIGH-VAS")


def _populations(ctx: StepContext, found: Findings) -> None:
    populations: list[str] = ctx.facts.setdefault("populations", [])
    not_improving = ctx.facts.get("response") in ("stable", "worsening")
    for rule, present in (
        ("SP-PLEXUS", found.several_dermatomes),
        ("SP-BILATERAL", found.bilateral and not_improving),
        ("SP-STENOSIS", found.claudication),
    ):
        if present and rule not in populations:
            populations.append(rule)
            ctx.step.add_rule(rule)


def _referral_triggers(ctx: StepContext, severe: bool, deficit: bool, response: str) -> None:
    state = ctx.state
    pathway = of_episode(state)
    urgent = pathway.timing("urgent_referral_days")
    persisting = pathway.timing("persisting_pain_months")
    if severe:
        ctx.facts["severe_disabling"] = True
        _refer(ctx, "REF-2W-SEVERE", shift_local(ctx.at, state.tz, days=urgent))
    elif deficit:
        _refer(ctx, "REF-2W-DEFICIT", shift_local(ctx.at, state.tz, days=urgent))
    elif response in ("stable", "worsening"):
        _refer(ctx, "REF-3M", day_start(add_months(state.onset, persisting), state.tz))
    elif response == "improving" and state.referral == "due":
        task = state.tasks.get("referral")
        if task is not None and task.rule == "REF-3M" and ctx.send("referral_withdrawn"):
            finish_task(state, ctx.step, "referral", ctx.now, "cancelled")
            ctx.step.add_rule("REF-3M")


def _refer(ctx: StepContext, rule: str, deadline: datetime) -> None:
    """Make the referral due, or bring its deadline forward to the stricter trigger."""
    state = ctx.state
    task = state.tasks.get("referral")
    if state.referral == "not_indicated":
        ctx.send("referral_indicated")
    elif state.referral != "due" or task is None or not task.is_open or task.due_at <= deadline:
        return
    ctx.step.add_rule(rule)
    # From 1.1.0 a deadline already missed when the referral is first known (a late
    # presenter's three months) makes it overdue at once, not due by the end of the day.
    missed = deadline <= ctx.now and of_episode(state).corrects("FU-RESPONSE-NO-BASELINE")
    task = open_task(
        state,
        ctx.step,
        ctx.now,
        key="referral",
        rule=rule,
        urgency=urgency(rule, ctx.defaults),
        due_at=deadline,
        window_start=ctx.at,
        past_due_stays=missed,
    )
    if missed and task.status in ("overdue", "escalated"):
        ctx.send("deadline_missed")


def _assessment_completes_reviews(ctx: StepContext) -> None:
    state = ctx.state
    first = state.tasks.get("first_follow_up")
    after_enrolment_day = local_date(ctx.at, state.tz) > local_date(state.enrolled_at, state.tz)
    completed = False
    if first is not None and first.is_open and after_enrolment_day:
        completed = finish_task(state, ctx.step, "first_follow_up", ctx.now, "done")
        ctx.step.add_rule("FU-FIRST")
    # 1.0.0 asks whether a review is open when the visit is recorded; from 1.1.0
    # (EVENTS-AT-OCCURRED) whether its window had opened when the visit happened.
    at_occurred = of_episode(state).corrects("EVENTS-AT-OCCURRED")
    review = state.tasks.get("six_week_review")
    if (
        review is not None
        and review.is_open
        and review.status != "upcoming"
        and (not at_occurred or review.status_at(ctx.at) != "upcoming")
    ):
        finish_task(state, ctx.step, "six_week_review", ctx.now, "done")
        ctx.step.add_rule("FU-6W")
    for task in open_tasks(state, "periodic_review"):
        if at_occurred and task.status_at(ctx.at) == "upcoming":
            continue
        completed = finish_task(state, ctx.step, task.key, ctx.now, "done") or completed
        ctx.step.add_rule(task.rule)
    if completed:
        schedule_periodic_review(ctx)


def schedule_periodic_review(ctx: StepContext) -> None:
    """FU-ACTIVE in the first 12 weeks, FU-3M after: one interval after this assessment."""
    state, d = ctx.state, ctx.defaults
    today = local_date(ctx.at, state.tz)
    intensive = intensive_follow_up(ctx)
    weeks = d.intensive_review_weeks if intensive else d.periodic_review_weeks
    due_day = add_days(today, 7 * weeks)
    rule = "FU-ACTIVE"
    pathway = of_episode(state)
    chronic_from = add_days(state.onset, pathway.timing("chronic_from_days"))
    # 1.0.0 moved to FU-3M when the next review fell past 12 weeks; 1.1.0 when the visit does.
    booked_from = today if pathway.corrects("FU-ACTIVE-12W") else due_day
    if booked_from >= chronic_from:
        rule = "FU-3M"
        due_day = (
            add_days(today, 7 * d.intensive_chronic_review_weeks)
            if intensive
            else add_months(today, d.chronic_review_months)
        )
    count = ctx.facts.get("periodic_reviews", 0) + 1
    ctx.facts["periodic_reviews"] = count
    due_at = day_start(due_day, state.tz)
    open_task(
        state,
        ctx.step,
        ctx.now,
        key=f"periodic_review_{count}",
        rule=rule,
        urgency=urgency(rule, d),
        due_at=due_at,
        window_start=due_at - timedelta(days=d.review_window_days),
    )


# --- candidacy, decisions, treatments ------------------------------------------------------


def on_candidacy(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.facts.setdefault("candidacy", {}).update(data)
    ctx.step.add_rule("IMG-6W")
    review = ctx.state.tasks.get("six_week_review")
    if review is not None and review.is_open and review.status != "upcoming":
        finish_task(ctx.state, ctx.step, "six_week_review", ctx.now, "done")
        ctx.step.add_rule("FU-6W")


def on_shared_decision(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.facts["preference"] = data["preference"]
    ctx.step.add_rule("SDM-CHOICE")


def settle(ctx: StepContext, verdict: Verdict, override_reason: str | None) -> None:
    """Turn a guard verdict into a refusal, or an accepted step listing what acted.

    A refusal no override lifts comes first, whatever reason was sent; the reason's own
    check applies where it could count (from 1.1.0, NONOVERRIDABLE-FIRST; before, the
    reason was checked before anything: :func:`.steps.check_event`)."""
    refusals = verdict.refusals
    overridable = all(c.override for c in refusals)
    if overridable:
        check_override_reason(override_reason)
    if refusals:
        rules = list(dict.fromkeys(c.rule for c in refusals))
        if not overridable or not override_reason:
            dates = [c.eligible_from for c in refusals if c.eligible_from is not None]
            reason = "; ".join(c.reason for c in refusals)
            if overridable:
                reason += " (a clinician may override with a documented reason)"
            raise RuleRefusal(rules, reason, overridable, max(dates) if dates else None)
        ctx.step.add_rule(*rules)
        ctx.facts.setdefault("overrides", []).append(
            {"rules": rules, "reason": override_reason, "at": _iso(ctx)}
        )
        # The documented reason goes into the step's audit row, where an auditor reads it.
        ctx.step.reason = f"overridden ({', '.join(rules)}): {override_reason}"
    ctx.step.add_rule(*(c.rule for c in verdict.notes))
    if verdict.warnings:
        ctx.step.add_rule(*(c.rule for c in verdict.warnings))
        warned = "; ".join(f"warning ({c.rule}): {c.reason}" for c in verdict.warnings)
        ctx.step.reason = f"{ctx.step.reason}; {warned}" if ctx.step.reason else warned


def on_treatment(ctx: StepContext, data: dict[str, Any]) -> None:
    settle(ctx, check_treatment(ctx.state, data, ctx.defaults), None)
    start = data.get("start") or local_date(ctx.at, ctx.state.tz).isoformat()
    course = {
        "kind": data["kind"],
        "start": start,
        "end": data.get("end"),
        "adherence": data.get("adherence"),
    }
    ctx.facts.setdefault("treatments", []).append(course)
    if data["kind"] == "opioid":
        limit = add_days(date.fromisoformat(start), ctx.defaults.opioid_limit_days)
        due_at = day_start(limit, ctx.state.tz)
        open_task(
            ctx.state,
            ctx.step,
            ctx.now,
            key="opioid_review",
            rule="MED-OPIOID",
            urgency=urgency("MED-OPIOID", ctx.defaults),
            due_at=due_at,
            window_start=due_at - timedelta(days=ctx.defaults.review_window_days),
        )


def on_order(ctx: StepContext, data: dict[str, Any]) -> None:
    verdict = check_order(ctx.state, data, ctx.now, ctx.defaults)
    check_plexus_imaging(verdict, ctx.state, data, ctx.now, ctx.defaults)
    settle(ctx, verdict, data.get("override_reason"))
    ctx.facts.setdefault("orders", []).append({"kind": data["kind"], "at": _iso(ctx)})
    kind = data["kind"]
    if kind in IMAGING_ORDERS:
        ctx.send("start_imaging")
    elif kind == "esi":
        ctx.send("start_intervention")
    elif kind in REFERRAL_ORDERS:
        _referral_sent(ctx)


def on_result(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.facts.setdefault("results", []).append(
        {k: data.get(k) for k in ("modality", "levels", "findings", "correlates_clinically")}
    )
    findings = data.get("findings", [])
    if "correlates_clinically" in data:
        ctx.step.add_rule("IMG-CORRELATE")
    if (
        data["modality"] == "emg_ncs"
        and "chronic_reinnervation" in findings
        and ("active_denervation" not in findings)
    ):
        ctx.facts["ncs_chronic"] = True
        ctx.step.add_rule("NCS-CHRONIC")


def on_biopsychosocial(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.facts["bps_done"] = True
    ctx.step.add_rule("REF-BPS")


def _referral_sent(ctx: StepContext) -> None:
    ctx.send("referral_made")
    task = ctx.state.tasks.get("referral")
    if task is not None and finish_task(ctx.state, ctx.step, "referral", ctx.now, "done"):
        ctx.step.add_rule(task.rule)


def on_referral_sent(ctx: StepContext, data: dict[str, Any]) -> None:
    _referral_sent(ctx)


def on_specialist_seen(ctx: StepContext, data: dict[str, Any]) -> None:
    ctx.send("specialist_visit")
    finish_task(ctx.state, ctx.step, "referral", ctx.now, "done")
    if data.get("outcome") == "shared_care":
        ctx.send("start_shared_care")
    else:
        ctx.send("start_specialist_care")


def on_procedure(ctx: StepContext, data: dict[str, Any]) -> None:
    verdict = check_procedure(ctx.state, data, ctx.now, ctx.defaults)
    check_invasive_procedure(verdict, ctx.state, data, ctx.now, ctx.defaults)
    settle(ctx, verdict, data.get("override_reason"))
    ctx.facts.setdefault("procedures", []).append({"kind": data["kind"], "at": _iso(ctx)})
    if data["kind"] in SURGERY and verdict.pathway.corrects("SCS-POSTOP-GUARD"):
        # SCS-POSTOP compares later visits with the last one before the operation.
        ctx.facts["before_surgery"] = ctx.facts.get("last_assessment")
    if data["kind"] in INTERVENTIONS:
        ctx.send("start_rehabilitation")
        ctx.step.add_rule("REHAB-MDT")


def _finish(ctx: StepContext, chart_event: str, status: str) -> None:
    # The final configuration is a single state: keep where the tracks stood, for the view.
    state = ctx.state
    ctx.facts["final"] = {
        "phase": state.phase,
        "management": state.management,
        "referral": state.referral,
    }
    ctx.send(chart_event)
    ctx.state.status = status
    for task in open_tasks(ctx.state):
        finish_task(ctx.state, ctx.step, task.key, ctx.now, "cancelled")
    ctx.step.cancel_refs.append("*")


def on_resolve(ctx: StepContext, data: dict[str, Any]) -> None:
    _finish(ctx, "resolve_episode", "resolved")


def on_close(ctx: StepContext, data: dict[str, Any]) -> None:
    _finish(ctx, "close_episode", "closed")


HANDLERS: dict[str, Callable[[StepContext, dict[str, Any]], None]] = {
    "assessment": on_assessment,
    "red_flag": on_red_flag,
    "red_flag_cleared": on_red_flag_cleared,
    "red_flag_confirmed": on_red_flag_confirmed,
    "candidacy": on_candidacy,
    "shared_decision": on_shared_decision,
    "treatment": on_treatment,
    "order": on_order,
    "result": on_result,
    "biopsychosocial_assessment": on_biopsychosocial,
    "referral_sent": on_referral_sent,
    "specialist_seen": on_specialist_seen,
    "procedure": on_procedure,
    "resolve": on_resolve,
    "close": on_close,
}
