"""Pathway definitions: every shipped version passes its checks, a published one cannot be
edited, each check refuses what it is for, and texts say the clinic's numbers."""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import pytest

import pathways
from engine.corrections import CORRECTIONS
from engine.definition import Definition, DefinitionError, Strength, parse_definition
from engine.guards import Verdict
from engine.settings import PathwayDefaults
from engine.view import episode_view
from tests.engine.helpers import Episode

PACKAGE = Path(pathways.__file__).parent / "lumbosacral_radiculopathy"
V1 = (PACKAGE / "1.0.0.toml").read_text("utf-8")
DEFAULT_NAMES = [f.name for f in fields(PathwayDefaults)]


def parse(text: str) -> Definition:
    return parse_definition(text.encode(), "1.0.0.toml", DEFAULT_NAMES, CORRECTIONS)


def correction(correction_id: str, rules: str) -> str:
    return f'\n[[corrections]]\nid = "{correction_id}"\nrules = [{rules}]\ntext = "A change."\n'


def rule_block(text: str, rule_id: str) -> tuple[int, int]:
    """Where one rule's [[rules]] block is in the file's text."""
    start = text.index(f'[[rules]]\nid = "{rule_id}"')
    end = text.find("[[rules]]", start + 1)
    return start, len(text) if end < 0 else end


def edit_rule(rule_id: str, old: str, new: str) -> str:
    start, end = rule_block(V1, rule_id)
    block = V1[start:end]
    assert old in block, f"{old!r} is not in {rule_id}"
    return V1[:start] + block.replace(old, new, 1) + V1[end:]


@pytest.mark.parametrize("pathway_id", sorted(pathways.PACKAGES))
def test_every_shipped_version_passes_its_checks(pathway_id: str) -> None:
    shipped = pathways.versions(pathway_id)
    assert shipped, f"{pathway_id} ships no version"
    for version in shipped:
        loaded = pathways.definition(pathway_id, version.version)
        assert loaded.digest == version.digest
        assert all(rule.citations for rule in loaded.rules.values())
        for rule in loaded.rules.values():  # every placeholder was filled in
            assert "{" not in rule.text + rule.title + "".join(rule.care), rule.id


def test_the_first_version_is_published_with_the_engines_defaults() -> None:
    first = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    [listed] = [v for v in pathways.versions(first.id) if v.version == "1.0.0"]
    assert listed.status == "published"
    assert listed.published_at is not None
    engine_defaults = vars(PathwayDefaults())
    for version in pathways.versions(first.id):  # each number as the engine configures it
        named = pathways.definition(first.id, version.version).defaults
        assert {k: engine_defaults[k] for k in named} == dict(named), version.version


def test_a_published_definition_edited_afterwards_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "edited_pathway"
    shutil.copytree(PACKAGE, copy)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pathways.PACKAGES, "edited-pathway", "edited_pathway")
    text = V1.replace('id = "lumbosacral-radiculopathy"', 'id = "edited-pathway"', 1)
    published = (copy / "published.toml").read_text()
    digest = parse_definition(text.encode(), "1.0.0.toml").digest
    (copy / "published.toml").write_text(re.sub(r"sha256:[0-9a-f]{64}", digest, published))
    (copy / "1.0.0.toml").write_text(text)
    assert pathways.definition("edited-pathway", "1.0.0").digest == digest  # as published

    pathways.definition.cache_clear()
    (copy / "1.0.0.toml").write_text(text.replace("no bed rest", "bed rest", 1))
    try:
        with pytest.raises(DefinitionError, match="edited after publication") as refused:
            pathways.definition("edited-pathway", "1.0.0")
        assert digest in str(refused.value)
    finally:
        pathways.definition.cache_clear()
        sys.modules.pop("edited_pathway", None)


def test_an_unknown_version_names_the_known_ones() -> None:
    with pytest.raises(pathways.UnknownPathway, match=r"no such version \(known: 1\.0\.0"):
        pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "9.9.9")
    with pytest.raises(pathways.UnknownPathway, match="no such pathway"):
        pathways.definition("lumbar-stenosis", "1.0.0")


