"""Incidents: a step that could not be done for one episode, kept instead of halting.

Three kinds: ``episode`` (its stored record cannot be read), ``timer`` (a timer's step
raised, or its writes were refused) and ``delivery`` (a reminder that failed
:data:`DELIVERY_INCIDENT_AFTER` times in a row). An open episode or timer incident holds back
that episode's timers, and only those, until its ``next_retry_at``: the timers are then
claimed again, in due order, and a step that succeeds resolves the incident. A retry that
fails again counts an attempt and waits longer (:class:`RetryBackoff`). Repair the row and
run ``carepath incidents --retry ID`` to retry at the next sweep, or ``--resolve ID`` to
close it by hand (its timers are then claimed at the next sweep, and a still-damaged
episode opens a new incident).

Each change (opened, retried, resolved) is logged once, after its transaction committed,
as one JSON line naming the episode.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Engine, Table, bindparam, func, insert, select, update

from engine.clinic_time import to_utc
from engine.errors import CarepathError, UnreadableEpisode
from models.db import read_only
from models.statements import Cursor, Prepared
from models.tables import DueTimer, Incident

INCIDENT = cast(Table, Incident.__table__)
TIMER = cast(Table, DueTimer.__table__)
log = logging.getLogger("carepath.incidents")

# A delivery opens an incident once it has failed this many times in a row (our default;
# it keeps being retried by its own backoff all the same).
DELIVERY_INCIDENT_AFTER = 5
ERROR_LENGTH = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


@dataclass(frozen=True)
class RetryBackoff:
    """When to retry an episode's timers after a failure (our defaults): 1 minute after
    the first, doubling with each attempt, at most an hour apart."""

    base: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def after(self, attempts: int) -> timedelta:
        return min(self.cap, self.base * self.factor ** max(0, attempts - 1))


def describe(exc: BaseException) -> str:
    """An error as an incident keeps it: its first line, without control characters or a
    URL's credentials, at most :data:`ERROR_LENGTH` characters. Errors carepath raises on
    purpose are their own message; others are prefixed with their type."""
    if isinstance(exc, UnreadableEpisode):
        text = exc.reason
    else:
        orig = getattr(exc, "orig", None)  # a driver error wrapped by SQLAlchemy
        text = str(orig if orig is not None else exc)
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if not isinstance(exc, CarepathError):
        first = f"{type(orig if orig is not None else exc).__name__}: {first}".rstrip(": ")
    first = _CREDENTIALS.sub(r"\1***@", _CONTROL.sub("?", first))
    return first[:ERROR_LENGTH]


@dataclass
class Change:
    """One change to an incident, logged once its transaction committed."""

    action: str  # opened, retried, resolved
    incident_id: int | None
    kind: str
    episode_id: str
    timer_id: int | None = None
    delivery_id: int | None = None
    error: str | None = None
    attempts: int = 0
    next_retry_at: datetime | None = None
    resolution: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "incident": self.incident_id,
            "kind": self.kind,
            "episode_id": self.episode_id,
            "timer_id": self.timer_id,
            "delivery_id": self.delivery_id,
            "error": self.error,
            "attempts": self.attempts,
            "next_retry_at": self.next_retry_at.isoformat() if self.next_retry_at else None,
            "resolution": self.resolution,
        }


def log_changes(changes: Iterable[Change]) -> None:
    for change in changes:
        level = logging.INFO if change.action == "resolved" else logging.WARNING
        log.log(level, f"incident {change.action}", extra=change.as_json())


# ------------------------------------------------------------------------------------------
# Inside a batch of timers (the step's own cursor and transaction)


class BatchIncidents:
    """The incidents a batch of timers opens, bumps and resolves, written in its
    transaction (so they commit, or not, with the timers that did fire)."""

    def __init__(self, cursor: Cursor, dialect: Dialect, backoff: RetryBackoff) -> None:
        self.cursor = cursor
        self.sql = _statements(dialect)
        self.backoff = backoff
        self.changes: list[Change] = []

    def open_on(self, episode_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The open incidents holding back these episodes' timers."""
        found: dict[str, list[dict[str, Any]]] = {}
        if not episode_ids:
            return found
        for episode_id in sorted(set(episode_ids)):
            for row in self.cursor.query(self.sql.open_on, {"b_episode_id": episode_id}).all():
                found.setdefault(episode_id, []).append(row)
        return found

    def failed(
        self,
        kind: str,
        episode_id: str,
        timer_id: int | None,
        exc: BaseException,
        now: datetime,
        open_ones: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Open an incident for the episode, or count another attempt on its open one."""
        error = describe(exc)
        if open_ones:
            current = open_ones[0]
            attempts = current["attempts"] + 1
            retry_at = now + self.backoff.after(attempts)
            self.cursor.run(
                self.sql.bump,
                {
                    "b_id": current["id"], "kind": kind, "timer_id": timer_id, "error": error,
                    "attempts": attempts, "last_seen_at": now, "next_retry_at": retry_at,
                },
            )  # fmt: skip
            action, incident_id = "retried", current["id"]
        else:
            attempts, retry_at = 1, now + self.backoff.after(1)
            inserted = self.cursor.query(
                self.sql.insert,
                {
                    "kind": kind, "episode_id": episode_id, "timer_id": timer_id,
                    "delivery_id": None, "error": error, "attempts": 1,
                    "first_seen_at": now, "last_seen_at": now, "next_retry_at": retry_at,
                },
            ).first()  # fmt: skip
            action, incident_id = "opened", inserted["id"] if inserted else None
        self.changes.append(
            Change(action, incident_id, kind, episode_id, timer_id, None, error, attempts,
                   retry_at)
        )  # fmt: skip

    def resolved(self, open_ones: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """The episode's timers fired after all: its open incidents are resolved."""
        for row in open_ones:
            self.cursor.run(
                self.sql.resolve, {"b_id": row["id"], "now": now, "resolution": "retried"}
            )
            self.changes.append(
                Change("resolved", row["id"], row["kind"], row["episode_id"], row["timer_id"],
                       attempts=row["attempts"], resolution="retried")
            )  # fmt: skip


class _Statements:
    def __init__(self, dialect: Dialect) -> None:
        columns = ("kind", "episode_id", "timer_id", "delivery_id", "error", "attempts",
                   "first_seen_at", "last_seen_at", "next_retry_at")  # fmt: skip
        self.open_on = Prepared(
            select(INCIDENT.c.id, INCIDENT.c.kind, INCIDENT.c.episode_id, INCIDENT.c.timer_id,
                   INCIDENT.c.attempts)
            .where(
                INCIDENT.c.episode_id == bindparam("b_episode_id"),
                INCIDENT.c.resolved_at.is_(None),
                INCIDENT.c.kind != "delivery",
            )
            .order_by(INCIDENT.c.id),
            dialect,
        )  # fmt: skip
        self.insert = Prepared(
            insert(INCIDENT)
            .values({name: bindparam(name) for name in columns})
            .returning(INCIDENT.c.id),
            dialect,
        )
        bumped = ("kind", "timer_id", "error", "attempts", "last_seen_at", "next_retry_at")
        self.bump = Prepared(
            update(INCIDENT)
            .where(INCIDENT.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in bumped}),
            dialect,
        )
        self.resolve = Prepared(
            update(INCIDENT)
            .where(INCIDENT.c.id == bindparam("b_id"), INCIDENT.c.resolved_at.is_(None))
            .values(resolved_at=bindparam("now"), resolution=bindparam("resolution")),
            dialect,
        )


