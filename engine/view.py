"""The episode view of CONTRACT.md section 3: the episode as the engine holds it, with what
its pathway recommends now (:attr:`engine.pathway.PathwayCode.recommendations`)."""

from __future__ import annotations

from typing import Any

from engine.due import current_items
from engine.episode import EpisodeState, iso
from engine.pathway import PathwayCode
from engine.settings import DEFAULTS, PathwayDefaults


def red_flag_view(state: EpisodeState) -> dict[str, Any] | None:
    flag = state.facts.get("red_flag")
    if not flag:
        return None
    return {k: flag[k] for k in ("rule", "kind", "level", "raised_at")}


def due_view(state: EpisodeState) -> list[dict[str, Any]]:
    """The current due items (:func:`engine.due.current_items`: the open ones and the
    latest closed one of each kind), soonest first. Older closed items are listed by
    ``GET /episodes/{id}/due``."""
    tasks = sorted(current_items(state.tasks), key=lambda t: (t.due_at, t.key))
    return [t.view() for t in tasks]


def episode_view(
    code: PathwayCode, state: EpisodeState, defaults: PathwayDefaults = DEFAULTS
) -> dict[str, Any]:
    """The view of CONTRACT.md section 3 of an episode of ``code``'s pathway; rule texts say
    the clinic's ``defaults``."""
    final = state.facts.get("final") or {}
    return {
        "id": state.id,
        "patient_ref": state.patient.ref,
        "pathway": {"id": state.pathway_id, "version": state.pathway_version},
        "status": state.status,
        "configuration": list(state.configuration),
        "phase": state.phase or final.get("phase"),
        "management": state.management or final.get("management"),
        "referral": state.referral or final.get("referral"),
        "red_flag": red_flag_view(state),
        "due": due_view(state),
        "risk_markers": list(state.facts.get("risk_markers", [])),
        "recommendations": code.recommendations(state, defaults),
        "version": state.version,
        "onset": iso(state.onset),
        "enrolled_at": iso(state.enrolled_at),
        "coordinator": state.coordinator,
        "team": state.team,
    }