@pytest.mark.parametrize(
    ("edited", "where", "problem"),
    [
        (
            edit_rule("PH-ACUTE", "until day {subacute_from_days}", "until day 42"),
            "rule PH-ACUTE, text",
            "the number '42' is written in the text",
        ),
        (
            edit_rule(
                "FU-3M", "every {chronic_review_months} months", "every {review_months} months"
            ),
            "rule FU-3M, title",
            "{review_months} names no timing, default or figure",
        ),
        (
            edit_rule(
                "IMG-6W",
                "{conservative_window_days:weeks}",
                "{conservative_window_days:fortnights}",
            ),
            "rule IMG-6W, title",
            "the unit must be one of",
        ),
        (
            edit_rule("SP-CTD", "citations = { S4 = [1] }", "citations = {}"),
            "rule SP-CTD, citations",
            "every rule needs at least one citation",
        ),
        (
            edit_rule("SP-CTD", "citations = { S4 = [1] }", "citations = { S9 = [1] }"),
            "rule SP-CTD, citations",
            "S9 is not a document of this definition",
        ),
        (
            edit_rule("ESI-GUIDED", 'strength = "refuse"', 'strength = "forbid"'),
            "rule ESI-GUIDED",
            "strength must be one of",
        ),
        (
            edit_rule("SP-CTD", 'id = "SP-CTD"', 'id = "SP-PELVIC"'),
            "rule SP-PELVIC",
            "the rule ID is used twice",
        ),
        (
            edit_rule("SP-CTD", "Gentler physiotherapy", "Gentler physiotherapy for 2 weeks"),
            "rule SP-CTD, care 1",
            "the number '2' is written",
        ),
        (
            V1.replace("high_vas = 7\n", "high_vas = 7\nlow_vas = 2\n", 1),
            "defaults",
            "not configurable by the engine: low_vas",
        ),
        (V1.replace("[timings]", "[timing]", 1), "1.0.0.toml", "'timings' is missing"),
        (
            V1 + correction("EP-FOREVER", '"PH-ACUTE"'),
            "correction EP-FOREVER",
            "the engine has no code for this correction",
        ),
        (
            V1 + correction("EP-FINAL", '"EP-FINAL"'),
            "correction EP-FINAL, rules",
            "not rules of this version: EP-FINAL",
        ),
        (V1 + correction("EP-FINAL", ""), "correction EP-FINAL, rules", "must name the rules"),
        (V1 + "\n[[rules]\n", "1.0.0.toml", "not a TOML file"),
    ],
    ids=[
        "number-in-text",
        "unknown-placeholder",
        "unknown-unit",
        "no-citation",
        "unknown-document",
        "unknown-strength",
        "repeated-id",
        "number-in-care",
        "default-unknown",
        "table-missing",
        "correction-unknown",
        "correction-rule-missing",
        "correction-without-rules",
        "not-toml",
    ],  # fmt: skip
)
def test_a_definition_that_breaks_a_check_is_refused_naming_where(
    edited: str, where: str, problem: str
) -> None:
    with pytest.raises(DefinitionError) as refused:
        parse(edited)
    assert where in refused.value.where
    assert problem in refused.value.problem


def test_whether_an_override_is_possible_is_the_rules_strength() -> None:
    published = pathways.newest()
    verdict = Verdict(published)
    verdict.refuse("ESI-GUIDED", "blind injection")
    verdict.refuse("IMG-6W", "not a candidate")
    assert published.rule("ESI-GUIDED").strength is Strength.REFUSE
    assert [c.override for c in verdict.refusals] == [False, True]
    with pytest.raises(ValueError, match="MED-OPIOID is a warn rule: it cannot refuse"):
        verdict.refuse("MED-OPIOID", "opioid first-line")
    # The same guard under a definition that lets ESI-GUIDED be overridden.
    lenient = parse_definition(
        edit_rule("ESI-GUIDED", 'strength = "refuse"', 'strength = "refuse_with_override"')
        .encode(), "1.0.0.toml", DEFAULT_NAMES,
    )  # fmt: skip
    other = Verdict(lenient)
    other.refuse("ESI-GUIDED", "blind injection")
    assert [c.override for c in other.refusals] == [True]


def test_rule_texts_say_the_clinics_numbers() -> None:
    longer = PathwayDefaults(adequate_physio_days=56)
    episode = Episode(defaults=longer)
    episode.run_until(episode.day(43))  # the six-week review is open
    shown = {r["rule"]: r["text"] for r in episode_view(episode.state, longer)["recommendations"]}
    assert "for at least 8 weeks" in shown["CONS-ADEQUATE"]
    usual = {r["rule"]: r["text"] for r in episode_view(episode.state)["recommendations"]}
    assert "for at least 6 weeks" in usual["CONS-ADEQUATE"]


def test_code_asking_for_a_correction_the_engine_does_not_know_fails_loudly() -> None:
    newer = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")
    assert newer.corrects("EP-FINAL")
    assert not pathways.definition(newer.id, "1.0.0").corrects("EP-FINAL")
    with pytest.raises(KeyError, match="unknown correction 'EP-FINALE'"):
        newer.corrects("EP-FINALE")


def test_a_version_need_not_name_a_default_it_does_not_use() -> None:
    # A later engine may configure numbers a published version never knew of.
    text = V1.replace("escalate_emergency_hours = 0\n", "", 1)
    assert "escalate_emergency_hours" not in parse(text).defaults
