"""Every guard of PATHWAY.md: the accept path and the refuse path."""

from __future__ import annotations

from datetime import date

import pytest

from tests.engine.helpers import Episode

REASON = "documented clinical reason for early imaging"


def adequate_care(ep: Episode, day: int = 1) -> None:
    ep.send(day, "assessment", vas_leg=7, odi=44)
    ep.send(day, "treatment", kind="physio_formal", start="2026-01-06", adherence="good")


def failed_adequate_care(ep: Episode) -> None:
    """Six weeks of formal physiotherapy, and leg pain unchanged at day 43."""
    adequate_care(ep)
    ep.send(43, "assessment", vas_leg=7, odi=44)


def herniation_on_mri(ep: Episode, day: int, level: str, *, correlates: bool) -> None:
    ep.send(
        day,
        "result",
        modality="mri",
        levels=[level],
        findings=["herniation"],
        correlates_clinically=correlates,
    )


def test_mri_in_week_two_is_refused_with_eligible_date() -> None:
    ep = Episode()
    step = ep.send(14, "order", kind="mri")
    assert not step.accepted
    assert step.rules == ["IMG-NO-EARLY"]
    assert step.override_possible is True
    assert step.eligible_from == date(2026, 2, 16)
    assert "day 14 of the 42-day conservative window" in (step.reason or "")
    assert ep.state.management == "conservative"


def test_early_mri_override_is_accepted_and_recorded() -> None:
    ep = Episode()
    step = ep.send(14, "order", kind="mri", override_reason=REASON)
    assert step.accepted
    assert "IMG-NO-EARLY" in step.rules
    assert ep.state.facts["overrides"][0]["reason"] == REASON
    assert step.reason == f"overridden (IMG-NO-EARLY): {REASON}"  # the audit row's reason
    assert ep.state.management == "imaging"


def test_red_flag_waives_early_imaging() -> None:
    ep = Episode()
    ep.send(10, "red_flag", kind="infection")
    step = ep.send(10, "order", kind="mri")
    assert step.accepted
    assert "RF-SERIOUS" in step.rules


def test_severe_disabling_pain_waives_early_imaging() -> None:
    ep = Episode()
    ep.send(3, "assessment", vas_leg=9, odi=70, severe_disabling=True)
    assert ep.state.referral == "due"
    assert ep.task("referral").rule == "REF-2W-SEVERE"
    assert ep.send(5, "order", kind="mri").accepted


def test_mri_after_six_weeks_needs_adequate_failed_care_and_candidacy() -> None:
    ep = Episode()
    ep.send(1, "assessment", vas_leg=7, odi=44)
    ep.send(1, "treatment", kind="physio_home", start="2026-01-06", adherence="good")
    ep.send(43, "assessment", vas_leg=7, odi=44)
    step = ep.send(44, "order", kind="mri")
    assert not step.accepted
    assert step.rules == ["IMG-6W"]
    assert "home exercises do not count" in (step.reason or "")
    assert "candidate" in (step.reason or "")


def test_mri_after_six_weeks_accepted_with_adequate_care_and_candidate() -> None:
    ep = Episode()
    failed_adequate_care(ep)
    ep.send(43, "candidacy", injection_candidate=True)
    step = ep.send(50, "order", kind="mri", ordered_by="primary_care")
    assert step.accepted
    assert "ORD-SPECIALIST" in step.rules
    assert ep.state.management == "imaging"


def test_improving_patient_has_not_failed_conservative_care() -> None:
    ep = Episode()
    adequate_care(ep)
    ep.send(43, "assessment", vas_leg=3, odi=20)
    ep.send(43, "candidacy", surgical_candidate=True)
    step = ep.send(50, "order", kind="mri")
    assert not step.accepted
    assert "FU-RESPONSE" in (step.reason or "")


def test_blind_injection_is_never_allowed() -> None:
    ep = Episode()
    ep.send(5, "red_flag", kind="fracture")
    step = ep.send(6, "order", kind="esi", image_guided=False, override_reason=REASON)
    assert not step.accepted
    assert step.rules == ["ESI-GUIDED"]
    assert step.override_possible is False


