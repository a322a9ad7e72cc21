"""A step's transaction: one pooled connection, the store for its database, one commit.

:func:`transaction` hands the unit of work (:mod:`models.repository`) the store of the
engine's database (:mod:`models.store_adapters`: the portable rows of
:mod:`models.episode_store`, with what the database does differently), and commits when
the block ends; :func:`run_step` runs a step in one, once more on a fresh connection if the
first turned out dead before anything was committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from models import timeouts as bounds
from models.db import describe_url
from models.episode_store import (
    NOTIFY_STATUSES,
    AuditChain,
    Claimed,
    EpisodeChanges,
    EpisodeStore,
    Loaded,
    Store,
    reminders_for,
    task_changes,
)
from models.statements import Cursor
from models.store_adapters import statements_for, store_for
from models.timeouts import (
    DatabaseTimeout,
    DeadlineConnection,
    NoAnswer,
    timeout_reason,
    timeouts_of,
)

T = TypeVar("T")
log = logging.getLogger("carepath.db")

__all__ = [
    "NOTIFY_STATUSES",
    "Attempt",
    "AuditChain",
    "Claimed",
    "EpisodeChanges",
    "EpisodeStore",
    "Loaded",
    "Store",
    "reminders_for",
    "run_step",
    "task_changes",
    "transaction",
]


@dataclass
class Attempt:
    """How far one transaction got: whether its COMMIT was sent."""

    commit_sent: bool = False


@contextmanager
def transaction(
    engine: Engine, read_only: bool = False, attempt: Attempt | None = None
) -> Iterator[Store]:
    """One step's transaction on a pooled connection: committed when the block ends.

    On SQLite a writer's transaction starts with ``BEGIN IMMEDIATE`` (the write lock up
    front, as :func:`models.db.make_engine` does), a reader's with a plain ``BEGIN``.

    On PostgreSQL a writer runs in pipeline mode, in two round trips: BEGIN goes out with
    the reads, the writes with COMMIT and the end of the pipeline. carepath sends BEGIN and
    COMMIT itself (the driver is in autocommit mode meanwhile): left to psycopg, each would
    cost a round trip of its own. An error in any write aborts the transaction, COMMIT
    included, and is raised when the pipeline ends. A reader there runs without a
    transaction: under READ COMMITTED each statement sees a snapshot of its own either way.

    The whole transaction has one deadline on PostgreSQL (``CAREPATH_DB_CLIENT_TIMEOUT_MS``,
    see :mod:`models.timeouts`): no wait for the server outlasts it, and once it has passed
    COMMIT is not sent, so a step that timed out before its COMMIT went out is never applied
    later. ``attempt`` records whether COMMIT was sent.

    A driver error comes out as SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError` (a wait
    that ran out as :class:`~models.timeouts.DatabaseTimeout`), and a connection the
    database dropped is discarded from the pool instead of being handed out again.
    """
    dialect = engine.dialect
    error = dialect.loaded_dbapi.Error
    timeouts = timeouts_of(engine)
    attempt = attempt or Attempt()
    try:
        connection = engine.raw_connection()
    except error as exc:  # the database cannot be reached: say so as SQLAlchemy would
        raise DBAPIError.instance(None, None, exc, error, dialect=dialect) from exc
    driver: Any = connection.driver_connection
    cursor: Cursor | None = None
    adapter = store_for(dialect)
    bounded = isinstance(driver, DeadlineConnection)
    if bounded:
        driver.deadline = bounds.monotonic() + timeouts.client_seconds
    try:
        adapter.prepare(driver)
        with adapter.pipeline(driver, read_only):
            cursor = Cursor(driver)
            adapter.begin(driver, cursor, read_only, timeouts)
            yield adapter(cursor, statements_for(dialect))
            if bounded and not read_only and bounds.monotonic() >= driver.deadline:
                raise NoAnswer("the step's deadline passed before its COMMIT was sent")
            attempt.commit_sent = not read_only
            adapter.commit(driver, cursor, read_only)
    except BaseException as exc:
        if isinstance(exc, NoAnswer) or (
            isinstance(exc, error) and dialect.is_disconnect(exc, driver, None)
        ):
            # Closing is the rollback: the server ends the transaction when it sees the
            # connection go, and nothing more is waited for.
            connection.invalidate(exc)
        else:
            with suppress(error):
                connection.rollback()
        if isinstance(exc, error):
            reason = timeout_reason(exc, timeouts)
            if reason is not None:
                # An error the server reported ended the transaction, COMMIT included; only
                # an answer that never came after COMMIT was sent leaves the outcome open.
                unknown = attempt.commit_sent and not connection.is_valid
                where = describe_url(engine.url)
                raise DatabaseTimeout(where, reason, unknown, exc) from exc
            raise DBAPIError.instance(
                None, None, exc, error, connection_invalidated=not connection.is_valid,
                dialect=dialect,
            ) from exc  # fmt: skip
        raise
    finally:
        if bounded:
            driver.deadline = None
        if cursor is not None and connection.is_valid:
            cursor.close()
        if connection.is_valid:
            try:
                adapter.release(driver)
            except error as exc:  # still in a transaction that would not roll back
                connection.invalidate(exc)
        connection.close()


def run_step(engine: Engine, work: Callable[[Store], T], read_only: bool = False) -> T:
    """``work`` in one :func:`transaction`, tried once more on a fresh connection when the
    first turned out dead before anything could have been committed.

    A pooled connection the server closed while it sat in the pool (``pg_terminate_backend``,
    a restart) is usually replaced at checkout; one that dies between checkout and COMMIT
    fails the attempt, and as nothing was sent that could commit, the step is run again.
    A timeout is not retried (the database is slow, not gone), nor a failure after COMMIT
    was sent (the step may have been applied).
    """
    attempt = Attempt()
    try:
        with transaction(engine, read_only, attempt) as store:
            result = work(store)
        return result
    except DBAPIError as exc:
        if (
            not exc.connection_invalidated
            or attempt.commit_sent
            or isinstance(exc, DatabaseTimeout)
        ):
            raise
        log.warning(
            "database connection lost before commit; running the step again",
            extra={"error": str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)},
        )
    with transaction(engine, read_only) as store:
        result = work(store)
    return result
