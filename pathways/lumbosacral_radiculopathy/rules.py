"""The rules of the lumbosacral pathway's first published version, 1.0.0, by ID.

What a rule says, how strongly it acts and where it comes from is clinical content: it lives
in the definition files beside this module (``1.0.0.toml``, ``1.1.0.toml``), read and checked
by :mod:`engine.definition` and handed out by the registry (:mod:`pathways`). An episode
runs on the version it was opened on (:func:`pathways.of_episode`). This module names
1.0.0's rules for what asks of no episode in particular: :func:`rule` and :func:`cite`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pathways
from engine.definition import Citation, Definition, Rule, Strength, rules_for
from engine.settings import PathwayDefaults

__all__ = [
    "DEFINITION",
    "FIRST_VERSION",
    "DOCUMENTS",
    "RECOMMENDED_CARE",
    "RULES",
    "Citation",
    "Rule",
    "Strength",
    "cite",
    "rule",
]

FIRST_VERSION = "1.0.0"
DEFINITION: Definition = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, FIRST_VERSION)
"""Version 1.0.0, the first published: what :data:`RULES` and :func:`rule` without a
definition read."""
DOCUMENTS: Mapping[str, str] = DEFINITION.documents
"""The source documents, S-number to seed file name."""
RULES: Mapping[str, Rule] = DEFINITION.rules
"""Every rule of 1.0.0, keyed by ID, in the order the specification presents them."""
RECOMMENDED_CARE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {rule_id: r.care for rule_id, r in RULES.items() if r.care}
)
"""Care-plan activities, as short phrases in our own words, for phase and population rules."""


def rule(
    rule_id: str, defaults: PathwayDefaults | None = None, definition: Definition = DEFINITION
) -> Rule:
    """Look up one rule of ``definition`` by its ID, its texts with ``defaults`` (the
    definition's own if None).

    Raises:
        KeyError: if no rule has that ID; the message names the ID and the version.
    """
    found = (definition.rules if defaults is None else rules_for(definition, defaults)).get(rule_id)
    if found is None:
        raise KeyError(
            f"unknown rule id {rule_id!r}: not a rule of {definition.id} {definition.version}"
        )
    return found


def cite(rule_id: str) -> list[str]:
    """Render a rule's citations for people, one string per citation, e.g. ``"S2
    (002_6b2d115242e3efa1.txt): Medical Necessity of Lumbar Fusion, Praxis Medical
    Insights, 2025 [ref 2]"``.

    Raises:
        KeyError: if no rule has that ID.
    """
    return [str(c) for c in rule(rule_id).citations]
