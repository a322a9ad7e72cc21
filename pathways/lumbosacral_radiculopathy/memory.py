"""What an episode's facts keep from one step to the next: what the rules read, no more.

The handlers (:mod:`.handlers`) add to the fact lists as events arrive: treatments, orders,
results, procedures, overrides. Kept whole, the facts (stored in the episode's
row, read and written by every step) would grow with every event. After each accepted
event :func:`keep_what_rules_read` trims each list to what a rule, a guard or the view
reads of it; what happened in full stays in the event rows and the audit log.

A property test (``tests/engine/test_memory.py``) holds the engine's decisions with the
lists trimmed equal to its decisions with them whole, on random event sequences. A rule
that comes to read more of a list must say so here.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

# Written by earlier versions and read by nothing: the red flag's notes and the flags
# cleared (the events that carried them are in the event rows and the audit log).
NOT_KEPT = ("notes", "red_flag_history")
# Formal physiotherapy courses are kept whole: CONS-ADEQUATE adds up their days and
# reads each one's adherence.
FORMAL_PHYSIO = "physio_formal"


def keep_what_rules_read(facts: dict[str, Any]) -> None:
    """Trim ``facts`` in place to what the rules read (see each list's comment)."""
    for name in NOT_KEPT:
        facts.pop(name, None)
    flag = facts.get("red_flag")
    if flag and "kinds" in flag:
        # _active_flag asks whether a kind was raised: each kind once.
        flag["kinds"] = list(dict.fromkeys(flag["kinds"]))
    # Orders: IMG/ESI guards ask whether an ESI was ordered. Procedures: which kinds were
    # done, and when the latest of each (REHAB-MDT, PRF-DRG, SCS-POSTOP from 1.1.0).
    # Overrides: the last of each set of rules overridden, for the record.
    _latest(facts, "orders", 1, lambda order: order.get("kind"))
    _latest(facts, "procedures", 1, lambda procedure: procedure.get("kind"))
    _latest(facts, "overrides", 1, lambda override: tuple(override.get("rules") or ()))
    # Treatments other than formal physiotherapy: the rules ask which kinds were tried
    # (MED-OPIOID, MED-NEURO, home exercises) and whether at least two courses were
    # (pain worsening despite treatment, RF-MARKERS). The latest two of each kind answer
    # both as the whole list would: at least two courses in all is at least two kept.
    _latest(facts, "treatments", 2, _treatment_kind)
    results = facts.get("results")
    if results:
        facts["results"] = _merged_results(results)


def _treatment_kind(course: dict[str, Any]) -> Hashable:
    kind = course.get("kind")
    # Every formal course is its own: a key no other course has.
    return (kind, id(course)) if kind == FORMAL_PHYSIO else kind


def _latest(
    facts: dict[str, Any], name: str, keep: int, key: Callable[[dict[str, Any]], Hashable]
) -> None:
    """Keep the last ``keep`` entries of each ``key`` in the list ``facts[name]``, in the
    list's order."""
    entries = facts.get(name)
    if not entries:
        return
    seen: dict[Hashable, int] = {}
    kept: list[dict[str, Any]] = []
    for entry in reversed(entries):
        group = key(entry)
        if seen.get(group, 0) < keep:
            seen[group] = seen.get(group, 0) + 1
            kept.append(entry)
    if len(kept) < len(entries):
        facts[name] = kept[::-1]


def _merged_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per modality, whether it correlated clinically and whether it showed a
    herniation, with the levels and findings of all its results.

    Every question the guards ask of results is whether *some* result has a property: a
    modality (NCS-CHRONIC, IMG-3M), a finding (SURG-CRIT), a herniation at a level below L3
    (ESI-TF), a correlating result at a level (IMG-CORRELATE), any result at all
    (IMG-FIRST). Results that agree on the three answer each of them the same merged.
    """
    merged: dict[tuple[Any, bool, bool], dict[str, Any]] = {}
    for result in results:
        group = (
            result.get("modality"),
            bool(result.get("correlates_clinically")),
            "herniation" in (result.get("findings") or []),
        )
        into = merged.get(group)
        if into is None:
            merged[group] = {
                **result,
                "levels": list(result.get("levels") or []),
                "findings": list(result.get("findings") or []),
            }
            continue
        for name in ("levels", "findings"):
            values = into[name]
            for value in result.get(name) or []:
                if value not in values:
                    values.append(value)
    if len(merged) == len(results):
        return results
    return list(merged.values())
