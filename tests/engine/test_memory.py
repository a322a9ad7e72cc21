"""An episode keeps what its rules read, and decides exactly as it would keeping everything.

Two copies of an episode take the same random events: one keeps every fact and every due
item (the engine without ``keep_what_rules_read``, as it was), the other
trims its facts after each event and, before each step, keeps only the current due items
(what the store loads). Every decision, timer, due item and view must be the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, get_args
from unittest.mock import patch

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine import events as vocabulary
from engine.due import current_items, item_kind
from engine.episode import Step
from engine.errors import InvalidEvent
from engine.view import episode_view
from pathways.lumbosacral_radiculopathy.code import CODE
from pathways.lumbosacral_radiculopathy.memory import keep_what_rules_read
from tests.engine.helpers import Episode

ONSET = date(2026, 1, 5)
LEVELS = ("L4-L5", "L5-S1")
OVERRIDE = "documented by the clinician"


def _one_of(literal: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(get_args(literal))


def _mostly(common: list[Any], literal: Any) -> st.SearchStrategy[Any]:
    """Mostly values the rules ask about, so that repeats and matches are common."""
    return st.one_of(st.sampled_from(common), st.sampled_from(common), _one_of(literal))


flags = st.booleans()
rarely = st.sampled_from([False] * 6 + [True])
ces_screens = st.fixed_dictionaries({"saddle_anaesthesia": st.sampled_from([False] * 4 + [True])})
assessments = st.fixed_dictionaries(
    {"vas_leg": st.integers(0, 10), "odi": st.integers(0, 100)},
    optional={
        "motor": st.fixed_dictionaries({"L5": st.sampled_from([5, 5, 4])}),
        "sensory_deficit": rarely,
        "slr_positive": flags,
        "severe_disabling": rarely,
        "ces_screen": st.one_of([st.just({})] * 3 + [ces_screens]),
        "leg_pain_side": _one_of(vocabulary.Side),
        "dermatomes": st.lists(st.sampled_from(["L4", "L5", "S1"]), max_size=2),
        "night_pain": rarely,
    },
)


@st.composite
def treatments(draw: st.DrawFn) -> dict[str, Any]:
    kinds = ["nsaid", "physio_formal", "physio_formal", "physio_home", "opioid"]
    data: dict[str, Any] = {"kind": draw(_mostly(kinds, vocabulary.TreatmentKind))}
    if draw(flags):
        start = draw(st.integers(0, 60))
        data["start"] = (ONSET + timedelta(days=start)).isoformat()
        if draw(flags):
            data["end"] = (ONSET + timedelta(days=start + draw(st.integers(0, 40)))).isoformat()
    if draw(st.sampled_from([True, True, False])):
        data["adherence"] = draw(_one_of(vocabulary.Adherence))
    return data


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    kinds = ["mri", "esi", "esi", "ct", "emg_ncs", "surgical_referral"]
    data: dict[str, Any] = {"kind": draw(_mostly(kinds, vocabulary.OrderKind))}
    if data["kind"] == "esi":
        data["image_guided"] = draw(st.sampled_from([True, True, True, False]))
    optional = {
        "override_reason": OVERRIDE,
        "candidate_for": [draw(_one_of(vocabulary.CandidateFor))],
        "level": draw(st.sampled_from(LEVELS)),
        "ordered_by": draw(_one_of(vocabulary.OrderedBy)),
    }
    data.update({name: value for name, value in optional.items() if draw(flags)})
    return data


FINDINGS = ["herniation", "instability", "chronic_reinnervation", "active_denervation"]
results = st.fixed_dictionaries(
    {
        "modality": _mostly(["mri", "mri", "emg_ncs"], vocabulary.Modality),
        "levels": st.lists(st.sampled_from(LEVELS), max_size=2),
        "findings": st.lists(_mostly(FINDINGS, vocabulary.Finding), max_size=3),
    },
    optional={"correlates_clinically": flags},
)
procedures = st.fixed_dictionaries(
    {"kind": _mostly(["esi", "esi", "discectomy"], vocabulary.ProcedureKind)},
    optional={
        "level": st.sampled_from(LEVELS),
        "target_confirmed": flags,
        "image_guided": flags,
        "approach": _one_of(vocabulary.Approach),
        "fusion_indication": _one_of(vocabulary.FusionIndication),
        "override_reason": st.just(OVERRIDE),
    },
)
flag_kinds = st.fixed_dictionaries({"kind": _mostly(["infection"], vocabulary.RedFlagKind)})
DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "assessment": assessments,
    "treatment": treatments(),
    "order": orders(),
    "result": results,
    "procedure": procedures,
    "red_flag": flag_kinds,
    "red_flag_cleared": flag_kinds,
    "red_flag_confirmed": flag_kinds,
    "candidacy": st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            ("surgical_candidate", "injection_candidate", "medically_fit"), flags
        ),
    ),
    "shared_decision": st.fixed_dictionaries({"preference": _one_of(vocabulary.Preference)}),
    "biopsychosocial_assessment": st.just({}),
    "referral_sent": st.just({}),
    "specialist_seen": st.fixed_dictionaries(
        {}, optional={"outcome": _one_of(vocabulary.SpecialistOutcome)}
    ),
}
# How often each type comes: visits, treatments and orders most.
WEIGHTS = {"assessment": 8, "treatment": 8, "order": 8, "result": 4, "procedure": 4,
           "candidacy": 2, "biopsychosocial_assessment": 2}  # fmt: skip
TYPES = [t for t in DATA for _ in range(WEIGHTS.get(t, 1))]
EVENTS = st.sampled_from(TYPES).flatmap(lambda kind: st.tuples(st.just(kind), DATA[kind]))
# A few in a hundred sequences end the episode early; most run their whole length.
ENDINGS = st.sampled_from(["resolve"] + [None] * 30)


class Trimmed(Episode):
    """The episode as the store keeps it: before each step, only its current due items."""

    def _absorb(self, step: Step) -> None:
        super()._absorb(step)
        self.state.tasks = {t.key: t for t in current_items(self.state.tasks)}


@contextmanager
def keeping_everything() -> Iterator[None]:
    with patch("pathways.lumbosacral_radiculopathy.steps.keep_what_rules_read", lambda facts: None):
        yield


def decision(step: Step) -> dict[str, Any]:
    return {
        "accepted": step.accepted,
        "rules": step.rules,
        "reason": step.reason,
        "override_possible": step.override_possible,
        "eligible_from": step.eligible_from,
        "noop": step.noop,
        "timers": step.timers,
        "cancel_refs": step.cancel_refs,
        "configuration": step.state.configuration,
        "history": step.state.history,
        "status": step.state.status,
    }


def send(ep: Episode, day: int, kind: str, data: dict[str, Any]) -> Any:
    try:
        return decision(ep.send(day, kind, **data))
    except InvalidEvent as refused:
        return ("invalid", refused.field, refused.reason)


def _on(day: int) -> str:
    return (ONSET + timedelta(days=day)).isoformat()


def _course(start: int, end: int | None) -> dict[str, Any]:
    course = {"kind": "physio_formal", "start": _on(start), "adherence": "good"}
    return course if end is None else {**course, "end": _on(end)}


# Sequences that reach each trimmed list's reader, run whatever Hypothesis draws.
VISIT = ("assessment", {"vas_leg": 7, "odi": 44})
HERNIATION = {"modality": "mri", "findings": ["herniation"]}
ESI = {"kind": "esi", "image_guided": True, "level": "L5-S1"}
READERS = {
    # Two courses of one kind, then pain worse: "despite treatment" (RF-MARKERS).
    "treatments counted": [(0, ("assessment", {"vas_leg": 5, "odi": 30})),
                           (1, ("treatment", {"kind": "nsaid"})),
                           (1, ("treatment", {"kind": "nsaid"})),
                           (2, ("assessment", {"vas_leg": 8, "odi": 50}))],
    # CONS-ADEQUATE adds up the days of every formal course.
    "formal courses added up": [(0, VISIT), (1, ("treatment", _course(1, 8))),
                                (1, ("treatment", _course(9, 16))),
                                (1, ("treatment", _course(17, 24))),
                                (41, VISIT), (1, ("order", {"kind": "mri"}))],
    # IMG-CORRELATE: a correlating result at the level, not any result there.
    "results correlated": [(0, ("result", {**HERNIATION, "levels": ["L4-L5"],
                                           "correlates_clinically": True})),
                           (1, ("result", {**HERNIATION, "levels": ["L5-S1"],
                                           "correlates_clinically": False})),
                           (1, ("procedure", {"kind": "discectomy", "level": "L5-S1"}))],
    # An injection already ordered is not checked against the window again.
    "ESI ordered": [(0, ("red_flag", {"kind": "infection"})),
                    (1, ("result", {**HERNIATION, "levels": ["L5-S1"],
                                    "correlates_clinically": True})),
                    (1, ("order", ESI)), (0, ("order", {"kind": "emg_ncs"})),
                    (1, ("red_flag_cleared", {"kind": "infection"})),
                    (1, ("procedure", {**ESI, "target_confirmed": True}))],
    # A closed emergency item is reopened, not added: its old timer is cancelled.
    "closed item reopened": [(0, ("red_flag", {"kind": "ces"})),
                             (1, ("red_flag_cleared", {"kind": "ces"})),
                             (1, ("red_flag", {"kind": "ces"}))],
}  # fmt: skip
ADULT = {"age": 50}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(patient=ADULT, steps=READERS["treatments counted"], ending=None)
@example(patient=ADULT, steps=READERS["formal courses added up"], ending=None)
@example(patient=ADULT, steps=READERS["results correlated"], ending=None)
@example(patient=ADULT, steps=READERS["ESI ordered"], ending=None)
@example(patient=ADULT, steps=READERS["closed item reopened"], ending=None)
@given(
    patient=st.fixed_dictionaries(
        {"age": st.integers(18, 90)}, optional={"workers_comp": flags, "prior_lbp": flags}
    ),
    steps=st.lists(st.tuples(st.integers(0, 10), EVENTS), min_size=15, max_size=50),
    ending=ENDINGS,
)
def test_trimmed_facts_and_items_decide_as_keeping_everything(
    patient: dict[str, Any], steps: list[tuple[int, tuple[str, dict[str, Any]]]], ending: Any
) -> None:
    with keeping_everything():
        whole = Episode(**patient)
    trimmed = Trimmed(**patient)
    day = 0
    if ending:
        steps = [*steps, (1, (ending, {}))]
    for gap, (kind, data) in steps:
        day += gap
        with keeping_everything():
            expected = send(whole, day, kind, data)
        assert send(trimmed, day, kind, data) == expected, (day, kind, data)
        assert [decision(s) for s in trimmed.fired] == [decision(s) for s in whole.fired]
        assert current_items(trimmed.state.tasks) == current_items(whole.state.tasks)
        assert episode_view(CODE, trimmed.state) == episode_view(CODE, whole.state)
    whole.run_until(whole.day(day + 400))
    trimmed.run_until(trimmed.day(day + 400))
    assert [decision(s) for s in trimmed.fired] == [decision(s) for s in whole.fired]
    assert current_items(trimmed.state.tasks) == current_items(whole.state.tasks)


ROUND: list[tuple[str, dict[str, Any]]] = [
    ("assessment", {"vas_leg": 6, "odi": 40}),
    ("treatment", {"kind": "nsaid"}),
    ("order", {"kind": "mri"}),
    ("order", {"kind": "emg_ncs"}),
    ("result", {"modality": "emg_ncs", "levels": ["L5-S1"], "findings": ["normal"]}),
    ("red_flag", {"kind": "infection"}),
    ("red_flag", {"kind": "infection"}),
    ("red_flag_cleared", {"kind": "infection"}),
    ("procedure", {"kind": "prf"}),
    ("order", {"kind": "ct", "override_reason": "documented by the clinician"}),
]


def sizes(ep: Episode) -> dict[str, Any]:
    view = episode_view(CODE, ep.state)
    return {
        "due items kept": len(ep.state.tasks),
        "fact lists": {k: len(v) for k, v in ep.state.facts.items() if isinstance(v, list)},
        "facts bytes": len(json.dumps(ep.state.facts)),
        "view due items": len(view["due"]),
        "view bytes": len(json.dumps(view)),
    }


def test_facts_and_view_stay_the_same_size_from_the_20th_event_to_the_1000th() -> None:
    ep = Trimmed()
    seen = {}
    for number in range(1, 1001):
        kind, data = ROUND[(number - 1) % len(ROUND)]
        ep.send(1, kind, **data)  # one day: no timer moves the episode meanwhile
        if number in (20, 1000):  # from the second round on, every kind of fact is there
            seen[number] = sizes(ep)
    early, late = seen[20], seen[1000]
    for name in ("due items kept", "fact lists", "view due items"):
        assert late[name] == early[name], name
    # Only numbers grow, by a digit or two: the version, the counters, the reviews' keys.
    for name in ("facts bytes", "view bytes"):
        assert 0 <= late[name] - early[name] <= 12, name
    reviews = [k for k in ep.state.tasks if item_kind(k) == "periodic_review"]
    assert len(reviews) == 2  # the open review and the last one done
    assert ep.state.facts["periodic_reviews"] == 100  # one review closed at every visit


def test_the_facts_keep_what_the_rules_read() -> None:
    facts: dict[str, Any] = {
        "orders": [{"kind": "mri", "at": "1"}, {"kind": "esi", "at": "2"},
                   {"kind": "mri", "at": "3"}],
        "treatments": [
            {"kind": "nsaid", "start": "2026-01-05"},
            {"kind": "physio_formal", "start": "2026-01-06", "adherence": "poor"},
            {"kind": "nsaid", "start": "2026-01-07"},
            {"kind": "physio_formal", "start": "2026-01-06", "adherence": "poor"},
            {"kind": "nsaid", "start": "2026-01-08"},
        ],
        "results": [
            {"modality": "mri", "levels": ["L4-L5"], "findings": ["herniation"],
             "correlates_clinically": True},
            {"modality": "mri", "levels": ["L5-S1"], "findings": ["herniation", "stenosis"],
             "correlates_clinically": True},
            {"modality": "mri", "levels": ["L3-L4"], "findings": [],
             "correlates_clinically": False},
        ],
        "red_flag": {"rule": "RF-SERIOUS", "kind": "infection", "kinds": ["infection"] * 3},
        "notes": ["screen"],
        "red_flag_history": [{"kind": "ces"}],
    }  # fmt: skip
    keep_what_rules_read(facts)
    assert facts["orders"] == [{"kind": "esi", "at": "2"}, {"kind": "mri", "at": "3"}]
    assert [t["start"] for t in facts["treatments"]] == [
        "2026-01-06", "2026-01-07", "2026-01-06", "2026-01-08",
    ]  # fmt: skip
    assert facts["results"] == [
        {"modality": "mri", "levels": ["L4-L5", "L5-S1"], "findings": ["herniation", "stenosis"],
         "correlates_clinically": True},
        {"modality": "mri", "levels": ["L3-L4"], "findings": [], "correlates_clinically": False},
    ]  # fmt: skip
    assert facts["red_flag"]["kinds"] == ["infection"]
    assert "notes" not in facts
    assert "red_flag_history" not in facts


def test_current_items_are_the_open_ones_and_the_last_closed_of_each_kind() -> None:
    ep = Episode()
    for day in (0, 16, 30, 44, 58):
        ep.send(day, "assessment", vas_leg=6, odi=40)
    ep.send(59, "referral_sent")
    keys = {t.key: t.status for t in current_items(ep.state.tasks)}
    assert keys == {
        "first_follow_up": "done",
        "six_week_review": "done",
        "referral": "done",
        "periodic_review_3": "done",
        "periodic_review_4": "upcoming",
    }
    assert len(ep.state.tasks) == 7  # the engine itself drops nothing
    assert [d["key"] for d in episode_view(CODE, ep.state)["due"]] == sorted(
        keys, key=lambda k: (ep.state.tasks[k].due_at, k)
    )
