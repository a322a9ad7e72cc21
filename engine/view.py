"""The episode view of CONTRACT.md section 3, and the recommendations it carries."""

from __future__ import annotations

from functools import cache
from typing import Any

from engine.due import current_items
from engine.episode import EpisodeState, iso
from engine.rules import RECOMMENDED_CARE, cite, rule

PHASE_RULES = {"acute": "PH-ACUTE", "subacute": "PH-SUBACUTE", "chronic": "PH-CHRONIC"}
# Advisories shown while a fact holds: (rule, predicate over facts and the episode).
ADVISORIES = (
    ("RF-MARKERS", lambda s: bool(s.facts.get("markers"))),
    ("NCS-CHRONIC", lambda s: bool(s.facts.get("ncs_chronic"))),
    ("FU-6W", lambda s: s.management == "review"),
    ("CONS-ADEQUATE", lambda s: s.management == "review"),
    ("SDM-CHOICE", lambda s: s.facts.get("preference") is not None),
    ("REF-2W-DEFICIT", lambda s: _referral_rule(s) == "REF-2W-DEFICIT"),
    ("REF-2W-SEVERE", lambda s: _referral_rule(s) == "REF-2W-SEVERE"),
    ("REF-3M", lambda s: _referral_rule(s) == "REF-3M"),
    ("MED-NEURO", lambda s: _treated_with(s, "gabapentin", "pregabalin", "tca")),
    ("MED-OPIOID", lambda s: _treated_with(s, "opioid")),
    ("REHAB-MDT", lambda s: s.management == "rehabilitation"),
)


def _referral_rule(state: EpisodeState) -> str | None:
    task = state.tasks.get("referral")
    return task.rule if task is not None and task.is_open else None


def _treated_with(state: EpisodeState, *kinds: str) -> bool:
    return any(t["kind"] in kinds for t in state.facts.get("treatments", []))


@cache
def _guidance(rule_id: str) -> tuple[str, tuple[str, ...]]:
    """A rule's recommendation text and citations: fixed for the pathway version, so built
    once (every episode view carries several)."""
    entry = rule(rule_id)
    text = entry.text
    care = RECOMMENDED_CARE.get(rule_id)
    if care:
        text += " Care plan: " + "; ".join(care) + "."
    if entry.conflict:
        text += " Sources differ: " + entry.conflict
    return text, tuple(cite(rule_id))


def recommendation(rule_id: str, state: EpisodeState | None = None) -> dict[str, Any]:
    text, citations = _guidance(rule_id)
    if rule_id == "SDM-CHOICE" and state is not None:
        text += f" Recorded preference: {state.facts['preference']}."
    return {"rule": rule_id, "text": text, "citations": list(citations)}


def recommendations(state: EpisodeState) -> list[dict[str, Any]]:
    if state.is_final:
        return []
    ids: list[str] = []
    if state.phase in PHASE_RULES:
        ids.append(PHASE_RULES[state.phase])
    ids += state.facts.get("populations", [])
    ids += [rule_id for rule_id, holds in ADVISORIES if holds(state)]
    return [recommendation(rule_id, state) for rule_id in dict.fromkeys(ids)]


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


def episode_view(state: EpisodeState) -> dict[str, Any]:
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
        "recommendations": recommendations(state),
        "version": state.version,
        "onset": iso(state.onset),
        "enrolled_at": iso(state.enrolled_at),
        "coordinator": state.coordinator,
    }
