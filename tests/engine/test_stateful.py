"""Random event sequences keep the pathway's invariants (Hypothesis stateful test)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.errors import InvalidEvent
from pathways.lumbosacral_radiculopathy.chart import CHART
from tests.engine.helpers import Episode

EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("assessment", {"vas_leg": 7, "odi": 44}),
    ("assessment", {"vas_leg": 3, "odi": 20}),
    ("assessment", {"vas_leg": 8, "odi": 60, "motor": {"L5": {"left": 3, "right": 5}}}),
    ("assessment", {"vas_leg": 9, "odi": 70, "severe_disabling": True}),
    ("assessment", {"vas_leg": 8, "odi": 60, "ces_screen": {"saddle_anaesthesia": True}}),
    ("red_flag", {"kind": "infection"}),
    ("red_flag_cleared", {"kind": "infection"}),
    ("red_flag_cleared", {"kind": "ces"}),
    ("red_flag_confirmed", {"kind": "ces"}),
    ("order", {"kind": "mri"}),
    ("order", {"kind": "ct", "override_reason": "clinician documented a reason"}),
    ("order", {"kind": "esi", "image_guided": False}),
    ("order", {"kind": "esi", "image_guided": True}),
    ("order", {"kind": "surgical_referral"}),
    ("treatment", {"kind": "physio_formal", "start": "2026-01-06", "adherence": "good"}),
    ("treatment", {"kind": "opioid"}),
    ("candidacy", {"injection_candidate": True}),
    (
        "result",
        {
            "modality": "mri",
            "levels": ["L5-S1"],
            "findings": ["herniation"],
            "correlates_clinically": True,
        },
    ),
    ("biopsychosocial_assessment", {"note": "done"}),
    ("referral_sent", {"service": "spine"}),
    ("specialist_seen", {"service": "spine", "outcome": "shared_care"}),
    ("procedure", {"kind": "esi", "target_confirmed": True, "image_guided": True}),
    ("resolve", {"reason": "recovered"}),
    ("close", {"reason": "lost_to_follow_up"}),
]


class PathwayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ep = Episode()
        self.day = 0

    @rule(days=st.integers(min_value=0, max_value=20), index=st.integers(0, len(EVENTS) - 1))
    def send(self, days: int, index: int) -> None:
        self.day += days
        kind, data = EVENTS[index]
        self.ep.run_until(self.ep.day(self.day))
        final_before = self.ep.state.is_final
        acute_before = self.ep.state.phase == "acute"
        waived = self.ep.state.facts.get("red_flag") or self.ep.state.facts.get("severe_disabling")
        try:
            step = self.ep.send(self.day, kind, **data)
        except InvalidEvent:
            assert final_before, "only a final episode turns events away as invalid"
            return
        assert not final_before
        if kind == "order" and data["kind"] in ("mri", "ct") and acute_before and step.accepted:
            assert waived or data.get("override_reason"), "imaging in acute phase"
        if data.get("image_guided") is False:
            assert not step.accepted

    @invariant()
    def configuration_is_valid(self) -> None:
        CHART.validate_configuration(self.ep.state.configuration)

    @invariant()
    def final_status_matches_configuration(self) -> None:
        state = self.ep.state
        assert state.is_final == (state.configuration[0] in ("resolved", "closed"))


PathwayMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPathway = PathwayMachine.TestCase
