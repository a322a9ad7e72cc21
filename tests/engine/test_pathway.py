"""Assessments, red flags and the statechart's history, as a clinician would check them."""

from __future__ import annotations

import pytest

from engine.errors import InvalidConfiguration, InvalidEvent
from engine.events import parse_event
from engine.settings import DEFAULTS
from pathways.lumbosacral_radiculopathy.chart import CHART
from pathways.lumbosacral_radiculopathy.code import CODE
from pathways.lumbosacral_radiculopathy.steps import apply_event
from tests.engine.helpers import Episode


def test_cauda_equina_pre_empts_and_clearing_returns_to_prior_configuration() -> None:
    ep = Episode()
    ep.send(1, "assessment", vas_leg=6, odi=40, motor={"L5": 4})
    before = list(ep.state.configuration)
    assert ep.state.referral == "due"
    step = ep.send(10, "assessment", vas_leg=8, odi=60, ces_screen={"urinary_retention": True})
    assert "RF-CES" in step.rules
    assert ep.state.configuration[-2:] == ["red_flag", "emergency"]
    assert ep.state.referral == "due"  # paused, reported where it will resume
    ep.send(11, "red_flag_cleared", kind="ces", note="MRI normal")
    assert ep.state.configuration == before
    assert ep.state.facts["red_flag"] is None


def test_confirmed_red_flag_goes_on_to_specialist_care() -> None:
    ep = Episode()
    ep.send(5, "red_flag", kind="malignancy")
    ep.send(6, "red_flag_confirmed", kind="malignancy")
    assert ep.state.management == "specialist"
    assert ep.state.referral == "referred"


def test_clearing_without_a_flag_is_refused() -> None:
    step = Episode().send(5, "red_flag_cleared", kind="ces")
    assert not step.accepted
    assert step.rules == ["RF-CES"]


def test_falling_motor_score_raises_progressive_deficit() -> None:
    ep = Episode()
    ep.send(1, "assessment", vas_leg=6, odi=40, motor={"L5": {"left": 4, "right": 5}})
    step = ep.send(15, "assessment", vas_leg=6, odi=40, motor={"L5": {"left": 3, "right": 5}})
    assert "RF-PROG" in step.rules
    assert ep.state.facts["red_flag"]["level"] == "urgent"


def test_weakness_in_both_legs_is_cauda_equina() -> None:
    ep = Episode()
    step = ep.send(1, "assessment", vas_leg=6, odi=40, motor={"S1": {"left": 4, "right": 4}})
    assert "RF-CES" in step.rules


def test_pain_in_both_legs_without_weakness_is_not_a_red_flag() -> None:
    ep = Episode()
    step = ep.send(1, "assessment", vas_leg=6, odi=40, leg_pain_side="both")
    assert not ep.state.in_red_flag
    assert "RF-CES" not in step.rules


def test_response_improving_by_thirty_percent() -> None:
    ep = Episode()
    ep.send(1, "assessment", vas_leg=10, odi=50)
    ep.send(15, "assessment", vas_leg=7, odi=50)
    assert ep.state.facts["response"] == "improving"
    ep.send(29, "assessment", vas_leg=9, odi=50)
    assert ep.state.facts["response"] == "stable"


def test_risk_markers_from_patient_and_assessments() -> None:
    ep = Episode(sex="female", prior_lbp=True, workers_comp=True)
    ep.send(1, "assessment", vas_leg=8, odi=50, slr_positive=True)
    ep.send(15, "assessment", vas_leg=8, odi=50)
    markers = ep.state.facts["risk_markers"]
    assert {"PRED-FEMALE", "PRED-PRIOR-LBP", "PRED-WORKCOMP", "PRED-SLR", "PRED-HIGH-VAS"} <= set(
        markers
    )


def test_special_populations_in_recommendations() -> None:
    from engine.view import episode_view

    ep = Episode(age=80, connective_tissue_disorder=True, pelvic_floor_dysfunction=True)
    ep.send(
        1,
        "assessment",
        vas_leg=5,
        odi=30,
        dermatomes=["L4", "L5", "S1"],
        neurogenic_claudication=True,
    )
    rules = [r["rule"] for r in episode_view(CODE, ep.state)["recommendations"]]
    for rule in ("PH-ACUTE", "SP-CTD", "SP-PELVIC", "FU-ELDERLY", "SP-PLEXUS", "SP-STENOSIS"):
        assert rule in rules
    assert all(r["citations"] for r in episode_view(CODE, ep.state)["recommendations"])


def test_nothing_accepted_after_a_final_state() -> None:
    ep = Episode()
    ep.send(10, "close", reason="transferred")
    with pytest.raises(InvalidEvent) as err:
        apply_event(
            ep.state,
            parse_event({"type": "assessment", "data": {"vas_leg": 3, "odi": 10}}),
            ep.day(11),
            DEFAULTS,
        )
    assert err.value.field == "type"


@pytest.mark.parametrize(
    "configuration",
    [
        ["care", "phase", "acute", "subacute", "track", "red_flag", "urgent"],
        ["care", "phase", "acute"],
        ["resolved", "closed"],
        ["care", "phase", "acute", "track", "routine", "management", "nowhere"],
    ],
)
def test_corrupted_configuration_is_refused(configuration: list[str]) -> None:
    with pytest.raises(InvalidConfiguration):
        CHART.validate_configuration(configuration)
    with pytest.raises(InvalidConfiguration):
        CHART.bind(configuration, {})


def test_a_resolved_episode_does_not_stop_the_next_episode_moving() -> None:
    # The chart is reused between steps; one that reached a final state must not be.
    first = Episode()
    first.send(10, "resolve", reason="recovered")
    second = Episode()
    second.run_until(second.day(42))
    assert second.state.management == "review"
    assert second.state.phase == "subacute"


def test_a_clone_is_equal_and_shares_nothing_the_engine_changes() -> None:
    # Every step works on a clone, so a refused event leaves the episode as it was.
    ep = Episode(age=70)
    ep.send(1, "assessment", vas_leg=6, odi=40, motor={"L5": 4})
    ep.send(2, "treatment", kind="nsaid", start="2026-01-07")
    original = ep.state
    statuses = {key: task.status for key, task in original.tasks.items()}
    copy = original.clone()
    assert copy == original
    assert copy is not original
    copy.configuration.append("x")
    copy.history.setdefault("h", []).append("x")
    next(iter(copy.history.values())).append("y")
    copy.facts["treatments"][0]["kind"] = "x"
    copy.facts["baseline"]["odi"] = 99
    for task in copy.tasks.values():
        task.status = "cancelled"
    copy.tasks["new"] = next(iter(copy.tasks.values()))
    copy.patient.flags["elderly"] = False
    copy.patient.age = 1
    assert original != copy
    assert "x" not in original.configuration
    assert all("x" not in v and "y" not in v for v in original.history.values())
    assert original.facts["treatments"][0]["kind"] == "nsaid"
    assert original.facts["baseline"]["odi"] == 40
    assert {key: task.status for key, task in original.tasks.items()} == statuses
    assert "new" not in original.tasks
    assert original.patient.age == 70
    assert original.patient.flags == ep.state.patient.flags
