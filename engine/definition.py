"""A pathway definition: the clinical content of one pathway version, read from its file.

A definition (``pathways/<pathway>/<version>.toml``) holds what a clinical governance group
reviews and signs off, and nothing of the engine's mechanics:

* ``documents``: the source documents, by S-number, with the references each one lists;
* ``timings``: the numbers the sources give (the subacute phase from day 42);
* ``defaults``: the numbers that are ours, not the sources' (PATHWAY.md marks them
  **default**), which a clinic may change (:class:`engine.settings.PathwayDefaults`);
* ``figures``: evidence figures and scales the texts quote (an odds ratio, ``0-10``);
* ``rules``: each with its ID, title, strength, text, citations, and, where they apply, the
  sources' conflict, our default and the recommended care;
* ``corrections``: the behaviours this version corrects since the first (each by an ID the
  engine knows, :mod:`engine.corrections`, with the rules it touches): where behaviour
  changed, the engine asks the episode's definition, ``pathway.corrects("EP-FINAL")``, so
  episodes on an earlier version keep the behaviour they started with.

Texts never write a number: they name it, ``{subacute_from_days}``, or with a unit,
``{conservative_window_days:weeks}`` (days shown as weeks) or ``{improve_vas_fraction:percent}``,
so a rule's text always says what the engine does, with the clinic's own defaults.
:func:`parse_definition` refuses a definition with a number written in a text, a placeholder
that names nothing, a rule without a citation or citing a document it does not list, an
unknown strength, a repeated rule ID, or a default the engine does not configure.

A definition's digest is the SHA-256 of its file. A published definition is never edited (a
change is a new version): the registry (:mod:`pathways`) compares the digest with the one
recorded at publication before it hands the definition out.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from engine.errors import CarepathError
from engine.placeholders import Number, TextError, check_text, fill

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

    Attributes:
        source: the source document's S-number, ``"S0"`` to ``"S4"``.
        document: the seed file name of that document.
        reference: the reference the document gives for the statement, in short form, e.g.
            ``"Medical Necessity of Lumbar Fusion, Praxis Medical Insights, 2025 [ref 2]"``, or
            ``"S0 reference 1 (not listed in the document)"`` when the document cites a number
            it does not list.
    """

    source: str
    document: str
    reference: str

    def __str__(self) -> str:
        """Render the citation for people, e.g. ``S2 (002_….txt): <reference>``."""
        return f"{self.source} ({self.document}): {self.reference}"


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
    keyed by it (a clinic's texts, :func:`engine.rules.rules_for`) stay cheap.

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

    def corrects(self, correction_id: str) -> bool:
        """Whether this version includes the correction ``correction_id``.

        Raises:
            KeyError: the engine knows no such correction (a misspelt ID in the code would
                otherwise select the old behaviour for ever).
        """
        from engine.corrections import CORRECTIONS

        if correction_id not in CORRECTIONS:
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
        return MappingProxyType(
            {rule_id: _filled(rule, numbers) for rule_id, rule in self.templates.items()}
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


def parse_definition(
    content: bytes,
    name: str,
    default_names: Iterable[str] | None = None,
    known_corrections: Iterable[str] | None = None,
) -> Definition:
    """Read and check a definition file's ``content`` (``name``, for messages).

    Args:
        content: the file's bytes (the digest is theirs).
        name: the file's name, for messages.
        default_names: the numbers the engine lets a clinic configure; the definition's
            ``defaults`` may name only these.
        known_corrections: the corrections the engine has code for; a definition may list
            only these.

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
    templates: dict[str, Rule] = {}
    for index, entry in enumerate(raw.get("rules", [])):
        rule = _rule(entry, f"{name}, rule {entry.get('id', f'#{index + 1}')}", documents,
                     references, numbers)  # fmt: skip
        if rule.id in templates:
            raise DefinitionError(f"{name}, rule {rule.id}", "the rule ID is used twice")
        templates[rule.id] = rule
    if not templates:
        raise DefinitionError(name, "no rules")
    corrections = _corrections(raw.get("corrections", []), name, templates, numbers,
                               known_corrections)  # fmt: skip
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
    entry: Mapping[str, Any],
    where: str,
    documents: Mapping[str, str],
    references: Mapping[str, Mapping[int, str]],
    numbers: Mapping[str, Number],
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
    citations = _citations(entry.get("citations"), where, documents, references)
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


def _check_text(text: str, where: str, numbers: Mapping[str, Number]) -> None:
    try:
        check_text(text, where, numbers)
    except TextError as exc:
        raise DefinitionError(exc.where, exc.problem) from None


def _filled(rule: Rule, numbers: Mapping[str, Number]) -> Rule:
    return Rule(
        id=rule.id,
        title=fill(rule.title, numbers),
        text=fill(rule.text, numbers),
        strength=rule.strength,
        citations=rule.citations,
        conflict=None if rule.conflict is None else fill(rule.conflict, numbers),
        default=None if rule.default is None else fill(rule.default, numbers),
        care=tuple(fill(c, numbers) for c in rule.care),
    )
