"""The pathway versions published to a database, checked against the definitions shipped.

``carepath db upgrade`` records each published version (:func:`record_published`): its
pathway, version, digest and publication day. From then on the database is a second
witness of what was published: a definition whose digest differs from the one recorded here
is refused, even if its package's own record was edited to match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import cast

from sqlalchemy import Connection, Engine, Table, insert, inspect, select

import pathways
from engine.definition import Definition, DefinitionError
from models.db import read_only
from models.tables import PathwayVersionRow

PATHWAY_VERSION = cast(Table, PathwayVersionRow.__table__)


@dataclass(frozen=True)
class Listed:
    """A version as ``carepath pathway list`` and ``GET /pathways`` show it."""

    pathway_id: str
    version: str
    status: str  # "published" or "draft"
    published_at: date | None
    digest: str
    recorded: bool  # whether this database has it on record

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.pathway_id,
            "version": self.version,
            "status": self.status,
            "published_at": None if self.published_at is None else self.published_at.isoformat(),
            "digest": self.digest,
            "recorded": self.recorded,
        }


def _recorded(connection: Connection) -> dict[tuple[str, str], str]:
    rows = connection.execute(
        select(PATHWAY_VERSION.c.pathway_id, PATHWAY_VERSION.c.version, PATHWAY_VERSION.c.digest)
    )
    return {(row.pathway_id, row.version): row.digest for row in rows}


def _mismatch(pathway_id: str, version: str, recorded: str, shipped: str) -> DefinitionError:
    return DefinitionError(
        f"{pathway_id} {version}",
        f"published to this database as {recorded}, but the definition shipped has {shipped}: "
        "a published version is never changed, a change is a new version",
    )


def record_published(connection: Connection, now: datetime | None = None) -> list[str]:
    """Record, in the caller's transaction, every published version shipped that this
    database does not have yet; returns them (``id version``).

    Raises:
        DefinitionError: a definition does not pass its checks, or a version on record has
            another digest than the one shipped.
    """
    if not inspect(connection).has_table(PATHWAY_VERSION.name):
        return []  # a schema older than the table: nothing to record yet
    recorded = _recorded(connection)
    added = []
    for pathway_id in pathways.PACKAGES:
        for shipped in pathways.versions(pathway_id):
            if shipped.status != "published":
                continue
            known = recorded.get((pathway_id, shipped.version))
            if known is not None:
                if known != shipped.digest:
                    raise _mismatch(pathway_id, shipped.version, known, shipped.digest)
                continue
            connection.execute(
                insert(PATHWAY_VERSION).values(
                    pathway_id=pathway_id, version=shipped.version, digest=shipped.digest,
                    published_at=shipped.published_at, recorded_at=now or datetime.now(UTC),
                )
            )  # fmt: skip
            added.append(f"{pathway_id} {shipped.version}")
    return added


def recorded_digests(engine: Engine) -> dict[tuple[str, str], str]:
    """The digest this database recorded for each published version, by (id, version)."""
    with read_only(engine) as connection:
        if not inspect(connection).has_table(PATHWAY_VERSION.name):
            return {}
        return _recorded(connection)


def check_recorded(loaded: Definition, recorded: Mapping[tuple[str, str], str]) -> None:
    """Refuse ``loaded`` when ``recorded`` (:func:`recorded_digests`) has its version with
    another digest.

    Raises:
        DefinitionError: naming the version and both digests.
    """
    known = recorded.get((loaded.id, loaded.version))
    if known is not None and known != loaded.digest:
        raise _mismatch(loaded.id, loaded.version, known, loaded.digest)


def listed(engine: Engine) -> list[Listed]:
    """Every version shipped, oldest first per pathway, with whether this database has it.

    Raises:
        DefinitionError: as :func:`record_published`.
    """
    with read_only(engine) as connection:
        recorded = _recorded(connection)
    out = []
    for pathway_id in pathways.PACKAGES:
        for shipped in pathways.versions(pathway_id):
            known = recorded.get((pathway_id, shipped.version))
            if known is not None and known != shipped.digest:
                raise _mismatch(pathway_id, shipped.version, known, shipped.digest)
            out.append(
                Listed(
                    pathway_id, shipped.version, shipped.status, shipped.published_at,
                    shipped.digest, known is not None,
                )
            )  # fmt: skip
    return out
