"""The pathway book: one version as the document a clinical governance group signs off.

:func:`book` is ``carepath pathway show --format book``: a self-contained HTML page (no
scripts, nothing loaded from elsewhere, its stylesheet inline) holding the version's title,
status, digest and publication day; the source documents with their titles (where the
version gives them) and the references they list; every named number (the sources' timings,
our defaults, which a clinic may configure, and the evidence figures); every rule under the
heading PATHWAY.md gives its kind, with its strength, text, the sources' conflict, our
default, the recommended care and its citations (each as
:class:`engine.definition.Citation` renders it: for a version citing in the rich form, the
document's title, the statement and the references it gives); and what changed since the
version before (:func:`pathways.review.diff`). Every text is escaped, so a definition's words
can never become markup.

``docs/`` keeps a generated book per shipped version (``make book``, :func:`write_books`);
tests/pathways/test_book.py fails when one is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import pathways
from engine.definition import Definition, Rule
from pathways.review import STRENGTH_WORDS, diff

# The rules' headings, as PATHWAY.md groups them, each with the rule ID prefixes it holds
# (FU-6W is the management track's review; the longest matching prefix decides).
GROUPS: Sequence[tuple[str, tuple[str, ...]]] = (
    ("Phases", ("PH",)),
    ("Management: conservative care, imaging, injections and surgery",
     ("CONS", "FU-6W", "IMG", "ESI", "PRF", "SURG", "SDM", "REHAB", "SCS")),
    ("Referral", ("REF",)),
    ("Red flags", ("RF",)),
    ("Medicines, specialist input and nerve studies", ("MED", "ORD", "NCS")),
    ("Follow-up and assessment", ("FU",)),
    ("Risk markers", ("PRED",)),
    ("Special populations and differentials", ("SP",)),
)  # fmt: skip
OTHER = "Other rules"
COLUMNS = ("Rule", "Strength", "What it says", "Citations")
STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.45; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1a1a1a; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 1.5rem; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { border: 1px solid #8a8a8a; padding: 0.35rem 0.5rem; text-align: left;
         vertical-align: top; }
thead th { background: #e8e8e8; }
code { font-size: 0.95em; }
.note { margin: 0.4rem 0 0; }
.rules th[scope="row"], .rules td:nth-child(2) { width: 13%; }
.rules td:nth-child(3) { width: 47%; }
/* A rules table's caption repeats the heading above it: kept for screen readers only. */
.rules caption { position: absolute; width: 1px; height: 1px; overflow: hidden;
                 clip-path: inset(50%); white-space: nowrap; }
@media print { body { margin: 0; max-width: none; } section { break-inside: auto; }
               tr { break-inside: avoid; } }
"""


def book(definition: Definition, previous: Definition | None) -> str:
    """The version's book as one HTML page; its changes are read against ``previous``."""
    title = f"{definition.title}, version {definition.version}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head>",
        "<body>",
        f"<header><h1>{escape(title)}</h1>",
        "<p>Every rule, number and citation of this pathway version, for clinical "
        "sign-off. A rule's text is shown with this version's own numbers.</p></header>",
        "<main>",
        _version(definition),
        _sources(definition),
        _numbers(definition),
        _rules(definition),
        _changes(definition, previous),
        _sign_off(),
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def book_of(pathway_id: str, version: str) -> str:
    """The book of a shipped version, its changes read against the version before it."""
    found = pathways.definition(pathway_id, version)
    return book(found, pathways.previous(found))


def file_name(pathway_id: str, version: str) -> str:
    return f"pathway-{pathway_id}-{version}.html"