@cache
def _statements(dialect: Dialect) -> _Statements:
    return _Statements(dialect)


# ------------------------------------------------------------------------------------------
# Deliveries (the deliverer's connection)


def delivery_failed(
    connection: Connection,
    delivery_id: int,
    episode_id: str,
    error: str,
    attempts: int,
    next_attempt_at: datetime,
    now: datetime,
) -> Change | None:
    """A delivery failed for the ``attempts``-th time: from :data:`DELIVERY_INCIDENT_AFTER`
    on it is an incident (opened, or its attempts counted)."""
    if attempts < DELIVERY_INCIDENT_AFTER:
        return None
    current = connection.execute(
        select(INCIDENT.c.id).where(
            INCIDENT.c.delivery_id == delivery_id, INCIDENT.c.resolved_at.is_(None)
        )
    ).scalar()
    values = {"error": error, "attempts": attempts, "last_seen_at": now,
              "next_retry_at": next_attempt_at}  # fmt: skip
    if current is None:
        current = connection.execute(
            insert(INCIDENT)
            .values(kind="delivery", episode_id=episode_id, delivery_id=delivery_id,
                    first_seen_at=now, **values)
            .returning(INCIDENT.c.id)
        ).scalar()  # fmt: skip
        action = "opened"
    else:
        connection.execute(update(INCIDENT).where(INCIDENT.c.id == current).values(**values))
        action = "retried"
    return Change(action, current, "delivery", episode_id, None, delivery_id, error, attempts,
                  next_attempt_at)  # fmt: skip


