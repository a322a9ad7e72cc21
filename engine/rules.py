"""The rules episodes run on, read from the definition of the version each is pinned to.

What a rule says, how strongly it acts and where it comes from is clinical content: it lives
in the pathway's definition files (``pathways/lumbosacral_radiculopathy/1.0.0.toml``), read
and checked by :mod:`engine.definition` and handed out by the registry (:mod:`pathways`).
An episode runs on the version it was opened on (:func:`of_episode`); a new one opens on the
newest published version unless another is asked for (:func:`opening_version`). Texts come
with the definition's own numbers, or a clinic's defaults (:func:`rules_for`), so that a
text always says what the engine does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

import pathways
from engine.chart import PATHWAY_ID, PATHWAY_VERSION
from engine.definition import Citation, Definition, Rule, Strength
from engine.episode import EpisodeState
from engine.settings import (
    OPENING_VERSION_ENV,
    PathwayDefaults,
    chosen_opening_version,
    drafts_allowed,
)

__all__ = [
    "DEFINITION",
    "of_episode",
    "opening_version",
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


def of_episode(state: EpisodeState) -> Definition:
    """The definition of the version ``state`` is pinned to."""
    return pathways.definition(state.pathway_id, state.pathway_version)


def opening_version(requested: str | None, pathway_id: str = PATHWAY_ID) -> str:
    """The version a new episode opens on: ``requested``, which must be published (or a
    draft, where :func:`engine.settings.drafts_allowed`); else the clinic's choice
    (``CAREPATH_PATHWAY_VERSION``), else the newest published one.

    Raises:
        ValueError: ``requested`` (or the clinic's choice, named) is not a version it may
            open on (the message lists the published ones).
    """
    published = [v.version for v in pathways.versions(pathway_id) if v.status == "published"]
    if requested is None:
        chosen = chosen_opening_version()
        if chosen is None:
            return pathways.newest(pathway_id).version
        try:
            return opening_version(chosen, pathway_id)
        except ValueError as exc:
            raise ValueError(f"{OPENING_VERSION_ENV}: {exc}") from None
    if requested not in published:
        draft = requested in pathways.version_numbers(pathway_id)
        if draft and drafts_allowed():
            return requested
        raise ValueError(
            f"{requested!r} is {'a draft, not yet published' if draft else 'not a version'} "
            f"of {pathway_id} (published: {', '.join(published)})"
        )
    return requested


@cache
def rules_for(definition: Definition, defaults: PathwayDefaults) -> Mapping[str, Rule]:
    """Every rule of ``definition``, its texts saying the clinic's ``defaults``."""
    return definition.rules_with(vars(defaults))


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
