"""What clinical governance reads: a definition as a document, and what changed between two.

:func:`as_document` is ``carepath pathway show --format json`` and
``GET /pathways/{id}/{version}``: every rule with its strength, its text with the numbers
filled in, its citations (each as people read it, :class:`engine.definition.Citation`),
conflicts, defaults and care, the source documents (file, title, references), and every
named number.
:func:`diff` is ``carepath pathway diff``: rule by rule, the fields that changed as written
(with their placeholders, so a changed number shows once, under its table), and the numbers
added, removed or changed. :data:`STRENGTH_WORDS` says in words how each strength acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.definition import Definition, Rule, Strength

# How each strength acts, in words (the pathway book, a PlanDefinition action's code).
STRENGTH_WORDS: Mapping[Strength, str] = {
    Strength.REFUSE: "refused; no override is possible",
    Strength.REFUSE_WITH_OVERRIDE: "refused unless a clinician overrides it with a documented "
    "reason",
    Strength.WARN: "accepted with a warning, shown and recorded",
    Strength.ADVISORY: "shown to the clinician; never blocks anything",
    Strength.TRIGGER: "derives a phase, a due item or a marker",
}
_RULE_FIELDS = ("title", "strength", "text", "citations", "conflict", "default", "care")
_NUMBER_TABLES = ("timings", "defaults", "figures")


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "strength": rule.strength.value,
        "text": rule.text,
        "citations": [str(c) for c in rule.citations],
        "conflict": rule.conflict,
        "default": rule.default,
        "care": list(rule.care),
    }


def _document(definition: Definition, source: str) -> dict[str, Any]:
    """A source document: its file, its title where the definition gives one, and the
    references it lists."""
    listed = definition.references.get(source, {})
    title = definition.titles.get(source)
    return {
        "file": definition.documents[source],
        **({"title": title} if title is not None else {}),
        "references": {str(n): entry for n, entry in listed.items()},
    }


def as_document(definition: Definition, status: str | None = None) -> dict[str, Any]:
    """The definition as JSON: its texts with its own numbers filled in."""
    return {
        "id": definition.id,
        "version": definition.version,
        "title": definition.title,
        "status": status,
        "digest": definition.digest,
        "documents": {source: _document(definition, source) for source in definition.documents},
        **{table: dict(getattr(definition, table)) for table in _NUMBER_TABLES},
        "rules": [_rule(rule) for rule in definition.rules.values()],
    }


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "added": {k: new[k] for k in new if k not in old},
        "removed": {k: old[k] for k in old if k not in new},
        "changed": {
            k: {"from": old[k], "to": new[k]} for k in old if k in new and old[k] != new[k]
        },
    }


def diff(old: Definition, new: Definition) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: rules added, removed and changed (the fields
    that differ, as written), and each table of numbers."""
    before = {i: _rule(r) for i, r in old.templates.items()}
    after = {i: _rule(r) for i, r in new.templates.items()}
    changed: list[dict[str, Any]] = []
    for rule_id in before.keys() & after.keys():
        fields = {
            name: {"from": before[rule_id][name], "to": after[rule_id][name]}
            for name in _RULE_FIELDS
            if before[rule_id][name] != after[rule_id][name]
        }
        if fields:
            changed.append({"rule": rule_id, "fields": fields})
    order = list(after) + [i for i in before if i not in after]
    changed.sort(key=lambda c: order.index(c["rule"]))
    return {
        "id": new.id,
        "from": old.version,
        "to": new.version,
        "rules": {
            "added": [after[i] for i in after if i not in before],
            "removed": [i for i in before if i not in after],
            "changed": changed,
        },
        **{table: _changed(getattr(old, table), getattr(new, table)) for table in _NUMBER_TABLES},
    }
