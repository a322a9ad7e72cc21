"""A pathway version as a FHIR R4 PlanDefinition, for systems that read clinical protocols.

:func:`plan_definition` is ``carepath pathway show --format fhir`` and
``GET /pathways/{id}/{version}/plan-definition``: a ``collection`` Bundle whose one entry is
a PlanDefinition (type ``clinical-protocol``; ``active`` when published, ``draft`` before),
citing each source reference once (for a version citing in the rich form, each document
once: its title, file and the references it lists), with one action per rule:

* ``id``, ``title`` and ``description``: the rule's ID, title and text, the version's own
  numbers filled in;
* ``code``: the rule's strength, coded in :data:`STRENGTHS` (a coded property of the action,
  so a reader can filter guards from advisories; no FHIR value set says how strongly a
  guideline rule acts, and ``priority`` is about urgency, not enforcement);
* ``documentation``: its citations, each as :class:`engine.definition.Citation` renders it
  (in the rich form, the document's title, the statement the rule rests on and the
  references the document gives for it); extensions :data:`CONFLICT` and :data:`DEFAULT`:
  where the sources disagree and which number is ours;
* for a timed rule, a ``condition`` in words (``from day 42 until day 84 after onset``) and
  the timing as FHIR has it: a range (the phases, FU-FIRST's window), a duration (a referral
  deadline), or a repeat (the periodic reviews, with the shorter interval of elderly patients
  and workers' compensation claims as a nested action);
* the recommended care as nested actions.

The numbers come from the definition by name (:data:`TIMED` names them, never their value).
The bundle is checked against the ``fhir.resources`` models before it is handed out, so a
misspelled element or two timings on one action fail here, not in a reader's system.
fhir.resources 8 ships FHIR R5, R4B and STU3 but not R4 itself; R4B is R4 with a few
additions, and the elements used here are R4's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.bundle import Bundle

import pathways
from engine.definition import Citation, Definition, Rule
from engine.placeholders import Number
from pathways.review import STRENGTH_WORDS

CANONICAL = "https://carepath.example/fhir/PlanDefinition/"
STRENGTHS = "https://carepath.example/fhir/CodeSystem/rule-strength"
CONFLICT = "https://carepath.example/fhir/StructureDefinition/rule-conflict"
DEFAULT = "https://carepath.example/fhir/StructureDefinition/rule-default"
DIGESTS = "https://carepath.example/fhir/definition-digest"
PLAN_TYPES = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
UCUM = "http://unitsofmeasure.org"
# A number's unit is the end of its name: conservative_window_days is in days.
_UNITS = {"days": ("d", "day"), "weeks": ("wk", "week"), "months": ("mo", "month"),
          "hours": ("h", "hour")}  # fmt: skip


@dataclass(frozen=True)
class Window:
    """A rule that holds from one number to another after an anchor (either may be open)."""

    anchor: str
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class Deadline:
    """A rule whose item is due a number after an anchor (a referral, an urgent work-up)."""

    anchor: str
    within: str


@dataclass(frozen=True)
class Every:
    """A review that repeats, with a shorter interval for the patients ``closer`` names."""

    interval: str
    closer: str
    closer_interval: str
    until: str | None = None
    start: str | None = None


# Who is seen more often (FU-ACTIVE, FU-3M).
CLOSER = "the patient is elderly (FU-ELDERLY) or has a workers' compensation claim (PRED-WORKCOMP)"
# When each timed rule acts, by the names of its numbers in the definition.
TIMED: Mapping[str, Window | Deadline | Every] = {
    "PH-ACUTE": Window("onset", end="subacute_from_days"),
    "PH-SUBACUTE": Window("onset", "subacute_from_days", "chronic_from_days"),
    "PH-CHRONIC": Window("onset", start="chronic_from_days"),
    "FU-6W": Window("onset", start="conservative_window_days"),
    "IMG-NO-EARLY": Window("onset", end="conservative_window_days"),
    "ESI-6W": Window("onset", end="conservative_window_days"),
    "IMG-3M": Window("onset", start="persisting_pain_months"),
    "FU-FIRST": Window("presentation", "first_follow_up_opens_days", "first_follow_up_due_days"),
    "REF-2W-SEVERE": Deadline("the finding", "urgent_referral_days"),
    "REF-2W-DEFICIT": Deadline("the finding", "urgent_referral_days"),
    "REF-3M": Deadline("onset", "persisting_pain_months"),
    "RF-CES": Deadline("the flag being raised", "ces_task_hours"),
    "RF-PROG": Deadline("the flag being raised", "urgent_task_hours"),
    "RF-SERIOUS": Deadline("the flag being raised", "urgent_task_hours"),
    "MED-OPIOID": Deadline("the start of the opioid course", "opioid_limit_days"),
    "FU-ACTIVE": Every("periodic_review_weeks", CLOSER, "intensive_review_weeks",
                       until="chronic_from_days"),
    "FU-3M": Every("chronic_review_months", CLOSER, "intensive_chronic_review_weeks",
                   start="chronic_from_days"),
}  # fmt: skip


def plan_definition(definition: Definition) -> dict[str, Any]:
    """The version as a FHIR R4 ``collection`` Bundle holding its PlanDefinition (JSON).

    Raises:
        pydantic.ValidationError: the bundle is not valid FHIR (a fault here, never the
            definition's: its checks ran when it was loaded).
    """
    numbers: dict[str, Number] = {**definition.timings, **definition.defaults}
    day = pathways.published_on(definition)
    plan: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": definition.id,
        "url": CANONICAL + definition.id,
        "identifier": [{"system": DIGESTS, "value": definition.digest}],
        "version": definition.version,
        "name": "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", definition.id)),
        "title": definition.title,
        "type": _coded(PLAN_TYPES, "clinical-protocol", "Clinical Protocol"),
        "status": "active" if day else "draft",
        "date": day.isoformat() if day else None,
        "relatedArtifact": _bibliography(definition),
        "action": [_action(rule, numbers) for rule in definition.rules.values()],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": plan["url"], "resource": plan}],
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def _coded(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _citation(citation: Citation) -> dict[str, Any]:
    return {"type": "citation", "label": citation.source, "display": str(citation)}


def _bibliography(definition: Definition) -> list[dict[str, Any]]:
    """The plan's own citations: each reference a compact citation names, once, in the order
    the rules first cite it; then each document a rich citation names, once, in the
    definition's order, with its title and the references it lists (the statements
    themselves are the actions')."""
    references: dict[str, dict[str, Any]] = {}
    documents: set[str] = set()
    for rule in definition.rules.values():
        for citation in rule.citations:
            if citation.rich:
                documents.add(citation.source)
            else:
                references.setdefault(str(citation), _citation(citation))
    cited = [
        _document(definition, source) for source in definition.documents if source in documents
    ]
    return [*references.values(), *cited]


def _document(definition: Definition, source: str) -> dict[str, Any]:
    title = definition.titles[source]
    listed = definition.references.get(source, {})
    references = (
        "References it lists: " + "; ".join(f"[{n}] {entry}" for n, entry in listed.items())
        if listed
        else "It lists no references"
    )
    return {
        "type": "citation",
        "label": source,
        "display": f"{source}, {title}",
        "citation": f"{title} ({definition.documents[source]}). {references}.",
    }


def _action(rule: Rule, numbers: Mapping[str, Number]) -> dict[str, Any]:
    notes = ((CONFLICT, rule.conflict), (DEFAULT, rule.default))
    action: dict[str, Any] = {
        "id": rule.id,
        "title": rule.title,
        "description": rule.text,
        "code": [_coded(STRENGTHS, rule.strength.value, STRENGTH_WORDS[rule.strength])],
        "documentation": [_citation(c) for c in rule.citations],
        "extension": [{"url": url, "valueString": text} for url, text in notes if text] or None,
        "action": [{"title": activity} for activity in rule.care] or None,
    }
    when = TIMED.get(rule.id)
    if isinstance(when, Window):
        action |= _window(when, numbers)
    elif isinstance(when, Deadline):
        action |= _condition(f"within {_words(when.within, numbers)} of {when.anchor}")
        action["timingDuration"] = _quantity(when.within, numbers)
    elif isinstance(when, Every):
        words, timing = _every(when.interval, when, numbers)
        action |= {**_condition(words), "timingTiming": timing}
        # Both conditions hold for the shorter interval: the patient's and the period's.
        words, timing = _every(when.closer_interval, when, numbers)
        closer = {"title": f"Shorter interval when {when.closer}",
                  **_condition(when.closer, words), "timingTiming": timing}  # fmt: skip
        action["action"] = [*(action["action"] or []), closer]
    return action


def _window(when: Window, numbers: Mapping[str, Number]) -> dict[str, Any]:
    start, end = (None if n is None else _day(n, numbers) for n in (when.start, when.end))
    if start and end:
        words = f"from {start} until {end}"
    else:
        words = f"from {start}" if start else f"before {end}"
    words += f" after {when.anchor}"
    span = {k: _quantity(n, numbers) for k, n in (("low", when.start), ("high", when.end)) if n}
    return {**_condition(words), "timingRange": span}


def _every(interval: str, when: Every, numbers: Mapping[str, Number]) -> tuple[str, dict[str, Any]]:
    """A repeat every ``interval``, in words and as a FHIR Timing."""
    every = f"every {_words(interval, numbers)}"
    if when.until:
        every += f", until {_day(when.until, numbers)} after onset"
    if when.start:
        every += f", from {_day(when.start, numbers)} after onset, while symptoms continue"
    repeat: dict[str, Any] = {"period": _value(interval, numbers), "periodUnit": _unit(interval)[0]}
    if when.until:
        repeat["boundsDuration"] = _quantity(when.until, numbers)
    return every, {"repeat": repeat}


def _condition(*words: str) -> dict[str, Any]:
    """Applicability conditions in words, all of which hold: for people to read (the
    engine's own checks are code, not expressions a FHIR engine could run)."""
    return {
        "condition": [
            {"kind": "applicability", "expression": {"language": "text/plain", "expression": w}}
            for w in words
        ]
    }


def _unit(name: str) -> tuple[str, str]:
    return _UNITS[name.rsplit("_", 1)[-1]]


def _value(name: str, numbers: Mapping[str, Number]) -> int | float:
    value = numbers[name]
    if isinstance(value, str):
        raise ValueError(f"{name} is {value!r}, not a number a timing can use")
    return value


def _quantity(name: str, numbers: Mapping[str, Number]) -> dict[str, Any]:
    code, word = _unit(name)
    value = _value(name, numbers)
    return {"value": value, "unit": word + ("" if value == 1 else "s"), "system": UCUM,
            "code": code}  # fmt: skip


def _words(name: str, numbers: Mapping[str, Number]) -> str:
    """``14 days``, ``3 months``: a number with its unit."""
    quantity = _quantity(name, numbers)
    return f"{quantity['value']:g} {quantity['unit']}"


def _day(name: str, numbers: Mapping[str, Number]) -> str:
    """``day 42`` for a number of days (the clinic counts days from onset), else ``3 months``."""
    return f"day {_value(name, numbers):g}" if _unit(name)[0] == "d" else _words(name, numbers)