def test_injection_before_six_weeks_refused_with_override() -> None:
    ep = Episode()
    step = ep.send(20, "order", kind="esi", image_guided=True)
    assert not step.accepted
    assert "ESI-6W" in step.rules
    assert "IMG-CORRELATE" in step.rules
    assert step.eligible_from == date(2026, 2, 16)


def test_injection_after_failed_care_with_correlating_imaging() -> None:
    ep = Episode()
    failed_adequate_care(ep)
    ep.send(43, "candidacy", injection_candidate=True)
    ep.send(50, "order", kind="mri")
    herniation_on_mri(ep, 55, "L5-S1", correlates=True)
    order = ep.send(56, "order", kind="esi", image_guided=True, level="L5-S1")
    assert order.accepted
    assert ep.state.management == "interventional"
    unconfirmed = ep.send(60, "procedure", kind="esi", approach="transforaminal", level="L5-S1")
    assert not unconfirmed.accepted
    assert unconfirmed.rules[0] == "ESI-CONFIRM"
    done = ep.send(
        60, "procedure", kind="esi", approach="transforaminal", level="L5-S1", target_confirmed=True
    )
    assert done.accepted
    assert ep.state.management == "rehabilitation"


def test_injection_on_uncorrelated_imaging_is_refused() -> None:
    ep = Episode()
    failed_adequate_care(ep)
    herniation_on_mri(ep, 50, "L4-L5", correlates=False)
    step = ep.send(56, "order", kind="esi", image_guided=True)
    assert step.rules == ["IMG-CORRELATE"]
    assert step.override_possible


def test_surgical_referral_needs_biopsychosocial_assessment() -> None:
    ep = Episode()
    refused = ep.send(30, "order", kind="surgical_referral")
    assert refused.rules == ["REF-BPS"]
    ep.send(31, "biopsychosocial_assessment", note="done")
    step = ep.send(31, "order", kind="surgical_referral")
    assert step.accepted
    assert "SURG-CRIT" in step.rules
    assert ep.state.referral == "referred"


def test_red_flag_waives_biopsychosocial_gate() -> None:
    ep = Episode()
    ep.send(30, "red_flag", kind="ces")
    assert ep.send(30, "order", kind="surgical_referral").accepted


def test_fusion_for_routine_herniation_refused_unless_indicated() -> None:
    ep = Episode()
    herniation_on_mri(ep, 50, "L5-S1", correlates=True)
    refused = ep.send(90, "procedure", kind="fusion", level="L5-S1")
    assert refused.rules == ["SURG-NO-FUSION"]
    step = ep.send(90, "procedure", kind="fusion", level="L5-S1", fusion_indication="instability")
    assert step.accepted


def test_opioid_first_line_warns_and_books_review() -> None:
    ep = Episode(age=78)
    step = ep.send(2, "treatment", kind="opioid", start="2026-01-07", end="2026-01-28")
    assert step.accepted
    assert "MED-OPIOID" in step.rules
    task = ep.task("opioid_review")
    assert task.rule == "MED-OPIOID"
    assert task.due_at.date() == date(2026, 1, 21)


@pytest.mark.parametrize(
    ("kind", "rule"),
    [("gabapentin", "MED-NEURO"), ("pregabalin", "MED-NEURO"), ("oral_steroid", "MED-STEROID")],
)
def test_medication_advisories(kind: str, rule: str) -> None:
    step = Episode().send(3, "treatment", kind=kind)
    assert step.accepted
    assert rule in step.rules


def test_conflict_rules_show_both_sides() -> None:
    from pathways.lumbosacral_radiculopathy.advisories import recommendation

    text = recommendation("MED-NEURO")["text"]
    assert "S2" in text
    assert "S0" in text or "S1" in text


def test_chronic_reinnervation_advisory() -> None:
    ep = Episode()
    first = ep.send(50, "order", kind="emg_ncs")
    assert "NCS-CHRONIC" not in first.rules  # a first study draws no comment
    step = ep.send(
        60, "result", modality="emg_ncs", levels=["L5"], findings=["chronic_reinnervation"]
    )
    assert "NCS-CHRONIC" in step.rules
    repeat = ep.send(70, "order", kind="emg_ncs")
    assert repeat.accepted
    assert "NCS-CHRONIC" in repeat.rules
