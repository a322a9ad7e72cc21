"""The pathway book: every rule, strength and number, every text escaped, the changes since
the version before, and docs/ holding a fresh copy of each shipped version's book."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

import pathways
from engine.definition import Definition
from pathways.book import GROUPS, OTHER, book, book_of, file_name, group_of
from tests.pathways.test_definitions import edit_rule, parse

DOCS = Path(__file__).resolve().parents[2] / "docs"
SHIPPED = [
    (pathway_id, version)
    for pathway_id in sorted(pathways.PACKAGES)
    for version in pathways.version_numbers(pathway_id)
]


def first_version() -> Definition:
    """1.0.0, the first published version, whose text the edits below start from."""
    return pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")


def rule_row(page: str, rule_id: str) -> str:
    """The table row that lists one rule."""
    start = page.index(f'<span id="{rule_id}">')
    return page[start : page.index("</tr>", start)]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)


@pytest.mark.parametrize(("pathway_id", "version"), SHIPPED)
def test_the_committed_book_is_the_one_the_definition_gives(pathway_id: str, version: str) -> None:
    committed = DOCS / file_name(pathway_id, version)
    assert committed.exists(), f"docs/{committed.name} is missing: run `make book`"
    assert committed.read_text("utf-8") == book_of(pathway_id, version), (
        f"docs/{committed.name} is stale: run `make book`"
    )


def test_the_book_names_every_rule_with_its_strength_and_the_version() -> None:
    definition = first_version()
    page = book(definition, None)
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    for shown in (definition.title, definition.version, definition.digest, "published"):
        assert shown in page
    published = pathways.published_on(definition)
    assert published is not None
    assert published.isoformat() in page
    for rule in definition.rules.values():
        row = rule_row(page, rule.id)
        assert f"<code>{rule.strength.value}</code>" in row, rule.id
        assert all(c.source in row for c in rule.citations), rule.id
    for source, file in definition.documents.items():
        assert f'<th scope="row">{source}</th><td><code>{file}</code>' in page
    assert "First published version." in page


def test_every_named_number_is_listed_and_timed_rules_show_their_values() -> None:
    definition = first_version()
    page = book(definition, None)
    for table in (definition.timings, definition.defaults, definition.figures):
        for name, value in table.items():
            assert f'<th scope="row"><code>{name}</code></th><td>{value}</td>' in page, name
    timings, defaults = definition.timings, definition.defaults
    samples = {
        "PH-SUBACUTE": (timings["subacute_from_days"], timings["chronic_from_days"]),
        "FU-FIRST": (timings["first_follow_up_opens_days"], timings["first_follow_up_due_days"]),
        "REF-3M": (timings["persisting_pain_months"],),
        "RF-CES": (defaults["ces_task_hours"],),
        "MED-OPIOID": (defaults["opioid_limit_days"],),
    }
    for rule_id, values in samples.items():
        row = rule_row(page, rule_id)
        for value in values:
            assert re.search(rf"\b{value}\b", row), f"{rule_id} does not say {value}"


def test_rules_are_grouped_as_the_pathway_groups_them() -> None:
    assert group_of("PH-ACUTE") == "Phases"
    assert group_of("FU-6W") == group_of("IMG-6W") == GROUPS[1][0]  # the management track
    assert group_of("FU-FIRST") == "Follow-up and assessment"
    assert group_of("RF-CES") == "Red flags"
    assert group_of("REF-3M") == "Referral"  # not a red flag: REF is not RF
    assert group_of("EP-FINAL") == OTHER
    page = book(first_version(), None)
    headings = re.findall(r"<h3>(.*?)</h3>", page)
    assert headings == [heading for heading, _ in GROUPS]


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & <b>'
    text = edit_rule("SDM-CHOICE", "decided together with the patient", hostile)
    text = text.replace('title = "Lumbosacral', 'title = "<i>Lumbosacral', 1)
    page = book(parse(text), None)
    assert "<script>" not in page
    assert "<i>" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    parsed = Tags()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attributes)
    assert not any(
        value and value.startswith(("http:", "https:", "//")) for _, value in parsed.attributes
    ), "the book loads nothing from elsewhere"


def test_the_changes_list_each_rule_and_number_that_changed() -> None:
    old = first_version()
    text = edit_rule("MED-STEROID", 'strength = "advisory"', 'strength = "warn"')
    text = text.replace("high_vas = 7\n", "high_vas = 6\n", 1).replace(
        'version = "1.0.0"', 'version = "9.9.9"', 1
    )
    new: Definition = parse(text)
    page = book(new, old)
    changes = page[page.index('<h2 id="changes">') :]
    assert f"Changes since {old.version}" in changes
    assert "<code>MED-STEROID</code>" in changes
    assert "strength changed" in changes
    assert "<td>advisory</td><td>warn</td>" in changes
    assert "<code>high_vas</code>" in changes
    assert "<td>7</td><td>6</td>" in changes
    assert "draft" in page
    assert "not yet published" in page
    assert "No rule or number has changed." in book(old, old)


def test_a_version_citing_in_the_rich_form_shows_each_documents_title_and_statement() -> None:
    newer = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.1.0")
    page = book(newer, pathways.previous(newer))
    sources = page[page.index('<h2 id="sources">') : page.index('<h2 id="numbers">')]
    assert '<th scope="col">Title</th>' in sources
    for source, title in newer.titles.items():
        file = newer.documents[source]
        assert f'<th scope="row">{source}</th><td>{escape(title)}</td><td><code>{file}</code>' in (
            sources
        )
    for rule in newer.rules.values():
        row = rule_row(page, rule.id)
        for citation in rule.citations:
            assert f"<li>{escape(str(citation))}</li>" in row, rule.id
    first = book_of(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    assert '<th scope="col">Title</th>' not in first  # the published book is as it was
