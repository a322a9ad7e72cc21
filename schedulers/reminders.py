"""Delivering reminders: each one through each channel, retried until it is sent.

The engine's unit of work writes a ``reminder`` row with each due item's change of status.
Here the worker gives every recent reminder a ``reminder_delivery`` row per configured
channel, then sends what is due, one delivery per transaction: claimed with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (several workers never send the same one), sent,
and marked sent, or marked for a retry with the error and the next attempt's time. A worker
that dies after sending and before committing sends that one again; its idempotency key
lets the receiver drop the repeat.

Every error, whatever its type (a channel refusing, a reminder whose row or message cannot
be built), is a failed attempt recorded on the delivery with its backoff, never a rollback
of the sweep: one delivery that keeps failing waits its turn and never holds up the
others. From :data:`models.incidents.DELIVERY_INCIDENT_AFTER` failures in a row it is also
an incident, resolved when it goes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, exists, literal, select, update

from models.incidents import Change, delivery_failed, delivery_sent, describe, log_changes
from models.store_adapters import store_for
from models.tables import Reminder as ReminderRow
from models.tables import ReminderDelivery
from schedulers.channels import Channel, DeliveryFailed, Reminder

REMINDER = cast(Table, ReminderRow.__table__)
DELIVERY = cast(Table, ReminderDelivery.__table__)

# A reminder older than this when a channel is first configured is not sent through it
# (our default): a coordinator's mailbox should not fill with last month's news.
MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class Backoff:
    """Wait before the next attempt: ``base × factor^(attempts − 1)``, at most ``cap``."""

    base: timedelta = timedelta(seconds=30)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def after(self, attempts: int) -> timedelta:
        return min(self.cap, self.base * self.factor ** max(0, attempts - 1))


def deliver_due(
    engine: Engine,
    channels: Sequence[Channel],
    now: datetime,
    limit: int = 100,
    backoff: Backoff = Backoff(),
) -> Counter[tuple[str, str]]:
    """Send the reminders due at ``now`` through every channel.

    Returns how many deliveries ended each way, by ``(channel, "sent" | "failed")``.
    """
    outcomes: Counter[tuple[str, str]] = Counter()
    if not channels:
        return outcomes
    by_name = {channel.name: channel for channel in channels}
    with engine.begin() as connection:
        for channel in channels:
            _open_deliveries(connection, channel.name, now)
    for _ in range(limit):
        incidents: list[Change] = []
        with engine.begin() as connection:
            claimed = _claim(connection, list(by_name), now)
            if claimed is None:
                break
            channel = by_name[claimed["channel"]]
            attempts = claimed["attempts"] + 1
            try:
                channel.deliver(_reminder(connection, claimed["reminder_id"]))
            except Exception as exc:  # noqa: BLE001 - any error is this delivery's failure
                outcomes[channel.name, "failed"] += 1
                error = describe(exc)
                if isinstance(exc, DeliveryFailed):
                    error = error.removeprefix(f"{type(exc).__name__}: ")
                retry_at = now + backoff.after(attempts)
                changes: dict[str, Any] = {
                    "status": "retrying", "last_error": error, "next_attempt_at": retry_at,
                }  # fmt: skip
                change = delivery_failed(
                    connection, claimed["delivery_id"], claimed["episode_id"], error, attempts,
                    retry_at, now,
                )  # fmt: skip
                incidents += [change] if change else []
            else:
                outcomes[channel.name, "sent"] += 1
                changes = {"status": "sent", "sent_at": now}
                if attempts > 1:
                    incidents += delivery_sent(connection, claimed["delivery_id"], now)
            connection.execute(
                update(DELIVERY)
                .where(DELIVERY.c.id == claimed["delivery_id"])
                .values(attempts=attempts, **changes)
            )
        log_changes(incidents)
    return outcomes


def _open_deliveries(connection: Connection, channel: str, now: datetime) -> None:
    """A pending delivery through ``channel`` for every recent reminder that lacks one."""
    lacking = select(
        REMINDER.c.id, literal(channel), literal("pending"), literal(0), literal(now), literal(now)
    ).where(
        REMINDER.c.created_at >= now - MAX_AGE,
        ~exists().where(
            and_(DELIVERY.c.reminder_id == REMINDER.c.id, DELIVERY.c.channel == channel)
        ),
    )
    connection.execute(
        store_for(connection.dialect).insert(DELIVERY)
        .from_select(
            ["reminder_id", "channel", "status", "attempts", "next_attempt_at", "created_at"],
            lacking,
        )
        # Two workers opening the same delivery at once: one row wins.
        .on_conflict_do_nothing(index_elements=["reminder_id", "channel"])
    )


def _claim(connection: Connection, channels: list[str], now: datetime) -> dict[str, Any] | None:
    """The next delivery due, by ids and counts only: its reminder is read apart, so that
    a reminder row that cannot be read fails its own delivery."""
    query = (
        select(
            DELIVERY.c.id.label("delivery_id"),
            DELIVERY.c.channel,
            DELIVERY.c.attempts,
            DELIVERY.c.reminder_id,
            REMINDER.c.episode_id,
        )
        .join(REMINDER, REMINDER.c.id == DELIVERY.c.reminder_id)
        .where(
            DELIVERY.c.status.in_(("pending", "retrying")),
            DELIVERY.c.next_attempt_at <= now,
            DELIVERY.c.channel.in_(channels),
        )
        .order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.id)
        .limit(1)
    )
    query = store_for(connection.dialect).claimed(query, DELIVERY)
    row = connection.execute(query).mappings().first()
    return dict(row) if row is not None else None


def _reminder(connection: Connection, reminder_id: int) -> Reminder:
    row = connection.execute(select(REMINDER).where(REMINDER.c.id == reminder_id)).mappings().one()
    return Reminder(
        idempotency_key=row["idempotency_key"],
        episode_id=row["episode_id"],
        patient_ref=row["patient_ref"],
        task_key=row["task_key"],
        rule=row["rule"],
        status=row["task_status"],
        due_at=row["due_at"],
        escalate_at=row["escalate_at"],
        owner=row["owner"],
    )


def delivery_status(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The latest deliveries with their status, attempts and last error, newest first."""
    query = (
        select(
            DELIVERY.c.channel,
            DELIVERY.c.status,
            DELIVERY.c.attempts,
            DELIVERY.c.last_error,
            DELIVERY.c.next_attempt_at,
            DELIVERY.c.sent_at,
            REMINDER.c.idempotency_key,
            REMINDER.c.patient_ref,
            REMINDER.c.task_key,
            REMINDER.c.task_status,
        )
        .join(REMINDER, REMINDER.c.id == DELIVERY.c.reminder_id)
        .order_by(DELIVERY.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]
