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
from engine.definition import Definition, DefinitionError, Strength, parse_definition
from engine.settings import PathwayDefaults
from engine.view import episode_view
from pathways.lumbosacral_radiculopathy.code import CODE
from pathways.lumbosacral_radiculopathy.corrections import CORRECTIONS
from pathways.lumbosacral_radiculopathy.guards import Verdict
from tests.engine.helpers import Episode

PACKAGE = Path(pathways.__file__).parent / "lumbosacral_radiculopathy"
V1 = (PACKAGE / "1.0.0.toml").read_text("utf-8")
V11 = (PACKAGE / "1.1.0.toml").read_text("utf-8")  # cites in the rich form
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


def edit_rule(rule_id: str, old: str, new: str, text: str = V1) -> str:
    """``text`` (1.0.0 unless given) with ``old`` replaced once in one rule's block (its
    ``[[rules.citations]]`` tables included)."""
    start, end = rule_block(text, rule_id)
    block = text[start:end]
    assert old in block, f"{old!r} is not in {rule_id}"
    return text[:start] + block.replace(old, new, 1) + text[end:]


def citation_tables(rule_id: str) -> str:
    """A 1.1.0 rule's ``[[rules.citations]]`` tables, as written."""
    start, end = rule_block(V11, rule_id)
    block = V11[start:end]
    return block[block.index("[[rules.citations]]") :].rstrip("\n")


CTD_CITATION = citation_tables("SP-CTD")  # its one citation


def edit_citation(rule_id: str, old: str, new: str) -> str:
    """1.1.0 with one of a rule's rich citations edited."""
    return edit_rule(rule_id, old, new, V11)


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


def test_the_registry_hands_out_the_code_an_episodes_pathway_id_names() -> None:
    code = pathways.code(pathways.LUMBOSACRAL_RADICULOPATHY)
    assert code.id == pathways.LUMBOSACRAL_RADICULOPATHY
    assert code.apply_event is CODE.apply_event
    assert code.chart is CODE.chart
    assert pathways.code(pathways.OPENING_PATHWAY) is code
    with pytest.raises(pathways.UnknownPathway, match="no such pathway"):
        pathways.code("lumbar-stenosis")


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
        (
            edit_citation("SP-CTD", 'source = "S4"', 'source = "S9"'),
            "rule SP-CTD, citation 1",
            "S9 is not a document of this definition",
        ),
        (
            V11.replace(
                'title = "Management of Lower Back Pain with Radiation to Hip, Knees, and Foot"\n',
                "",
                1,
            ),
            "rule PH-ACUTE, citation 5",
            "S4 is cited with the statement it supports, so [documents.S4] needs the "
            "document's title",
        ),
        (
            V11.replace('title = "Treatment of Lumbosacral Radiculopathy"', "title = 7", 1),
            "documents, S0",
            "title must be a text",
        ),
        (
            edit_citation("SP-CTD", CTD_CITATION, "citations = []"),
            "rule SP-CTD",
            "every rule needs at least one citation",
        ),
        (
            edit_citation(
                "SP-CTD",
                CTD_CITATION,
                '[[rules.citations]]\nsource = "S4"\nrefs = [1]\nsupports = " "',
            ),
            "rule SP-CTD, citation 1, supports",
            "needs the statement of the document the rule rests on",
        ),
        (
            edit_citation("SP-CTD", "more gradual physiotherapy", "physiotherapy for 2 weeks"),
            "rule SP-CTD, citation 1, supports",
            "the number '2' is written in the text",
        ),
        (
            edit_citation(
                "SP-CTD", "more gradual physiotherapy", "{conservative_window_days:weeks} weeks of"
            ),
            "rule SP-CTD, citation 1, supports",
            "{conservative_window_days} is not one of the sources' timings or figures",
        ),
        (
            edit_citation("SP-CTD", "refs = [1]", "refs = [0]"),
            "rule SP-CTD, citation 1, refs",
            "0 is not a reference number",
        ),
        (
            edit_citation("SP-CTD", "refs = [1]", 'refs = ["1"]'),
            "rule SP-CTD, citation 1, refs",
            "'1' is not a reference number",
        ),
        (
            edit_citation("SP-CTD", "refs = [1]", "refs = [1, 1]"),
            "rule SP-CTD, citation 1, refs",
            "a reference number is given twice",
        ),
        (
            edit_citation("SP-CTD", "refs = [1]\n", ""),
            "rule SP-CTD, citation 1, refs",
            "needs the reference numbers the document gives for the statement",
        ),
        (
            edit_citation("SP-CTD", "supports = ", "support = "),
            "rule SP-CTD, citation 1",
            "unknown key 'support'",
        ),
        (
            edit_citation("SP-CTD", CTD_CITATION, "citations = { S4 = [1] }"),
            "rule SP-CTD, citations",
            "this version cites in the rich form",
        ),
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
        "rich-unknown-document",
        "rich-document-without-title",
        "rich-title-not-text",
        "rich-no-citation",
        "rich-no-statement",
        "rich-number-in-statement",
        "rich-default-in-statement",
        "rich-ref-zero",
        "rich-ref-not-a-number",
        "rich-ref-twice",
        "rich-refs-missing",
        "rich-unknown-key",
        "rich-and-compact-mixed",
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
    shown = {
        r["rule"]: r["text"] for r in episode_view(CODE, episode.state, longer)["recommendations"]
    }
    assert "for at least 8 weeks" in shown["CONS-ADEQUATE"]
    usual = {r["rule"]: r["text"] for r in episode_view(CODE, episode.state)["recommendations"]}
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