def delivery_sent(connection: Connection, delivery_id: int, now: datetime) -> list[Change]:
    """A delivery that had failed went out: its incident, if any, is resolved."""
    rows = connection.execute(
        update(INCIDENT)
        .where(INCIDENT.c.delivery_id == delivery_id, INCIDENT.c.resolved_at.is_(None))
        .values(resolved_at=now, resolution="retried")
        .returning(INCIDENT.c.id, INCIDENT.c.episode_id, INCIDENT.c.attempts)
    ).all()
    return [
        Change("resolved", r.id, "delivery", r.episode_id, None, delivery_id,
               attempts=r.attempts, resolution="retried")
        for r in rows
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------
# For operators: list, count, retry, resolve


def list_incidents(
    engine: Engine, include_resolved: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Incidents, newest first: open ones only unless ``include_resolved``."""
    query = select(INCIDENT).order_by(INCIDENT.c.id.desc()).limit(limit)
    if not include_resolved:
        query = query.where(INCIDENT.c.resolved_at.is_(None))
    with read_only(engine) as connection:
        return [as_json(row) for row in connection.execute(query).mappings()]


def as_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    def instant(value: datetime | None) -> str | None:
        return to_utc(value).isoformat() if value is not None else None

    return {
        "id": row["id"],
        "kind": row["kind"],
        "episode_id": row["episode_id"],
        "timer_id": row["timer_id"],
        "delivery_id": row["delivery_id"],
        "error": row["error"],
        "attempts": row["attempts"],
        "first_seen_at": instant(row["first_seen_at"]),
        "last_seen_at": instant(row["last_seen_at"]),
        "next_retry_at": None if row["resolved_at"] else instant(row["next_retry_at"]),
        "resolved": row["resolved_at"] is not None,
        "resolved_at": instant(row["resolved_at"]),
        "resolution": row["resolution"],
    }


def open_counts(engine: Engine) -> dict[str, int]:
    """Open incidents by kind (every kind present, 0 when none)."""
    query = (
        select(INCIDENT.c.kind, func.count())
        .where(INCIDENT.c.resolved_at.is_(None))
        .group_by(INCIDENT.c.kind)
    )
    with read_only(engine) as connection:
        counts = dict.fromkeys(("timer", "episode", "delivery"), 0)
        counts.update({str(kind): int(n) for kind, n in connection.execute(query)})
        return counts


class NoSuchIncident(CarepathError):
    """No open incident has this id."""

    def __init__(self, incident_id: int) -> None:
        self.incident_id = incident_id
        super().__init__(f"no open incident with id {incident_id}")


def retry_now(engine: Engine, incident_id: int) -> dict[str, Any]:
    """Retry an open incident at the next sweep (after the row was repaired): its retry is
    moved back to its last attempt, which any worker's next sweep has passed, whatever
    this process's clock says.

    Raises:
        NoSuchIncident: no open incident has this id.
    """
    values = {"next_retry_at": INCIDENT.c.last_seen_at}
    return _change(engine, incident_id, values, "retry requested")


def resolve(engine: Engine, incident_id: int, now: datetime) -> dict[str, Any]:
    """Close an open incident by hand: its episode's timers are claimed at the next sweep.

    Raises:
        NoSuchIncident: no open incident has this id.
    """
    return _change(
        engine, incident_id, {"resolved_at": now, "resolution": "by hand"}, "resolved"
    )


def _change(
    engine: Engine, incident_id: int, values: dict[str, Any], action: str
) -> dict[str, Any]:
    with engine.begin() as connection:
        row = connection.execute(
            update(INCIDENT)
            .where(INCIDENT.c.id == incident_id, INCIDENT.c.resolved_at.is_(None))
            .values(**values)
            .returning(*INCIDENT.c)
        ).mappings().first()
    if row is None:
        raise NoSuchIncident(incident_id)
    shown = as_json(row)
    log_changes([Change(action, row["id"], row["kind"], row["episode_id"], row["timer_id"],
                        row["delivery_id"], row["error"], row["attempts"],
                        row["next_retry_at"], row["resolution"])])  # fmt: skip
    return shown


def lapse(engine: Engine, now: datetime) -> list[Change]:
    """Resolve the timer and episode incidents of episodes that have no pending timer left
    (cancelled, or fired by another way): nothing is held back by them any more."""
    no_pending = ~(
        select(TIMER.c.id)
        .where(TIMER.c.episode_id == INCIDENT.c.episode_id, TIMER.c.status == "pending")
        .exists()
    )
    with engine.begin() as connection:
        rows = connection.execute(
            update(INCIDENT)
            .where(INCIDENT.c.resolved_at.is_(None), INCIDENT.c.kind != "delivery", no_pending)
            .values(resolved_at=now, resolution="no pending timer left")
            .returning(INCIDENT.c.id, INCIDENT.c.kind, INCIDENT.c.episode_id,
                       INCIDENT.c.timer_id, INCIDENT.c.attempts)
        ).all()  # fmt: skip
    changes = [
        Change("resolved", r.id, r.kind, r.episode_id, r.timer_id, attempts=r.attempts,
               resolution="no pending timer left")
        for r in rows
    ]  # fmt: skip
    log_changes(changes)
    return changes
