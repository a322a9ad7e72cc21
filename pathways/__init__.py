"""The pathways carepath runs: one package per pathway, one definition file per version.

A pathway's package (``pathways/lumbosacral_radiculopathy/``) holds a definition per version
(``1.0.0.toml``, read by :mod:`engine.definition`), ``published.toml``, the digest of every
published version and the day it was published, and the pathway's code: its handlers and
guards keyed by rule ID, bound for the engine in ``code.py`` (an
:class:`engine.pathway.PathwayCode`, handed out by :func:`code`).

:func:`definition` hands out a checked definition by (id, version), and refuses a published
one whose file no longer has its recorded digest: a published version is never edited, a
change is a new version. :func:`published_on` says whether a definition is the published
text, and :func:`previous` which version came before it (what the pathway book reads its
changes against).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from datetime import date
from functools import cache
from importlib import import_module, resources

from engine.definition import Definition, DefinitionError, parse_definition
from engine.episode import EpisodeState
from engine.errors import InvalidEvent
from engine.events import Opening
from engine.pathway import PathwayCode
from engine.settings import (
    OPENING_VERSION_ENV,
    PathwayDefaults,
    chosen_opening_version,
    drafts_allowed,
)

LUMBOSACRAL_RADICULOPATHY = "lumbosacral-radiculopathy"
OPENING_PATHWAY = LUMBOSACRAL_RADICULOPATHY
"""The pathway a new episode opens on: carepath runs one."""
# Pathway id -> the package that holds its definitions.
PACKAGES = {LUMBOSACRAL_RADICULOPATHY: "pathways.lumbosacral_radiculopathy"}


@dataclass(frozen=True)
class Version:
    """One version of a pathway, as ``carepath pathway list`` shows it."""

    pathway_id: str
    version: str
    status: str  # "published", or "draft" while it has no recorded digest
    published_at: date | None
    digest: str


class UnknownPathway(DefinitionError):
    """No such pathway, or no such version of it."""


def _package(pathway_id: str) -> str:
    try:
        return PACKAGES[pathway_id]
    except KeyError:
        known = ", ".join(sorted(PACKAGES))
        raise UnknownPathway(pathway_id, f"no such pathway (known: {known})") from None


@cache
def code(pathway_id: str) -> PathwayCode:
    """The code of the pathway ``pathway_id`` (imported when first asked for: it imports
    the engine's rules, which read this registry).

    Raises:
        UnknownPathway: no such pathway.
    """
    found: PathwayCode = import_module(_package(pathway_id) + ".code").CODE
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@cache
def _published(pathway_id: str) -> dict[str, tuple[str, date]]:
    """Version -> (digest, day published), from the package's ``published.toml``."""
    record = resources.files(_package(pathway_id)).joinpath("published.toml")
    raw = tomllib.loads(record.read_text("utf-8"))
    return {
        version: (str(entry["digest"]), entry["published_at"])
        for version, entry in raw.get("versions", {}).items()
    }


def version_numbers(pathway_id: str) -> list[str]:
    """Every version the package has a definition file for, oldest first."""
    files = resources.files(_package(pathway_id)).iterdir()
    names = [f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")]
    return sorted((n for n in names if n != "published"), key=_version_key)


@cache
def definition(pathway_id: str, version: str) -> Definition:
    """The checked definition of ``pathway_id`` at ``version``.

    Raises:
        UnknownPathway: no such pathway or version.
        DefinitionError: the file does not pass the checks of
            :func:`engine.definition.parse_definition`, or it is published and its digest is
            no longer the one recorded.
    """
    name = f"{version}.toml"
    if version not in version_numbers(pathway_id):
        known = ", ".join(version_numbers(pathway_id))
        raise UnknownPathway(f"{pathway_id} {version}", f"no such version (known: {known})")
    package = _package(pathway_id)
    content = resources.files(package).joinpath(name).read_bytes()
    # What the pathway's code knows and acts on: a definition must not ask for less.
    corrections = import_module(package + ".corrections").CORRECTIONS
    used_by = import_module(package + ".rules_used").used_by
    loaded = parse_definition(
        content, name, [f.name for f in fields(PathwayDefaults)],
        known_corrections=corrections, rules_used=used_by,
    )  # fmt: skip
    if (loaded.id, loaded.version) != (pathway_id, version):
        raise DefinitionError(name, f"says it is {loaded.id} {loaded.version}")
    published = _published(pathway_id).get(version)
    if published is not None and published[0] != loaded.digest:
        raise DefinitionError(
            name,
            f"edited after publication: its digest is {loaded.digest}, published as "
            f"{published[0]}; a published version is never changed, a change is a new version",
        )
    return loaded


def versions(pathway_id: str) -> list[Version]:
    """Every version of the pathway, oldest first, each checked as :func:`definition` does."""
    out = []
    for number in version_numbers(pathway_id):
        loaded = definition(pathway_id, number)
        published = _published(pathway_id).get(number)
        status, day = ("published", published[1]) if published else ("draft", None)
        out.append(Version(pathway_id, number, status, day, loaded.digest))
    return out


def published_on(loaded: Definition) -> date | None:
    """The day ``loaded`` was published, or None while it is a draft: a definition this
    install does not ship, or whose text is not the one published, is not published."""
    if loaded.id not in PACKAGES:
        return None
    record = _published(loaded.id).get(loaded.version)
    return record[1] if record is not None and record[0] == loaded.digest else None


def previous(loaded: Definition) -> Definition | None:
    """The version shipped just before ``loaded``'s, or None for the first: what its
    changes are read against."""
    if loaded.id not in PACKAGES:
        return None
    earlier = [
        n for n in version_numbers(loaded.id) if _version_key(n) < _version_key(loaded.version)
    ]
    return definition(loaded.id, earlier[-1]) if earlier else None


def newest(pathway_id: str = LUMBOSACRAL_RADICULOPATHY) -> Definition:
    """The newest published version: the one new episodes open on."""
    published = [v for v in versions(pathway_id) if v.status == "published"]
    if not published:
        raise UnknownPathway(pathway_id, "no published version")
    return definition(pathway_id, published[-1].version)


def of_episode(state: EpisodeState) -> Definition:
    """The definition of the version ``state`` is pinned to."""
    return definition(state.pathway_id, state.pathway_version)


def opening_version(requested: str | None, pathway_id: str = OPENING_PATHWAY) -> str:
    """The version a new episode opens on: ``requested``, which must be published (or a
    draft, where :func:`engine.settings.drafts_allowed`); else the clinic's choice
    (``CAREPATH_PATHWAY_VERSION``), else the newest published one.

    Raises:
        ValueError: ``requested`` (or the clinic's choice, named) is not a version it may
            open on (the message lists the published ones).
    """
    published = [v.version for v in versions(pathway_id) if v.status == "published"]
    if requested is None:
        chosen = chosen_opening_version()
        if chosen is None:
            return newest(pathway_id).version
        try:
            return opening_version(chosen, pathway_id)
        except ValueError as exc:
            raise ValueError(f"{OPENING_VERSION_ENV}: {exc}") from None
    if requested not in published:
        draft = requested in version_numbers(pathway_id)
        if draft and drafts_allowed():
            return requested
        raise ValueError(
            f"{requested!r} is {'a draft, not yet published' if draft else 'not a version'} "
            f"of {pathway_id} (published: {', '.join(published)})"
        )
    return requested


def opening_for(opening: Opening) -> Opening:
    """``opening`` naming the version it opens on (:func:`opening_version`).

    Raises:
        InvalidEvent: on ``pathway_version``, a version it may not open on.
    """
    try:
        version = opening_version(opening.pathway_version)
    except ValueError as exc:
        raise InvalidEvent("pathway_version", str(exc)) from None
    return replace(opening, pathway_version=version)