def test_the_published_versions_compact_citations_render_as_they_always_have() -> None:
    first = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    assert first.titles == {}
    assert not any(c.rich for rule in first.rules.values() for c in rule.citations)
    assert [str(c) for c in first.rule("ESI-GUIDED").citations] == [
        "S0 (000_b802428f9beaff9b.txt): S0 reference 1 (not listed in the document)",
        "S0 (000_b802428f9beaff9b.txt): S0 reference 2 (not listed in the document)",
        "S1 (001_1e47186070771f48.txt): Guideline Directed Topic Overview, Dr.Oracle Medical "
        "Advisory Board & Editors, 2025 [ref 1]",
    ]
    assert [str(c) for c in first.rule("SP-PLEXUS").citations] == [
        "S3 (003_ed4495df44311d77.txt): Lumbosacral Plexopathy Diagnosis and Management, "
        "Praxis Medical Insights, 2025 [ref 1]",
        "S3 (003_ed4495df44311d77.txt): Lumbosacral radicular pain, Pain Practice, 2010 [ref 4]",
        "S3 (003_ed4495df44311d77.txt): S3 reference 8 (not listed in the document)",
    ]
    assert [str(c) for c in first.rule("FU-FIRST").citations] == [
        "S3 (003_ed4495df44311d77.txt): Lumbar Radiculopathy and Polyneuropathy: Diagnostic "
        "Considerations, Praxis Medical Insights, 2025 [ref 2]"
    ]


NOT_LISTED_ONLY = re.compile(r".*: S\d reference \d+ \(not listed in the document\)")


def test_every_citation_of_1_1_0_names_its_documents_title_and_the_statement() -> None:
    newer = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")
    assert set(newer.titles) == set(newer.documents)
    for rule in newer.rules.values():
        for citation in rule.citations:
            shown = str(citation)
            assert citation.rich, f"{rule.id}: {shown}"
            assert not NOT_LISTED_ONLY.fullmatch(shown), f"{rule.id}: {shown}"
            assert citation.title == newer.titles[citation.source]
            assert citation.supports is not None
            assert citation.supports.strip()
            assert shown.startswith(f"{citation.source}, {citation.title}: {citation.supports}")
            assert "{" not in shown, f"{rule.id}: a number is not filled in: {shown}"
            listed = newer.references.get(citation.source, {})
            for number in citation.refs:
                if number in listed:
                    assert f"ref {number}: {listed[number]}" in shown, rule.id
                else:
                    assert re.search(rf"\brefs? (\d+, )*{number}(, \d+)*: not listed", shown)


def test_a_rich_citation_shows_the_references_it_gives_and_none_when_it_gives_none() -> None:
    newer = parse(V11)
    [_, plexus_mri, _] = newer.rule("SP-PLEXUS").citations
    assert str(plexus_mri) == (
        "S3, Follow-Up Assessment for Lumbosacral Radiculopathy: When plexopathy and "
        "radiculopathy cannot be told apart, MRI of the lumbosacral plexus is worth "
        "considering: S3 reports that it changes management in 71% of cases. [ref 1: "
        "Lumbosacral Plexopathy Diagnosis and Management, Praxis Medical Insights, 2025; ref 8: "
        "not listed in the document]"
    )
    [unlisted] = (
        parse(edit_citation("SP-CTD", "refs = [1]", "refs = [3, 1]")).rule("SP-CTD").citations
    )
    assert str(unlisted).endswith(
        "connective tissue disorder. [refs 3, 1: not listed in the document]"
    )
    [none] = parse(edit_citation("SP-CTD", "refs = [1]", "refs = []")).rule("SP-CTD").citations
    assert str(none) == (
        "S4, Management of Lower Back Pain with Radiation to Hip, Knees, and Foot: S4 calls for "
        "gentler, more gradual physiotherapy when the patient has a connective tissue disorder."
    )
    assert none.refs == ()


def test_a_citations_statement_says_the_sources_numbers_never_the_clinics() -> None:
    newer = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")
    longer = newer.rules_with({"conservative_window_days": 56, "adequate_physio_days": 56})
    assert "for at least 8 weeks" in longer["CONS-ADEQUATE"].text
    for rule_id in ("CONS-ADEQUATE", "IMG-6W", "ESI-6W"):
        assert longer[rule_id].citations == newer.rules[rule_id].citations
    assert "failed for 6 weeks" in str(newer.rule("IMG-6W").citations[0])
    # As written, the statement names the number; the rules show it filled in.
    [template] = [c for c in newer.templates["SP-PLEXUS"].citations if "{" in str(c)]
    assert "{plexus_mri_changes_management}" in str(template)
