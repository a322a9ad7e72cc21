"""A pathway version as a FHIR R4 PlanDefinition: valid FHIR, every rule an action with its
citations, and each timing the definition's own number."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.plandefinition import PlanDefinition

import pathways
from engine.definition import Definition
from pathways.plan_definition import STRENGTHS, TIMED, plan_definition
from tests.pathways.test_definitions import edit_rule, parse

SHIPPED = [
    (pathway_id, version)
    for pathway_id in sorted(pathways.PACKAGES)
    for version in pathways.version_numbers(pathway_id)
]


def plan_of(definition: Definition) -> dict[str, Any]:
    bundle = plan_definition(definition)
    assert bundle["type"] == "collection"
    plan: dict[str, Any] = bundle["entry"][0]["resource"]
    assert plan["resourceType"] == "PlanDefinition"
    return plan


def actions(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {action["id"]: action for action in plan["action"]}


@pytest.mark.parametrize(("pathway_id", "version"), SHIPPED)
def test_every_shipped_version_parses_back_as_fhir(pathway_id: str, version: str) -> None:
    definition = pathways.definition(pathway_id, version)
    bundle = Bundle.model_validate(plan_definition(definition))
    assert bundle.entry is not None
    plan = bundle.entry[0].resource
    assert isinstance(plan, PlanDefinition)
    assert plan.url == f"https://carepath.example/fhir/PlanDefinition/{pathway_id}"
    assert (plan.version, plan.title) == (version, definition.title)
    published = pathways.published_on(definition)
    assert plan.status == ("active" if published else "draft")
    assert plan.type is not None
    assert plan.type.coding is not None
    assert plan.type.coding[0].code == "clinical-protocol"
    definition.check_uses(TIMED, "the PlanDefinition's timings")


@pytest.mark.parametrize(("pathway_id", "version"), SHIPPED)
def test_every_rule_is_an_action_with_its_strength_and_citations(
    pathway_id: str, version: str
) -> None:
    definition = pathways.definition(pathway_id, version)
    plan = plan_of(definition)
    assert [a["id"] for a in plan["action"]] == list(definition.rules)
    cited = {artifact["display"] for artifact in plan["relatedArtifact"]}
    assert len(cited) == len(plan["relatedArtifact"]), "a reference is cited twice"
    labels = {artifact["label"] for artifact in plan["relatedArtifact"]}
    for rule, action in zip(definition.rules.values(), plan["action"], strict=True):
        assert (action["title"], action["description"]) == (rule.title, rule.text)
        [coding] = action["code"][0]["coding"]
        assert (coding["system"], coding["code"]) == (STRENGTHS, rule.strength.value)
        citations = [str(c) for c in rule.citations]
        assert [d["display"] for d in action["documentation"]] == citations
        assert all(d["type"] == "citation" for d in action["documentation"])
        if all(c.rich for c in rule.citations):  # the plan cites each document once
            assert {c.source for c in rule.citations} <= labels
        else:
            assert set(citations) <= cited
        assert [a["title"] for a in action.get("action", [])][: len(rule.care)] == list(rule.care)


def test_a_timed_rule_has_the_definitions_number_and_says_it() -> None:
    definition = pathways.newest()
    timings, defaults = definition.timings, definition.defaults
    found = actions(plan_of(definition))

    first = found["FU-FIRST"]
    window = first["timingRange"]
    assert window["low"]["value"] == timings["first_follow_up_opens_days"]
    assert window["high"]["value"] == timings["first_follow_up_due_days"]
    assert window["low"]["code"] == "d"
    expression = first["condition"][0]["expression"]
    assert expression["language"] == "text/plain"
    assert f"day {timings['first_follow_up_opens_days']}" in expression["expression"]

    subacute = found["PH-SUBACUTE"]["timingRange"]
    assert (subacute["low"]["value"], subacute["high"]["value"]) == (
        timings["subacute_from_days"], timings["chronic_from_days"],
    )  # fmt: skip
    assert "high" not in found["PH-CHRONIC"]["timingRange"]
    phase = found["PH-CHRONIC"]["condition"][0]["expression"]["expression"]
    assert phase == f"from day {timings['chronic_from_days']} after onset"

    assert found["REF-2W-SEVERE"]["timingDuration"]["value"] == timings["urgent_referral_days"]
    months = found["REF-3M"]["timingDuration"]
    assert (months["value"], months["code"]) == (timings["persisting_pain_months"], "mo")
    assert found["RF-CES"]["timingDuration"]["value"] == defaults["ces_task_hours"]

    reviews = found["FU-ACTIVE"]["timingTiming"]["repeat"]
    assert (reviews["period"], reviews["periodUnit"]) == (defaults["periodic_review_weeks"], "wk")
    [closer] = found["FU-ACTIVE"]["action"]
    assert closer["timingTiming"]["repeat"]["period"] == defaults["intensive_review_weeks"]
    assert len(closer["condition"]) == 2  # who, and how often
    chronic = found["FU-3M"]["timingTiming"]["repeat"]
    assert (chronic["period"], chronic["periodUnit"]) == (defaults["chronic_review_months"], "mo")

    untimed = found["SDM-CHOICE"]
    assert not any(key.startswith(("timing", "condition")) for key in untimed)


def test_a_changed_number_changes_the_timing_and_a_draft_is_a_draft() -> None:
    text = edit_rule("FU-FIRST", "First follow-up", "First review").replace(
        "first_follow_up_due_days = 28", "first_follow_up_due_days = 21", 1
    )
    draft = parse(text)
    plan = plan_of(draft)
    assert plan["status"] == "draft"
    assert "date" not in plan
    first = actions(plan)["FU-FIRST"]
    assert first["timingRange"]["high"]["value"] == draft.timings["first_follow_up_due_days"]
    assert first["title"].startswith("First review")


def test_the_sources_conflict_and_our_default_travel_as_extensions() -> None:
    definition = pathways.newest()
    found = actions(plan_of(definition))
    notes = {e["url"].rsplit("/", 1)[-1]: e["valueString"] for e in found["SURG-CRIT"]["extension"]}
    rule = definition.rule("SURG-CRIT")
    assert notes == {"rule-conflict": rule.conflict, "rule-default": rule.default}
    assert "extension" not in found["ESI-GUIDED"]


def test_a_version_citing_in_the_rich_form_lists_each_document_once_with_its_references() -> None:
    newer = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")
    plan = plan_of(newer)
    assert [a["label"] for a in plan["relatedArtifact"]] == list(newer.documents)
    for artifact in plan["relatedArtifact"]:
        source = artifact["label"]
        title = newer.titles[source]
        assert artifact["display"] == f"{source}, {title}"
        assert artifact["citation"].startswith(f"{title} ({newer.documents[source]}).")
        for number, entry in newer.references.get(source, {}).items():
            assert f"[{number}] {entry}" in artifact["citation"]
    [s4] = [a for a in plan["relatedArtifact"] if a["label"] == "S4"]
    assert s4["citation"].endswith("It lists no references.")
    guided = actions(plan)["ESI-GUIDED"]["documentation"]
    assert [d["display"] for d in guided] == [str(c) for c in newer.rule("ESI-GUIDED").citations]
    assert guided[0]["display"].startswith("S0, Treatment of Lumbosacral Radiculopathy: ")
