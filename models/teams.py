"""Care teams and cover: which coordinators are in which team, who covers whose list until
when, and so what each coordinator sees (:class:`Scope`).

A coordinator sees the episodes in their charge, those of the colleagues they cover while the
cover lasts, those among their teams', and the clinic-wide unassigned queue (episodes of no
team and nobody's charge): an episode is never on nobody's list. An episode opened with a
coordinator but no team joins the coordinator's team when they are in exactly one (our
default: :func:`with_care_team`), so that their teammates see it when they are away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Table, delete, insert, or_, select, update

from engine.errors import InvalidEvent
from engine.events import NAME_LENGTH, Opening
from models.db import read_only
from models.tables import ApiToken, Cover, TeamMember

MEMBER = cast(Table, TeamMember.__table__)
COVER = cast(Table, Cover.__table__)
TOKEN = cast(Table, ApiToken.__table__)
EMAIL_LENGTH = 254
# An address a mail server accepts: something@domain.tld, no spaces (not full RFC 5322).
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Scope:
    """What a coordinator sees: the lists of ``names`` (their own, and those they cover),
    the episodes among ``teams``, and the clinic-wide unassigned queue."""

    coordinator: str
    covering: frozenset[str]
    teams: frozenset[str]

    @property
    def names(self) -> frozenset[str]:
        return self.covering | {self.coordinator}

    def sees(self, coordinator: str | None, team: str | None) -> bool:
        """Whether an episode in ``coordinator``'s charge, among ``team``'s, is visible."""
        if coordinator is None and team is None:
            return True  # the clinic-wide unassigned queue: open to every coordinator
        return coordinator in self.names or team in self.teams


def _name(value: str, field: str) -> str:
    name = value.strip()
    if not name or len(name) > NAME_LENGTH:
        raise InvalidEvent(field, f"must be 1 to {NAME_LENGTH} characters, not {value!r}")
    return name


def add_member(
    engine: Engine, team: str, coordinator: str, email: str | None, now: datetime
) -> bool:
    """Put ``coordinator`` in ``team`` (their mail to ``email``); an existing member's
    address is replaced when one is given. True when they were not in the team before.

    Raises:
        InvalidEvent: on ``team``, ``member`` or ``email``.
    """
    team, coordinator = _name(team, "team"), _name(coordinator, "member")
    # ASCII only: a mail server without SMTPUTF8 refuses anything else.
    if email is not None and (len(email) > EMAIL_LENGTH or not email.isascii()
                              or not EMAIL.fullmatch(email)):  # fmt: skip
        raise InvalidEvent("email", f"must be an address like alex@clinic.example, not {email!r}")
    key = (MEMBER.c.team == team) & (MEMBER.c.coordinator == coordinator)
    with engine.begin() as connection:
        known = connection.execute(select(MEMBER.c.email).where(key)).first()
        if known is None:
            connection.execute(insert(MEMBER).values(team=team, coordinator=coordinator,
                                                     email=email, added_at=now))  # fmt: skip
        elif email is not None:
            connection.execute(update(MEMBER).where(key).values(email=email))
    return known is None


def remove_member(engine: Engine, team: str, coordinator: str) -> bool:
    """Take ``coordinator`` out of ``team``; False when they were not in it. Their episodes
    stay theirs: handing them over is a handover, on record."""
    with engine.begin() as connection:
        gone = connection.execute(
            delete(MEMBER).where(MEMBER.c.team == team, MEMBER.c.coordinator == coordinator)
        )
    return bool(gone.rowcount)


def members(engine: Engine, team: str | None = None) -> list[dict[str, Any]]:
    """Every team's members (or ``team``'s), by team then name."""
    query = select(MEMBER.c.team, MEMBER.c.coordinator, MEMBER.c.email, MEMBER.c.added_at)
    if team is not None:
        query = query.where(MEMBER.c.team == team)
    with read_only(engine) as connection:
        rows = connection.execute(query.order_by(MEMBER.c.team, MEMBER.c.coordinator))
        return [dict(row) for row in rows.mappings()]


def teams_of(engine: Engine, coordinator: str) -> list[str]:
    """The teams ``coordinator`` is in, by name."""
    query = select(MEMBER.c.team).where(MEMBER.c.coordinator == coordinator)
    with read_only(engine) as connection:
        return sorted(connection.execute(query).scalars())


def known_coordinator(engine: Engine, name: str, team: str | None) -> str | None:
    """Why ``name`` cannot be handed an episode of ``team`` (None: they can). In a team's
    episode: a member of that team; otherwise a member of any team, or the subject of a
    live coordinator token."""
    teams = teams_of(engine, name)
    if team is not None:
        return None if team in teams else f"{name} is not in team {team}, the episode's team"
    if teams:
        return None
    query = select(TOKEN.c.id).where(
        TOKEN.c.subject == name, TOKEN.c.role == "coordinator", TOKEN.c.revoked_at.is_(None)
    )
    with read_only(engine) as connection:
        live = connection.execute(query.limit(1)).first()
    return None if live else f"{name} is no coordinator: in no team and holding no live token"


# --------------------------------------------------------------------------------------------
# Cover


def cover_ends(until: date, zone: str) -> datetime:
    """The instant a cover "until ``until``" ends: the end of that day in the clinic's
    time zone ``zone``."""
    return datetime.combine(until + timedelta(days=1), time(), ZoneInfo(zone))


def set_cover(
    engine: Engine, coordinator: str, by: str, ends_at: datetime, set_by: str, now: datetime
) -> int:
    """``by`` covers ``coordinator``'s list until ``ends_at``; the cover's id.

    Raises:
        InvalidEvent: on ``coordinator``, ``by`` (the same person) or ``until`` (past).
    """
    coordinator, by = _name(coordinator, "coordinator"), _name(by, "by")
    if coordinator == by:
        raise InvalidEvent("by", f"{by} cannot cover their own list: name a colleague")
    if ends_at <= now:
        raise InvalidEvent("until", f"the cover would end at {ends_at.isoformat()}, already past")
    values = {"coordinator": coordinator, "by": by, "ends_at": ends_at, "set_by": set_by,
              "set_at": now}  # fmt: skip
    with engine.begin() as connection:
        inserted = connection.execute(insert(COVER).values(values)).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def end_cover(engine: Engine, coordinator: str, by: str | None, now: datetime) -> int:
    """End the live covers of ``coordinator``'s list (by ``by`` only, when named) now; how
    many ended."""
    query = update(COVER).where(*_live(now), COVER.c.coordinator == coordinator)
    if by is not None:
        query = query.where(COVER.c.by == by)
    with engine.begin() as connection:
        return int(connection.execute(query.values(ended_at=now)).rowcount)


def covers(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    """The covers that hold now, the soonest to end first."""
    query = select(COVER).where(*_live(now)).order_by(COVER.c.ends_at, COVER.c.id)
    with read_only(engine) as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def _live(now: datetime) -> tuple[Any, ...]:
    return COVER.c.ended_at.is_(None), COVER.c.ends_at > now


def mail_addresses(connection: Connection, coordinator: str, at: datetime) -> tuple[str, ...]:
    """Where ``coordinator``'s mail at ``at`` goes: their address, and those of the
    colleagues covering them then (none known: the clinic's mailbox takes it)."""
    covering = select(COVER.c.by).where(
        *_live(at), COVER.c.coordinator == coordinator, COVER.c.set_at <= at
    )
    query = (
        select(MEMBER.c.email)
        .where(or_(MEMBER.c.coordinator == coordinator, MEMBER.c.coordinator.in_(covering)),
               MEMBER.c.email.is_not(None))  # fmt: skip
        .distinct()
    )
    return tuple(sorted(connection.execute(query).scalars()))


def scope_of(engine: Engine, coordinator: str, now: datetime) -> Scope:
    """What ``coordinator`` sees now: their teams, and the lists they cover."""
    with read_only(engine) as connection:
        teams = connection.execute(
            select(MEMBER.c.team).where(MEMBER.c.coordinator == coordinator)
        ).scalars()
        covering = connection.execute(
            select(COVER.c.coordinator).where(*_live(now), COVER.c.by == coordinator)
        ).scalars()
        return Scope(coordinator, frozenset(covering), frozenset(teams))


# --------------------------------------------------------------------------------------------
# Opening


def with_care_team(engine: Engine, opening: Opening) -> Opening:
    """The opening with its care team: as named, or (our default) its coordinator's when
    they are in exactly one team; none otherwise.

    Raises:
        InvalidEvent: on ``team``, a team nobody is in.
    """
    if opening.team is not None:
        if not members(engine, opening.team):
            raise InvalidEvent("team", f"no care team {opening.team!r}: add its members with "
                                       "carepath team add")  # fmt: skip
        return opening
    if opening.coordinator is None:
        return opening
    teams = teams_of(engine, opening.coordinator)
    return replace(opening, team=teams[0]) if len(teams) == 1 else opening


__all__ = [
    "Scope",
    "add_member",
    "cover_ends",
    "covers",
    "end_cover",
    "known_coordinator",
    "mail_addresses",
    "members",
    "remove_member",
    "scope_of",
    "set_cover",
    "teams_of",
    "with_care_team",
]
