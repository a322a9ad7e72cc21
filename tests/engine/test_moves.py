"""Remembered moves: what the engine reuses is exactly what the chart itself answers."""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from engine.episode import (
    HISTORY_ID,
    MANAGEMENT_STATES,
    PHASE_STATES,
    RED_FLAG_STATE,
    REFERRAL_STATES,
)
from engine.errors import InvalidConfiguration
from pathways.lumbosacral_radiculopathy.chart import CHART, PathwayChart

EVENTS = [event.id for event in PathwayChart.events]


def asked_afresh(
    configuration: list[str], history: dict[str, list[str]], event: str
) -> tuple[list[str], dict[str, list[str]]] | None:
    chart = CHART.bind(configuration, history)
    try:
        chart.send(event)
    except TransitionNotAllowed:
        return None
    return CHART.snapshot(chart)


def test_every_move_near_enrolment_is_the_charts_own_answer() -> None:
    """Every event from every configuration within three events of enrolment (the chart
    reaches some 2,400 configurations and histories in all; these cover the red-flag branch,
    its history, and the final states)."""
    CHART.forget_moves()
    start = (CHART.initial_configuration(), {})
    seen = {(tuple(start[0]), ())}
    frontier = [start]
    checked = 0
    for _ in range(3):
        frontier, walking = [], frontier
        for configuration, history in walking:
            checked += check_every_event(configuration, history, seen, frontier)
    finals = [c for c, _ in seen if "resolved" in c or "closed" in c]
    restored = [c for c, h in seen if h]
    assert finals, "no final state reached"
    assert restored, "no history kept"
    assert len(seen) > 100
    assert checked == (len(seen) - len(frontier)) * len(EVENTS)


def check_every_event(
    configuration: list[str],
    history: dict[str, list[str]],
    seen: set[tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]],
    frontier: list[tuple[list[str], dict[str, list[str]]]],
) -> int:
    for event in EVENTS:
        expected = asked_afresh(configuration, history, event)
        for _ in range(2):  # worked out, then remembered
            assert CHART.move(configuration, history, event) == expected, (configuration, event)
        if expected is None:
            continue
        key = (tuple(expected[0]), tuple(sorted((k, tuple(v)) for k, v in expected[1].items())))
        if key not in seen:
            seen.add(key)
            frontier.append(expected)
    return len(EVENTS)


def test_a_move_hands_out_copies() -> None:
    CHART.forget_moves()
    first = CHART.move(CHART.initial_configuration(), {}, "raise_emergency_flag")
    assert first is not None
    first[0].append("scribbled")
    first[1].clear()
    again = CHART.move(CHART.initial_configuration(), {}, "raise_emergency_flag")
    assert again is not None
    assert "scribbled" not in again[0]
    assert again[1]


def test_a_corrupted_configuration_is_refused_not_remembered() -> None:
    with pytest.raises(InvalidConfiguration):
        CHART.move(["care", "phase", "nowhere"], {}, "enter_subacute")


def test_the_charts_regions_hold_the_states_the_episode_view_names() -> None:
    """The view reports phase, management and referral (CONTRACT.md section 3) by the
    states :mod:`engine.episode` names: the chart's regions hold exactly those."""
    states = PathwayChart.states_map
    for region, named in (
        ("phase", PHASE_STATES),
        ("management", MANAGEMENT_STATES),
        ("referral", REFERRAL_STATES),
    ):
        children = tuple(s.id for s in states[region].states if not s.is_history)
        assert children == named, region
    flagged = CHART.move(CHART.initial_configuration(), {}, "raise_urgent_flag")
    assert flagged is not None
    assert RED_FLAG_STATE in flagged[0]
    assert set(flagged[1]) == {HISTORY_ID}  # where routine care resumes
