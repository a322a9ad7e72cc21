"""A pathway definition: the clinical content of one pathway version, read from its file.

A definition (``pathways/<pathway>/<version>.toml``) holds what a clinical governance group
reviews and signs off, and nothing of the engine's mechanics:

* ``documents``: the source documents, by S-number, each with its file, its title where the
  definition gives one, and the references it lists;
* ``timings``: the numbers the sources give (the subacute phase from day 42);
* ``defaults``: the numbers that are ours, not the sources' (PATHWAY.md marks them
  **default**), which a clinic may change (:class:`engine.settings.PathwayDefaults`);
* ``figures``: evidence figures and scales the texts quote (an odds ratio, ``0-10``);
* ``rules``: each with its ID, title, strength, text, citations, and, where they apply, the
  sources' conflict, our default and the recommended care. A rule cites in one of two forms:
  compact, ``citations = { S3 = [1, 2] }`` (each document and the reference numbers it
  gives), or rich, one ``[[rules.citations]]`` table per statement the rule rests on, with
  ``source``, ``refs`` (the reference numbers the document gives for it, possibly none) and
  ``supports`` (the statement, in our own words). A version that uses the rich form uses it
  for every rule, so that each of its citations says something a clinician can check;
* ``corrections``: the behaviours this version corrects since the first (each by an ID the
  pathway's code knows, its ``corrections`` module, with the rules it touches): where
  behaviour changed, the engine asks the episode's definition, ``pathway.corrects("EP-FINAL")``, so
  episodes on an earlier version keep the behaviour they started with.

Texts never write a number: they name it, ``{subacute_from_days}``, or with a unit,
``{conservative_window_days:weeks}`` (days shown as weeks) or ``{improve_vas_fraction:percent}``,
so a rule's text always says what the engine does, with the clinic's own defaults.
:func:`parse_definition` refuses a definition with a number written in a text, a placeholder
that names nothing, a rule without a citation or citing a document it does not list, a
rich citation whose document has no title, whose statement is missing or quotes one of our
defaults, or whose reference numbers are not positive whole numbers, a version mixing the two
forms, an unknown strength, a repeated rule ID, or a default the engine does not configure.

A definition's digest is the SHA-256 of its file. A published definition is never edited (a
change is a new version): the registry (:mod:`pathways`) compares the digest with the one
recorded at publication before it hands the definition out.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache, cached_property
from types import MappingProxyType
from typing import Any

from engine.errors import CarepathError
from engine.placeholders import Number, TextError, check_text, fill, named

RULE_ID = re.compile(r"[A-Z]{2,}(?:-[A-Z0-9]+)+")
_TEXT_FIELDS = ("title", "text", "conflict", "default")


class Strength(StrEnum):
    """How a rule acts on the episode.

    Attributes:
        REFUSE: the order is refused and no override is possible (ESI-GUIDED).
        REFUSE_WITH_OVERRIDE: refused unless a clinician gives a documented, audited reason.
        WARN: accepted, with a warning shown and recorded.
        ADVISORY: information or a suggestion shown to the clinician; never blocks anything.
        TRIGGER: derives a state change, a due item or a marker (phases, red flags, referral
            deadlines, follow-up reviews, risk markers, special-population adjustments).
    """

    REFUSE = "refuse"
    REFUSE_WITH_OVERRIDE = "refuse_with_override"
    WARN = "warn"
    ADVISORY = "advisory"
    TRIGGER = "trigger"

    @property
    def refuses(self) -> bool:
        return self in (Strength.REFUSE, Strength.REFUSE_WITH_OVERRIDE)

    @property
    def overridable(self) -> bool:
        """Whether a documented override reason lets a refusal by this rule through."""
        return self is Strength.REFUSE_WITH_OVERRIDE


@dataclass(frozen=True)
class Citation:
    """Where a rule's statement comes from.

    A compact citation (``citations = { S0 = [1] }``, version 1.0.0) is one reference of one
    document, and renders as ``S2 (002_….txt): <reference>``. A rich citation (a
    ``[[rules.citations]]`` table) is one statement of one document, and renders as the
    document's title, the statement, and the references the document gives for it::

        S3, <title>: <supports> [ref 1: <reference>; ref 8: not listed in the document]

    each listed reference by its entry in the document's list, those the document uses but
    does not list named together at the end, and no bracket when the document gives no
    reference for the statement.

    Attributes:
        source: the source document's S-number, ``"S0"`` to ``"S4"``.
        document: the seed file name of that document.
        reference: the reference the document gives for the statement, in short form, e.g.
            ``"Medical Necessity of Lumbar Fusion, Praxis Medical Insights, 2025 [ref 2]"``, or
            ``"S0 reference 1 (not listed in the document)"`` when the document cites a number
            it does not list; for a rich citation, every reference it gives, as in the
            bracket above (empty when it gives none).
        title: the document's title (rich citations only).
        supports: the statement of the document the rule rests on, in our own words (rich
            citations only).
        refs: the reference numbers the document gives for the statement (rich citations).
    """

    source: str
    document: str
    reference: str
    title: str | None = None
    supports: str | None = None
    refs: tuple[int, ...] = ()

    @property
    def rich(self) -> bool:
        """Whether the citation names the document's title and the statement it supports."""
        return self.supports is not None

    def __str__(self) -> str:
        """Render the citation for people: ``S2 (002_….txt): <reference>`` for a compact
        citation, ``S3, <title>: <supports> [<references>]`` for a rich one."""
        if self.supports is None:
            return f"{self.source} ({self.document}): {self.reference}"
        shown = f"{self.source}, {self.title}: {self.supports}"
        return f"{shown} [{self.reference}]" if self.reference else shown


