"""The rules episodes run on, read from their pathway's definition.

What a rule says, how strongly it acts and where it comes from is clinical content: it lives
in the pathway's definition file (``pathways/lumbosacral_radiculopathy/1.0.0.toml``), read and
checked by :mod:`engine.definition` and handed out by the registry (:mod:`pathways`). This
module gives the engine that version's rules by ID: the texts with the pathway's own numbers
(:data:`RULES`), or with a clinic's defaults (:func:`rules_for`), so that a text always says
what the engine does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

import pathways
from engine.chart import PATHWAY_ID, PATHWAY_VERSION
from engine.definition import Citation, Definition, Rule, Strength
from engine.settings import PathwayDefaults

__all__ = [
    "DEFINITION",
    "DOCUMENTS",
    "RECOMMENDED_CARE",
    "RULES",
    "Citation",
    "Rule",
    "Strength",
    "cite",
    "rule",
    "rules_for",
]

DEFINITION: Definition = pathways.definition(PATHWAY_ID, PATHWAY_VERSION)
DOCUMENTS: Mapping[str, str] = DEFINITION.documents
"""The source documents, S-number to seed file name."""
RULES: Mapping[str, Rule] = DEFINITION.rules
"""Every rule, keyed by ID, in the order the specification presents them."""
RECOMMENDED_CARE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {rule_id: r.care for rule_id, r in RULES.items() if r.care}
)
"""Care-plan activities, as short phrases in our own words, for phase and population rules."""


@cache
def rules_for(defaults: PathwayDefaults) -> Mapping[str, Rule]:
    """Every rule, its texts saying the clinic's ``defaults``."""
    return DEFINITION.rules_with(vars(defaults))


def rule(rule_id: str, defaults: PathwayDefaults | None = None) -> Rule:
    """Look up one rule by its ID, its texts with ``defaults`` (the pathway's own if None).

    Raises:
        KeyError: if no rule has that ID; the message names the ID.
    """
    found = (RULES if defaults is None else rules_for(defaults)).get(rule_id)
    if found is None:
        raise KeyError(f"unknown rule id {rule_id!r}: not a rule in PATHWAY.md")
    return found


def cite(rule_id: str) -> list[str]:
    """Render a rule's citations for people, one string per citation, e.g. ``"S2
    (002_6b2d115242e3efa1.txt): Medical Necessity of Lumbar Fusion, Praxis Medical
    Insights, 2025 [ref 2]"``.

    Raises:
        KeyError: if no rule has that ID.
    """
    return [str(c) for c in rule(rule_id).citations]
