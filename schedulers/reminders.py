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
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Table, and_, exists, literal, select, update

from engine.episode import SEVERITIES
from models.incidents import Change, delivery_failed, delivery_sent, describe, log_changes
from models.store_adapters import store_for
from models.tables import Episode, ReminderDelivery, Task
from models.tables import Reminder as ReminderRow
from models.teams import mail_addresses
from schedulers.channels import Channel, DeliveryFailed, Reminder

REMINDER = cast(Table, ReminderRow.__table__)
DELIVERY = cast(Table, ReminderDelivery.__table__)
TASK = cast(Table, Task.__table__)
EPISODE = cast(Table, Episode.__table__)

# A reminder older than this when a channel is first configured is not sent through it
# (our default): a coordinator's mailbox should not fill with last month's news.
MAX_AGE = timedelta(days=7)
# How long a batch of deliveries being sent is left alone by other workers.
LEASE = timedelta(minutes=10)


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
    base_url: str | None = None,
) -> Counter[tuple[str, str]]:
    """Send the reminders due at ``now`` through every channel, each with its item's link
    at ``base_url`` (the address people reach carepath at; None: no links).

    A channel that ``batches`` (e-mail: a digest per coordinator) is handed up to ``limit``
    due reminders at once, each settled on its own; the others one delivery per
    transaction.

    Returns how many deliveries ended each way, by ``(channel, "sent" | "failed")``.
    """
    outcomes: Counter[tuple[str, str]] = Counter()
    if not channels:
        return outcomes
    with engine.begin() as connection:
        for channel in channels:
            _open_deliveries(connection, channel.name, now)
    for channel in channels:
        if getattr(channel, "batches", False):
            outcomes += _deliver_batch(engine, channel, now, limit, backoff, base_url)
    by_name = {c.name: c for c in channels if not getattr(c, "batches", False)}
    for _ in range(limit if by_name else 0):
        incidents: list[Change] = []
        with engine.begin() as connection:
            due = _claim(connection, list(by_name), now, 1)
            if not due:
                break
            claimed = due[0]
            channel = by_name[claimed["channel"]]
            error: str | None = None
            try:
                channel.deliver(_reminder(connection, claimed["reminder_id"], base_url))
            except Exception as exc:  # noqa: BLE001 - any error is this delivery's failure
                error = describe(exc)
                if isinstance(exc, DeliveryFailed):
                    error = error.removeprefix(f"{type(exc).__name__}: ")
            outcomes[channel.name, "sent" if error is None else "failed"] += 1
            incidents += _settle(connection, claimed, error, now, backoff)
        log_changes(incidents)
    return outcomes


def _deliver_batch(
    engine: Engine, channel: Any, now: datetime, limit: int, backoff: Backoff,
    base_url: str | None,
) -> Counter[tuple[str, str]]:  # fmt: skip
    """Hand the channel's due reminders over together, sent with no transaction open (a
    mail server's wait never holds SQLite's write lock, nor a row lock): claimed first for
    :data:`LEASE`, so that another worker leaves them alone, then settled each on its own.
    A worker that dies meanwhile leaves them to come due again when the lease ends (sent
    again at worst, under the same Message-ID). A reminder whose row cannot be read fails
    alone."""
    outcomes: Counter[tuple[str, str]] = Counter()
    incidents: list[Change] = []
    readable: list[tuple[dict[str, Any], Reminder]] = []
    with engine.begin() as connection:
        claimed = _claim(connection, [channel.name], now, limit)
        for row in claimed:
            try:
                readable.append((row, _reminder(connection, row["reminder_id"], base_url)))
            except Exception as exc:  # noqa: BLE001 - this reminder's failure only
                outcomes[channel.name, "failed"] += 1
                incidents += _settle(connection, row, describe(exc), now, backoff)
        if readable:
            connection.execute(
                update(DELIVERY)
                .where(DELIVERY.c.id.in_([row["delivery_id"] for row, _ in readable]))
                .values(next_attempt_at=now + LEASE)
            )
    log_changes(incidents)
    if not readable:
        return outcomes
    try:
        errors = channel.deliver_batch([reminder for _, reminder in readable])
    except Exception as exc:  # noqa: BLE001 - every reminder of the batch failed
        errors = [describe(exc)] * len(readable)
    incidents = []
    with engine.begin() as connection:
        for (row, _), error in zip(readable, errors, strict=True):
            outcomes[channel.name, "sent" if error is None else "failed"] += 1
            incidents += _settle(connection, row, error, now, backoff)
    log_changes(incidents)
    return outcomes


def _settle(
    connection: Connection, claimed: dict[str, Any], error: str | None, now: datetime,
    backoff: Backoff,
) -> list[Change]:  # fmt: skip
    """Mark a claimed delivery sent, or failed with ``error`` and its next attempt's time;
    the incidents that opens or resolves."""
    attempts = claimed["attempts"] + 1
    incidents: list[Change] = []
    if error is not None:
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
        changes = {"status": "sent", "sent_at": now}
        if attempts > 1:
            incidents += delivery_sent(connection, claimed["delivery_id"], now)
    connection.execute(
        update(DELIVERY)
        .where(DELIVERY.c.id == claimed["delivery_id"])
        .values(attempts=attempts, **changes)
    )
    return incidents


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


def _claim(
    connection: Connection, channels: list[str], now: datetime, count: int
) -> list[dict[str, Any]]:
    """The next ``count`` deliveries due, by ids and counts only: each reminder is read
    apart, so that a reminder row that cannot be read fails its own delivery."""
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
        .limit(count)
    )
    query = store_for(connection.dialect).claimed(query, DELIVERY)
    return [dict(row) for row in connection.execute(query).mappings()]


def _reminder(connection: Connection, reminder_id: int, base_url: str | None) -> Reminder:
    """The reminder as it goes out: with its item's severity, the clinic's time zone, the
    addresses of its coordinator and of those covering them, and its link."""
    row = connection.execute(
        select(REMINDER, TASK.c.severity, EPISODE.c.clinic_timezone)
        .join(EPISODE, EPISODE.c.id == REMINDER.c.episode_id)
        .outerjoin(TASK, and_(TASK.c.episode_id == REMINDER.c.episode_id,
                              TASK.c.key == REMINDER.c.task_key))  # fmt: skip
        .where(REMINDER.c.id == reminder_id)
    ).mappings().one()
    link = None
    if base_url is not None:
        link = f"{base_url}/pages/episodes/{quote(row['episode_id'])}#task-{quote(row['task_key'])}"
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
        severity=SEVERITIES[row["severity"]] if row["severity"] is not None else "routine",
        time_zone=row["clinic_timezone"],
        addresses=() if row["owner"] is None else mail_addresses(connection, row["owner"],
                                                                  row["created_at"]),
        link=link,
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
