"""What an assessment means: response, red flags, referral triggers, markers (FU-CONTENT).

Pure functions over the assessment data (a dict as validated by :mod:`engine.events`) and the
episode's earlier findings. Nothing here changes the episode; :mod:`.steps` acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.settings import PathwayDefaults

FULL_POWER = 5
CES_SIGNS = (
    "urinary_retention",
    "incontinence",
    "bowel_dysfunction",
    "saddle_anaesthesia",
    "bilateral_weakness",
)
MARKER_SIGNS = ("fever", "night_pain", "constant_pain_unrelieved", "weight_loss")
MARKER_FLAGS = ("osteoporosis", "immunosuppression", "cancer_history")
# FU-CONTENT: what every visit should record beyond the two required scores.
VISIT_CONTENT = (
    "motor",
    "reflexes",
    "sensory_deficit",
    "slr_positive",
    "ces_screen",
    "dermatomes",
    "radiates_below_knee",
    "return_to_work",
    "walking_tolerance_m",
)


def motor_scores(data: dict[str, Any]) -> dict[str, int]:
    """Motor scores keyed "L5:left", "S1:right"; a score without a side is "L5:any"."""
    scores: dict[str, int] = {}
    for root, value in (data.get("motor") or {}).items():
        if isinstance(value, dict):
            for side in ("left", "right"):
                if value.get(side) is not None:
                    scores[f"{root}:{side}"] = int(value[side])
        elif value is not None:
            scores[f"{root}:any"] = int(value)
    return scores


@dataclass
class Findings:
    response: str = "baseline"  # baseline | improving | stable | worsening
    deficit: bool = False
    ces_signs: list[str] = field(default_factory=list)
    progression: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    missing_content: list[str] = field(default_factory=list)
    severe_disabling: bool = False
    several_dermatomes: bool = False
    bilateral: bool = False
    claudication: bool = False
    slr_positive: bool = False


def _weak_sides(scores: dict[str, int]) -> set[str]:
    return {key.split(":")[1] for key, score in scores.items() if score < FULL_POWER}


def progression(previous: dict[str, int] | None, current: dict[str, int]) -> list[str]:
    """RF-PROG: scores lower than at the previous visit, or weakness new since it."""
    if not previous:
        return []
    worse = [
        f"{key.replace(':', ' ')} {previous[key]}->{score}"
        for key, score in current.items()
        if key in previous and score < previous[key]
    ]
    if not worse and not _weak_sides(previous) and _weak_sides(current):
        worse = [
            f"new weakness {key.replace(':', ' ')} {score}"
            for key, score in current.items()
            if score < FULL_POWER
        ]
    return worse


def response(
    baseline: dict[str, Any] | None,
    data: dict[str, Any],
    new_deficit: bool,
    defaults: PathwayDefaults,
) -> str:
    """FU-RESPONSE against the first assessment of the episode (our default thresholds)."""
    if baseline is None:
        return "baseline"
    vas0, vas = int(baseline["vas_leg"]), int(data["vas_leg"])
    odi0, odi = int(baseline["odi"]), int(data["odi"])
    if vas - vas0 >= defaults.worsen_vas_points or new_deficit:
        return "worsening"
    vas_drop = vas0 - vas
    if (
        (vas0 > 0 and vas_drop >= defaults.improve_vas_fraction * vas0)
        or vas_drop >= defaults.improve_vas_points
        or odi0 - odi >= defaults.improve_odi_points
    ):
        return "improving"
    return "stable"


def read_assessment(
    data: dict[str, Any],
    facts: dict[str, Any],
    patient_flags: dict[str, bool],
    defaults: PathwayDefaults,
) -> Findings:
    """Derive everything the pathway acts on from one assessment."""
    scores = motor_scores(data)
    previous_scores = facts.get("last_motor")
    found = Findings()
    screen = data.get("ces_screen") or {}
    found.ces_signs = [sign for sign in CES_SIGNS if screen.get(sign)]
    weak = _weak_sides(scores)
    if {"left", "right"} <= weak and "bilateral_weakness" not in found.ces_signs:
        found.ces_signs.append("bilateral_weakness")
    found.progression = progression(previous_scores, scores)
    found.deficit = bool(weak) or bool(data.get("sensory_deficit"))
    new_deficit = found.deficit and not facts.get("deficit") and facts.get("assessments", 0) > 0
    found.response = response(facts.get("baseline"), data, new_deficit, defaults)
    found.markers = [sign for sign in MARKER_SIGNS if data.get(sign)]
    found.markers += [flag for flag in MARKER_FLAGS if patient_flags.get(flag)]
    if found.response == "worsening" and len(facts.get("treatments", [])) >= 2:
        found.markers.append("pain_worsening_despite_treatment")
    found.missing_content = [item for item in VISIT_CONTENT if item not in data]
    found.severe_disabling = bool(data.get("severe_disabling"))
    found.several_dermatomes = len(set(data.get("dermatomes") or [])) > 1
    found.bilateral = data.get("leg_pain_side") == "both"
    found.claudication = bool(data.get("neurogenic_claudication"))
    found.slr_positive = bool(data.get("slr_positive"))
    return found
