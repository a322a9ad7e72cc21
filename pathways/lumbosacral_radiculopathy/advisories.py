"""What the lumbosacral pathway's episode view recommends: the rules that hold now.

The phase's rule, the populations the patient belongs to, and each advisory whose fact
holds (:data:`ADVISORIES`), every one with its text in the clinic's numbers and its
citations, as CONTRACT.md section 3 lists them under ``recommendations``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from engine.definition import Definition, rules_for
from engine.episode import EpisodeState
from engine.settings import DEFAULTS, PathwayDefaults
from pathways import of_episode
from pathways.lumbosacral_radiculopathy.invasive_guards import (
    INJECTIONS,
    INTERVENTIONS,
    procedures_done,
)
from pathways.lumbosacral_radiculopathy.rules import DEFINITION

PHASE_RULES = {"acute": "PH-ACUTE", "subacute": "PH-SUBACUTE", "chronic": "PH-CHRONIC"}
# Advisories shown while a fact holds: (rule, predicate over facts and the episode).
ADVISORIES: tuple[tuple[str, Callable[[EpisodeState], bool]], ...] = (
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
    ("REHAB-MDT", lambda s: s.management == "rehabilitation" and _shows_rehabilitation(s)),
    ("REF-3M", lambda s: s.management == "rehabilitation" and _relief(s) is False),
    ("PRF-DRG", lambda s: _from("PRF-DRG-GUARD", s) and _chronic_after_injection(s)),
    ("SCS-POSTOP", lambda s: s.facts.get("since_surgery") in ("stable", "worsening")),
    ("SURG-6W-POSIMG", lambda s: _from("SURG-6W-POSIMG-SHOWN", s) and _positive_imaging(s)),
)


def _referral_rule(state: EpisodeState) -> str | None:
    task = state.tasks.get("referral")
    return task.rule if task is not None and task.is_open else None


def _from(correction: str, state: EpisodeState) -> bool:
    return of_episode(state).corrects(correction)


def _chronic_after_injection(state: EpisodeState) -> bool:
    """PRF-DRG (from 1.1.0): chronic radiculopathy unchanged after conservative care and
    an epidural injection."""
    facts = state.facts
    injected = bool(procedures_done(facts, INJECTIONS))
    return state.phase == "chronic" and injected and facts.get("response") == "stable"


def _positive_imaging(state: EpisodeState) -> bool:
    """SURG-6W-POSIMG (from 1.1.0): past the conservative window, failed conservative care,
    and a herniation on imaging that correlates clinically."""
    facts = state.facts
    herniation = any(
        r.get("correlates_clinically") and "herniation" in r.get("findings", [])
        for r in facts.get("results", [])
    )
    past_window = state.phase in ("subacute", "chronic")
    return past_window and herniation and facts.get("response") in ("stable", "worsening")


def _relief(state: EpisodeState) -> bool | None:
    """From 1.1.0 (REHAB-MDT-RELIEF): whether the latest intervention gives relief, by the
    response at the first assessment after it; None before one (and on 1.0.0)."""
    if not of_episode(state).corrects("REHAB-MDT-RELIEF"):
        return None
    facts = state.facts
    done = procedures_done(facts, INTERVENTIONS)
    last = facts.get("last_assessment")
    if not done or not last or last["at"] <= max(done):
        return None
    return facts.get("response") == "improving"


def _shows_rehabilitation(state: EpisodeState) -> bool:
    """REHAB-MDT: rehabilitation during the relief an intervention gives; on 1.0.0 for as
    long as the episode is in rehabilitation."""
    if not of_episode(state).corrects("REHAB-MDT-RELIEF"):
        return True
    return _relief(state) is True


def _treated_with(state: EpisodeState, *kinds: str) -> bool:
    return any(t["kind"] in kinds for t in state.facts.get("treatments", []))


Guidance = dict[str, tuple[str, tuple[str, ...]]]


@cache
def _guidance(pathway: Definition, defaults: PathwayDefaults) -> Guidance:
    """Every rule's recommendation text, with the clinic's numbers, and its citations: fixed
    for the pathway version and the defaults, so built once (every episode view carries
    several), and looked up once per view (hashing the defaults is not free)."""
    table: Guidance = {}
    for rule_id, entry in rules_for(pathway, defaults).items():
        text = entry.text
        if entry.care:
            text += " Care plan: " + "; ".join(entry.care) + "."
        if entry.conflict:
            text += " Sources differ: " + entry.conflict
        table[rule_id] = text, tuple(str(c) for c in entry.citations)
    return table


def recommendation(
    rule_id: str, state: EpisodeState | None = None, defaults: PathwayDefaults = DEFAULTS
) -> dict[str, Any]:
    pathway = DEFINITION if state is None else of_episode(state)
    return _recommendation(_guidance(pathway, defaults), rule_id, state)


def _recommendation(guidance: Guidance, rule_id: str, state: EpisodeState | None) -> dict[str, Any]:
    text, citations = guidance[rule_id]
    if rule_id == "SDM-CHOICE" and state is not None:
        text += f" Recorded preference: {state.facts['preference']}."
    elif rule_id == "SURG-6W-POSIMG" and state is not None:
        text += _predictors_present(state)
    return {"rule": rule_id, "text": text, "citations": list(citations)}


def recommendations(
    state: EpisodeState, defaults: PathwayDefaults = DEFAULTS
) -> list[dict[str, Any]]:
    if state.is_final:
        return []
    ids: list[str] = []
    if state.phase in PHASE_RULES:
        ids.append(PHASE_RULES[state.phase])
    ids += state.facts.get("populations", [])
    ids += [rule_id for rule_id, holds in ADVISORIES if holds(state)]
    guidance = _guidance(of_episode(state), defaults)
    return [_recommendation(guidance, rule_id, state) for rule_id in dict.fromkeys(ids)]


def _predictors_present(state: EpisodeState) -> str:
    """The predictors of later surgery this patient has, named on SURG-6W-POSIMG."""
    names = {"PRED-SLR": "a positive straight-leg raise", "PRED-PRIOR-LBP": "prior back pain"}
    present = [names[m] for m in state.facts.get("risk_markers", []) if m in names]
    return f" Present here: {' and '.join(present)}." if present else ""