@dataclass(frozen=True)
class Rule:
    """One rule of the pathway, its texts with the numbers filled in.

    Attributes:
        id: the stable rule ID from PATHWAY.md, e.g. ``"IMG-NO-EARLY"``.
        title: a short title.
        text: what the rule says, in our own words.
        strength: how the rule acts (see :class:`Strength`).
        citations: the sources and references behind it; at least one.
        conflict: for rules where the sources disagree, both positions, each attributed.
        default: for rules with a number of ours, which number is our default and the
            :class:`engine.settings.PathwayDefaults` field that configures it.
        care: the recommended care (care-plan activities) of a phase or population rule.
    """

    id: str
    title: str
    text: str
    strength: Strength
    citations: tuple[Citation, ...]
    conflict: str | None = None
    default: str | None = None
    care: tuple[str, ...] = ()


@dataclass(frozen=True)
class Correction:
    """A behaviour a version corrects: its ID, the rules it touches, what changed."""

    id: str
    rules: tuple[str, ...]
    text: str


class DefinitionError(CarepathError):
    """A pathway definition that cannot be used, and where: ``where`` names the file and the
    rule or field (``1.0.0.toml, rule IMG-6W, text``), ``problem`` says what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, eq=False)
class Definition:
    """One pathway version's content, checked (build it with :func:`parse_definition`).

    Compared and hashed by identity: the registry hands out one per version, and caches
    keyed by it (a clinic's texts, :func:`rules_for`) stay cheap.

    ``rules`` hold their texts as written, with placeholders; :meth:`rules_with` fills them
    in with a clinic's defaults, :attr:`rules` with the definition's own.
    """

    id: str
    version: str
    title: str
    digest: str
    documents: Mapping[str, str]
    references: Mapping[str, Mapping[int, str]]
    timings: Mapping[str, Number]
    defaults: Mapping[str, Number]
    figures: Mapping[str, Number]
    templates: Mapping[str, Rule] = field(repr=False)
    corrections: Mapping[str, Correction] = field(default_factory=dict)
    titles: Mapping[str, str] = field(default_factory=dict)
    """The documents' titles, by S-number, for those the definition gives one."""
    known_corrections: frozenset[str] | None = field(default=None, repr=False)
    """The corrections the pathway's code knows (None: not checked)."""

    def corrects(self, correction_id: str) -> bool:
        """Whether this version includes the correction ``correction_id``.

        Raises:
            KeyError: the pathway's code knows no such correction (a misspelt ID in the
                code would otherwise select the old behaviour for ever).
        """
        known = self.known_corrections
        if known is not None and correction_id not in known:
            raise KeyError(f"unknown correction {correction_id!r}")
        return correction_id in self.corrections

    @cached_property
    def rules(self) -> Mapping[str, Rule]:
        """Every rule, keyed by ID in the definition's order, with its own default numbers."""
        return self.rules_with(self.defaults)

    def rules_with(self, defaults: Mapping[str, Number]) -> Mapping[str, Rule]:
        """Every rule, its numbers filled in with ``defaults`` (a clinic's; the
        definition's own where one is not given)."""
        numbers = {**self.timings, **self.figures, **self.defaults, **defaults}
        # A citation says what its document says: the sources' numbers, never a clinic's.
        sources = {**self.timings, **self.figures}
        return MappingProxyType(
            {rule_id: _filled(rule, numbers, sources) for rule_id, rule in self.templates.items()}
        )

    def rule(self, rule_id: str) -> Rule:
        """One rule by ID.

        Raises:
            KeyError: no rule has that ID; the message names the ID and the version.
        """
        try:
            return self.rules[rule_id]
        except KeyError:
            raise KeyError(
                f"unknown rule id {rule_id!r}: not a rule of {self.id} {self.version}"
            ) from None

    def timing(self, name: str) -> int:
        """One of the sources' timings, by name (``subacute_from_days``)."""
        return int(self.timings[name])

    def check_uses(self, rule_ids: Iterable[str], where: str) -> None:
        """Refuse code that names a rule this definition does not have.

        Raises:
            DefinitionError: naming the first rule ID ``where`` uses that is missing.
        """
        missing = sorted(set(rule_ids) - set(self.templates))
        if missing:
            raise DefinitionError(
                f"{self.id} {self.version}", f"{where} uses rules it lacks: {', '.join(missing)}"
            )


@cache
def rules_for(definition: Definition, defaults: object) -> Mapping[str, Rule]:
    """Every rule of ``definition``, its texts saying a clinic's ``defaults`` (a dataclass
    of the configurable numbers, hashable: the answer is kept per pair)."""
    return definition.rules_with(vars(defaults))


def parse_definition(
    content: bytes,
    name: str,
    default_names: Iterable[str] | None = None,
    known_corrections: Iterable[str] | None = None,
    rules_used: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> Definition:
    """Read and check a definition file's ``content`` (``name``, for messages).

    Args:
        content: the file's bytes (the digest is theirs).
        name: the file's name, for messages.
        default_names: the numbers the engine lets a clinic configure; the definition's
            ``defaults`` may name only these.
        known_corrections: the corrections the pathway's code knows; a definition may list
            only these.
        rules_used: the rules the engine's code acts on for a version with the given
            corrections (the pathway's ``rules_used.used_by``); the definition must hold
            each.

    Raises:
        DefinitionError: what is wrong, and where.
    """
    try:
        raw = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(name, f"not a TOML file: {exc}") from None
    for key in ("id", "version", "title", "documents", "timings", "defaults", "figures"):
        if key not in raw:
            raise DefinitionError(name, f"{key!r} is missing")
    documents = {source: str(doc["file"]) for source, doc in raw["documents"].items()}
    references = {
        source: {int(n): str(title) for n, title in doc.get("references", {}).items()}
        for source, doc in raw["documents"].items()
    }
    titles: dict[str, str] = {}
    for source, doc in raw["documents"].items():
        if "title" in doc:
            if not isinstance(doc["title"], str) or not doc["title"].strip():
                raise DefinitionError(f"{name}, documents, {source}", "title must be a text")
            titles[source] = doc["title"]
    numbers: dict[str, Number] = {}
    for table in ("timings", "defaults", "figures"):
        for key, value in raw[table].items():
            if key in numbers:
                raise DefinitionError(f"{name}, {table}", f"{key!r} is named twice")
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise DefinitionError(f"{name}, {table}, {key}", "must be a number or a text")
            numbers[key] = value
    if default_names is not None:
        # A version names the defaults it uses: a later engine may configure more numbers
        # than an earlier, published version knew of.
        unknown = sorted(set(raw["defaults"]) - set(default_names))
        if unknown:
            raise DefinitionError(
                f"{name}, defaults", f"not configurable by the engine: {', '.join(unknown)}"
            )
    sources = Sources(documents, titles, references, raw["timings"], raw["figures"])
    templates: dict[str, Rule] = {}
    for index, entry in enumerate(raw.get("rules", [])):
        rule = _rule(entry, f"{name}, rule {entry.get('id', f'#{index + 1}')}", sources,
                     numbers)  # fmt: skip
        if rule.id in templates:
            raise DefinitionError(f"{name}, rule {rule.id}", "the rule ID is used twice")
        templates[rule.id] = rule
    if not templates:
        raise DefinitionError(name, "no rules")
    _check_one_form(list(templates.values()), name)
    known = None if known_corrections is None else frozenset(known_corrections)
    corrections = _corrections(raw.get("corrections", []), name, templates, numbers,
                               known)  # fmt: skip
    if rules_used is not None:
        lacking = sorted(set(rules_used(corrections)) - set(templates))
        if lacking:
            raise DefinitionError(
                name, f"the engine acts on rules this version lacks: {', '.join(lacking)}"
            )
    return Definition(
        id=str(raw["id"]),
        version=str(raw["version"]),
        title=str(raw["title"]),
        digest="sha256:" + hashlib.sha256(content).hexdigest(),
        documents=MappingProxyType(documents),
        references=MappingProxyType({k: MappingProxyType(v) for k, v in references.items()}),
        timings=MappingProxyType(dict(raw["timings"])),
        defaults=MappingProxyType(dict(raw["defaults"])),
        figures=MappingProxyType(dict(raw["figures"])),
        templates=MappingProxyType(templates),
        corrections=MappingProxyType(corrections),
        titles=MappingProxyType(titles),
        known_corrections=known,
    )


@dataclass(frozen=True)
class Sources:
    """What a rule's citations are checked against: the definition's documents, their
    titles and reference lists, and the numbers the sources give (timings and figures)."""

    documents: Mapping[str, str]
    titles: Mapping[str, str]
    references: Mapping[str, Mapping[int, str]]
    timings: Mapping[str, Number]
    figures: Mapping[str, Number]


def _check_one_form(rules: Sequence[Rule], name: str) -> None:
    """A version that cites in the rich form does so for every rule: none of its citations
    may be only a reference number."""
    compact = [rule.id for rule in rules if not all(c.rich for c in rule.citations)]
    if compact and len(compact) < len(rules):
        raise DefinitionError(
            f"{name}, rule {compact[0]}, citations",
            "this version cites in the rich form ([[rules.citations]] with source, refs and "
            f"supports), so every rule must; {', '.join(compact)} "
            f"{'uses' if len(compact) == 1 else 'use'} the compact form",
        )


def _corrections(
    given: Any,
    name: str,
    rules: Mapping[str, Rule],
    numbers: Mapping[str, Number],
    known: Iterable[str] | None,
) -> dict[str, Correction]:
    if not isinstance(given, list):
        raise DefinitionError(f"{name}, corrections", "must be a list of [[corrections]]")
    known_ids = None if known is None else set(known)
    out: dict[str, Correction] = {}
    for index, entry in enumerate(given):
        where = f"{name}, correction {entry.get('id', f'#{index + 1}')}"
        correction_id = entry.get("id")
        if not isinstance(correction_id, str) or not RULE_ID.fullmatch(correction_id):
            raise DefinitionError(
                where, f"id must be an ID such as EP-FINAL, not {correction_id!r}"
            )
        if correction_id in out:
            raise DefinitionError(where, "the correction is listed twice")
        if known_ids is not None and correction_id not in known_ids:
            raise DefinitionError(where, "the engine has no code for this correction")
        touched = entry.get("rules")
        if not isinstance(touched, list) or not touched:
            raise DefinitionError(f"{where}, rules", "must name the rules it touches")
        missing = [r for r in touched if r not in rules]
        if missing:
            raise DefinitionError(
                f"{where}, rules", f"not rules of this version: {', '.join(missing)}"
            )
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DefinitionError(where, "text is missing")
        _check_text(text, f"{where}, text", numbers)
        out[correction_id] = Correction(correction_id, tuple(touched), text)
    return out


def _rule(
    entry: Mapping[str, Any], where: str, sources: Sources, numbers: Mapping[str, Number]
) -> Rule:
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
        raise DefinitionError(where, f"id must be a rule ID such as IMG-6W, not {rule_id!r}")
    try:
        strength = Strength(str(entry.get("strength")))
    except ValueError:
        known = ", ".join(s.value for s in Strength)
        raise DefinitionError(
            where, f"strength must be one of {known}, not {entry.get('strength')!r}"
        ) from None
    for key in ("title", "text"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise DefinitionError(where, f"{key} is missing")
    given = entry.get("citations")
    citations = (
        _rich_citations(given, where, sources)
        if isinstance(given, list)
        else _citations(given, where, sources.documents, sources.references)
    )
    care = entry.get("care", [])
    if not isinstance(care, list) or not all(isinstance(c, str) and c for c in care):
        raise DefinitionError(f"{where}, care", "must be a list of texts")
    for key in _TEXT_FIELDS:
        if entry.get(key) is not None:
            _check_text(str(entry[key]), f"{where}, {key}", numbers)
    for i, activity in enumerate(care):
        _check_text(activity, f"{where}, care {i + 1}", numbers)
    return Rule(
        id=rule_id,
        title=entry["title"],
        text=entry["text"],
        strength=strength,
        citations=citations,
        conflict=entry.get("conflict"),
        default=entry.get("default"),
        care=tuple(care),
    )


def _citations(
    given: Any,
    where: str,
    documents: Mapping[str, str],
    references: Mapping[str, Mapping[int, str]],
) -> tuple[Citation, ...]:
    """``{S0 = [1, 2], S4 = [1]}``: each document and the reference numbers it gives."""
    if not isinstance(given, dict) or not given:
        raise DefinitionError(f"{where}, citations", "every rule needs at least one citation")
    out: list[Citation] = []
    for source, numbers in given.items():
        if source not in documents:
            raise DefinitionError(
                f"{where}, citations", f"{source} is not a document of this definition"
            )
        if not isinstance(numbers, list) or not numbers:
            raise DefinitionError(
                f"{where}, citations, {source}", "needs the reference numbers the document gives"
            )
        listed = references.get(source, {})
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise DefinitionError(
                    f"{where}, citations, {source}", f"{number!r} is not a reference number"
                )
            title = listed.get(number)
            reference = (
                f"{source} reference {number} (not listed in the document)"
                if title is None
                else f"{title} [ref {number}]"
            )
            out.append(Citation(source, documents[source], reference))
    return tuple(out)


_CITATION_KEYS = ("source", "refs", "supports")


def _rich_citations(given: list[Any], where: str, sources: Sources) -> tuple[Citation, ...]:
    """``[[rules.citations]]``: each a document's statement the rule rests on, with the
    reference numbers the document gives for it."""
    if not given:
        raise DefinitionError(f"{where}, citations", "every rule needs at least one citation")
    out: list[Citation] = []
    for index, entry in enumerate(given):
        here = f"{where}, citation {index + 1}"
        if not isinstance(entry, dict):
            raise DefinitionError(here, "must be a table with source, refs and supports")
        unknown = sorted(set(entry) - set(_CITATION_KEYS))
        if unknown:
            raise DefinitionError(
                here, f"unknown key {unknown[0]!r}: a citation has source, refs and supports"
            )
        source = entry.get("source")
        if not isinstance(source, str) or source not in sources.documents:
            raise DefinitionError(here, f"{source} is not a document of this definition")
        title = sources.titles.get(source)
        if title is None:
            raise DefinitionError(
                here,
                f"{source} is cited with the statement it supports, so [documents.{source}] "
                "needs the document's title",
            )
        refs = entry.get("refs")
        if not isinstance(refs, list):
            raise DefinitionError(
                f"{here}, refs",
                "needs the reference numbers the document gives for the statement ([] for none)",
            )
        for number in refs:
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise DefinitionError(f"{here}, refs", f"{number!r} is not a reference number")
        if len(set(refs)) < len(refs):
            raise DefinitionError(f"{here}, refs", "a reference number is given twice")
        supports = entry.get("supports")
        if not isinstance(supports, str) or not supports.strip():
            raise DefinitionError(
                f"{here}, supports", "needs the statement of the document the rule rests on"
            )
        _check_supports(supports, f"{here}, supports", sources)
        listed = sources.references.get(source, {})
        out.append(
            Citation(
                source,
                sources.documents[source],
                _references(refs, listed),
                title=title,
                supports=supports,
                refs=tuple(refs),
            )
        )
    return tuple(out)


def _references(refs: Iterable[int], listed: Mapping[int, str]) -> str:
    """``ref 1: <its entry>; ref 8: not listed in the document``: the references a document
    gives for a statement, those it lists by their entry, the others together at the end."""
    refs = list(refs)
    shown = [f"ref {n}: {listed[n]}" for n in refs if n in listed]
    unlisted = [str(n) for n in refs if n not in listed]
    if unlisted:
        label = "ref" if len(unlisted) == 1 else "refs"
        shown.append(f"{label} {', '.join(unlisted)}: not listed in the document")
    return "; ".join(shown)


def _check_supports(text: str, where: str, sources: Sources) -> None:
    """A statement says what its document says: it may name the sources' numbers (timings,
    figures), never one of our defaults, which a clinic may change."""
    for number in named(text):
        if number not in sources.timings and number not in sources.figures:
            raise DefinitionError(
                where,
                f"{{{number}}} is not one of the sources' timings or figures: a citation "
                "says what its document says, not one of our defaults",
            )
    _check_text(text, where, {**sources.timings, **sources.figures})


def _check_text(text: str, where: str, numbers: Mapping[str, Number]) -> None:
    try:
        check_text(text, where, numbers)
    except TextError as exc:
        raise DefinitionError(exc.where, exc.problem) from None


def _filled(rule: Rule, numbers: Mapping[str, Number], sources: Mapping[str, Number]) -> Rule:
    return Rule(
        id=rule.id,
        title=fill(rule.title, numbers),
        text=fill(rule.text, numbers),
        strength=rule.strength,
        citations=tuple(_cited(c, sources) for c in rule.citations),
        conflict=None if rule.conflict is None else fill(rule.conflict, numbers),
        default=None if rule.default is None else fill(rule.default, numbers),
        care=tuple(fill(c, numbers) for c in rule.care),
    )


def _cited(citation: Citation, sources: Mapping[str, Number]) -> Citation:
    """A citation's statement with the sources' numbers filled in."""
    if citation.supports is None:
        return citation
    return replace(citation, supports=fill(citation.supports, sources))