def write_books(directory: Path) -> list[Path]:
    """Write the book of every shipped version of every pathway into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for pathway_id in sorted(pathways.PACKAGES):
        for version in pathways.version_numbers(pathway_id):
            path = directory / file_name(pathway_id, version)
            path.write_text(book_of(pathway_id, version), "utf-8")
            written.append(path)
    return written


def _section(anchor: str, heading: str, *body: str) -> str:
    opening = f'<section aria-labelledby="{anchor}">\n<h2 id="{anchor}">{escape(heading)}</h2>'
    return "\n".join((opening, *body, "</section>"))


def _table(
    caption: str, columns: Sequence[str], rows: Iterable[Sequence[str]], kind: str = "plain"
) -> str:
    """A table whose cells are HTML already; its first cell in each row heads the row."""
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in columns)
    body = "\n".join(
        f'<tr><th scope="row">{row[0]}</th>{"".join(f"<td>{c}</td>" for c in row[1:])}</tr>'
        for row in rows
    )
    return (
        f'<table class="{kind}"><caption>{escape(caption)}</caption>'
        f"\n<thead><tr>{head}</tr></thead>\n"
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _version(definition: Definition) -> str:
    day = pathways.published_on(definition)
    rows = [
        ("Pathway", escape(definition.id)),
        ("Version", escape(definition.version)),
        ("Status", "published" if day else "draft"),
        ("Published", day.isoformat() if day else "not yet published"),
        ("Digest", f"<code>{escape(definition.digest)}</code> (SHA-256 of the definition file)"),
    ]
    return _section("version", "This version", _table("The version", ("Item", "Value"), rows))


def _sources(definition: Definition) -> str:
    """The documents, with their titles when the version gives them (a version citing in
    the rich form does: each citation names its document by title)."""
    titled = bool(definition.titles)
    rows = []
    for source, file in definition.documents.items():
        listed = definition.references.get(source, {})
        references = "".join(f"<li>[{n}] {escape(title)}</li>" for n, title in listed.items())
        title = definition.titles.get(source)
        rows.append(
            (
                escape(source),
                *([escape(title) if title else "<em>none given</em>"] if titled else []),
                f"<code>{escape(file)}</code>",
                f"<ul>{references}</ul>" if references else "none listed in the document",
            )
        )
    columns = ("Source", *(("Title",) if titled else ()), "File", "References it lists")
    table = _table("The source documents", columns, rows)
    return _section("sources", "Source documents", table)


def _numbers(definition: Definition) -> str:
    tables = (
        ("Timings, from the sources", definition.timings),
        ("Defaults: ours, not the sources'; a clinic may change each (CAREPATH_DEFAULTS)",
         definition.defaults),
        ("Evidence figures and scales the texts quote", definition.figures),
    )  # fmt: skip
    body = [
        _table(caption, ("Name", "Value"), [(_code(k), escape(str(v))) for k, v in named.items()])
        for caption, named in tables
    ]
    return _section("numbers", "Named numbers", *body)


def group_of(rule_id: str) -> str:
    """The heading a rule is listed under: the group of its longest matching ID prefix."""
    matches = [
        (len(prefix), heading)
        for heading, prefixes in GROUPS
        for prefix in prefixes
        if rule_id == prefix or rule_id.startswith(prefix + "-")
    ]
    return max(matches)[1] if matches else OTHER


def _rules(definition: Definition) -> str:
    grouped: dict[str, list[Rule]] = {heading: [] for heading, _ in GROUPS}
    for rule in definition.rules.values():
        grouped.setdefault(group_of(rule.id), []).append(rule)
    body = [
        f"<h3>{escape(heading)}</h3>\n" + _table(heading, COLUMNS, map(_rule, rules), "rules")
        for heading, rules in grouped.items()
        if rules
    ]
    return _section("rules", "Rules", *body)


def _rule(rule: Rule) -> tuple[str, str, str, str]:
    says = [f"<p>{escape(rule.text)}</p>"]
    if rule.conflict:
        says.append(f'<p class="note"><strong>The sources disagree:</strong> '
                    f"{escape(rule.conflict)}</p>")  # fmt: skip
    if rule.default:
        says.append(f'<p class="note"><strong>Our default:</strong> {escape(rule.default)}</p>')
    if rule.care:
        care = "".join(f"<li>{escape(c)}</li>" for c in rule.care)
        says.append(f'<p class="note"><strong>Recommended care:</strong></p><ul>{care}</ul>')
    citations = "".join(f"<li>{escape(str(c))}</li>" for c in rule.citations)
    return (
        f'<span id="{escape(rule.id)}"><code>{escape(rule.id)}</code></span><br>'
        f"{escape(rule.title)}",
        f"<code>{escape(rule.strength.value)}</code>: {escape(STRENGTH_WORDS[rule.strength])}",
        "".join(says),
        f"<ul>{citations}</ul>",
    )


def _changes(definition: Definition, previous: Definition | None) -> str:
    if previous is None:
        return _section("changes", "Changes", "<p>First published version.</p>")
    changes = diff(previous, definition)
    heading = f"Changes since {previous.version}"
    rows: list[tuple[str, str, str, str]] = []
    for added in changes["rules"]["added"]:
        rows.append((_code(added["id"]), "rule added", "", _shown(added["title"])))
    for removed in changes["rules"]["removed"]:
        rows.append((_code(removed), "rule removed", "", ""))
    for changed in changes["rules"]["changed"]:
        for name, change in changed["fields"].items():
            rows.append(
                (_code(changed["rule"]), f"{escape(name)} changed", _shown(change["from"]),
                 _shown(change["to"]))
            )  # fmt: skip
    for table in ("timings", "defaults", "figures"):
        numbers: Mapping[str, Any] = changes[table]
        for name, value in numbers["added"].items():
            rows.append((_code(name), f"{table}: added", "", _shown(value)))
        for name, value in numbers["removed"].items():
            rows.append((_code(name), f"{table}: removed", _shown(value), ""))
        for name, change in numbers["changed"].items():
            rows.append((_code(name), f"{table}: changed", _shown(change["from"]),
                         _shown(change["to"])))  # fmt: skip
    if not rows:
        return _section("changes", heading, "<p>No rule or number has changed.</p>")
    note = (
        "<p>Texts are shown as written, each number by its name (<code>{name}</code>), so "
        "that a changed number shows once, under its table.</p>"
    )
    table = _table(heading, ("Rule or number", "Change", "Before", "After"), rows)
    return _section("changes", heading, note, table)


def _code(name: str) -> str:
    return f"<code>{escape(name)}</code>"


def _shown(value: Any) -> str:
    """A changed field's value: a text, a number, a list of texts, or nothing."""
    if value is None:
        return "<em>none</em>"
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{escape(str(v))}</li>" for v in value) + "</ul>"
    return escape(str(value))


def _sign_off() -> str:
    rows = [("&#160;", "", "", "")] * 3
    table = _table("Signed off by", ("Name", "Role", "Signature", "Date"), rows)
    return _section("sign-off", "Sign-off", table)


if __name__ == "__main__":  # `make book`: python -m pathways.book docs
    for written in write_books(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(f"wrote {written}", file=sys.stderr)
