"""What version 1.1.0 reads differently in an assessment (PATHWAY.md, "Version 1.1.0").

Each function answers one question the handlers ask only where the episode's version
includes the correction: a first visit whose pain persists (FU-RESPONSE-NO-BASELINE),
markers that together amount to a red flag (RF-MARKERS-SERIOUS), and pain spread over
adjacent dermatomes on one side (SP-PLEXUS-ADJACENT).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.clinic_time import local_date
from engine.episode import EpisodeState
from engine.settings import PathwayDefaults

# Our default combinations: a history of cancer with a sign of malignancy, and fever with
# immunosuppression.
MALIGNANCY_SIGNS = ("weight_loss", "night_pain", "constant_pain_unrelieved")
DERMATOMES = ("L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4", "S5")


def persisting_without_baseline(
    state: EpisodeState, at: datetime, data: dict[str, Any], defaults: PathwayDefaults
) -> bool:
    """FU-RESPONSE with nothing to compare with: leg pain at or above our threshold at a
    visit past the conservative window counts as persisting (not improving)."""
    day = (local_date(at, state.tz) - state.onset).days
    return (
        day >= defaults.conservative_window_days
        and int(data["vas_leg"]) >= defaults.persisting_vas_without_baseline
    )


def serious_combination(markers: list[str]) -> str | None:
    """The red flag a combination of markers amounts to: ``malignancy`` or ``infection``."""
    present = set(markers)
    if "cancer_history" in present and present & set(MALIGNANCY_SIGNS):
        return "malignancy"
    if {"fever", "immunosuppression"} <= present:
        return "infection"
    return None


def plexus_distribution(data: dict[str, Any], defaults: PathwayDefaults) -> bool:
    """SP-PLEXUS: pain over more than two adjacent dermatomes (our default: at least
    ``plexus_adjacent_dermatomes``), on one side: pain in both legs is SP-BILATERAL's."""
    if data.get("leg_pain_side") == "both":
        return False
    positions = sorted({DERMATOMES.index(d) for d in data.get("dermatomes") or []})
    longest = run = 0
    for i, position in enumerate(positions):
        run = run + 1 if i and position == positions[i - 1] + 1 else 1
        longest = max(longest, run)
    return longest >= defaults.plexus_adjacent_dermatomes
