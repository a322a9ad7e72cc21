"""A coordinator's reach: the episodes and items of their care team, and no others.

A coordinator's token or session reads and works the episodes in their charge, those of the
colleagues they cover, those among their teams' and the clinic-wide unassigned queue
(:class:`models.teams.Scope`); anything else is 403 (a refused read or task action is on
record in the access log). Services, clinicians, auditors and admins are not held to a
team: they act for the clinic as a whole.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import HTTPException
from sqlalchemy import Table, and_, or_, select
from sqlalchemy.sql import ColumnElement

from api.deps import ServicesDep
from api.tokens import Principal
from models.db import read_only
from models.tables import Episode
from models.teams import Scope, scope_of

EPISODE = cast(Table, Episode.__table__)
OUTSIDE = "the episode is not among your care team's: ask its coordinator or an admin"


def scope(parts: ServicesDep, who: Principal) -> Scope | None:
    """What ``who`` may reach (None: everything, not being a coordinator)."""
    if who.role != "coordinator":
        return None
    return scope_of(parts.engine, who.subject, parts.clock.now())


def check_episode(parts: ServicesDep, who: Principal, episode_id: str) -> None:
    """Refuse a coordinator an episode outside their reach (403). An episode that does not
    exist passes: the route answers 404 for it, as for anyone."""
    reach = scope(parts, who)
    if reach is None:
        return
    query = select(EPISODE.c.coordinator, EPISODE.c.team).where(EPISODE.c.id == episode_id)
    with read_only(parts.engine, single_statement=True) as connection:
        row = connection.execute(query).first()
    if row is not None and not reach.sees(row.coordinator, row.team):
        raise HTTPException(403, OUTSIDE)


def check_item(reach: Scope | None, task: dict[str, Any]) -> None:
    """Refuse a coordinator an item (``find_task``'s row) outside their reach (403)."""
    if reach is not None and not reach.sees(task["owner"], task["team"]):
        raise HTTPException(403, "the item is not on your care team's lists: ask its "
                                 "coordinator or an admin")  # fmt: skip


def episodes_within(reach: Scope | None) -> ColumnElement[bool] | None:
    """The condition an episode list is narrowed to for a coordinator (None: no limit)."""
    if reach is None:
        return None
    return or_(
        EPISODE.c.coordinator.in_(sorted(reach.names)),
        EPISODE.c.team.in_(sorted(reach.teams)),
        and_(EPISODE.c.coordinator.is_(None), EPISODE.c.team.is_(None)),
    )
