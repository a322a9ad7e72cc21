"""Bounded waits: nothing carepath asks of its database waits without limit.

PostgreSQL is given three server-side limits when a connection opens (``lock_timeout``,
``statement_timeout``, and libpq's ``connect_timeout``) and one client-side limit, enforced
by :class:`DeadlineConnection`: a database whose processes are stalled (a frozen VM, a
SIGSTOP, a network that swallows packets) never fires a server-side timeout, so the client
stops waiting by itself. A step's transaction has one deadline for all its round trips
(:func:`models.store.transaction`), and COMMIT is never sent once it has passed: a step
answered "timed out" before COMMIT went out cannot be applied when the database resumes.
Only when the stall begins after COMMIT was sent is the outcome unknown; a caller who sent
an ``Idempotency-Key`` learns it by retrying with the same key.

SQLite waits ``busy_timeout`` for another connection's write lock.

Every limit has a default (ours) and an environment variable:

============================== ======= ==================================================
variable                       default what it bounds
============================== ======= ==================================================
CAREPATH_DB_LOCK_TIMEOUT_MS    5000    PostgreSQL: waiting for a row or table lock
CAREPATH_DB_STATEMENT_TIMEOUT_MS 10000 PostgreSQL: one statement, on the server
CAREPATH_DB_CLIENT_TIMEOUT_MS  12000   PostgreSQL: a step's transaction, or any one wait
                                       for an answer, measured by the client
CAREPATH_DB_CONNECT_TIMEOUT_S  5       PostgreSQL: opening a connection
CAREPATH_SQLITE_BUSY_TIMEOUT_MS 5000   SQLite: waiting for another writer's lock
============================== ======= ==================================================
"""

from __future__ import annotations

import logging
import os
import select
import sqlite3
import time
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy.exc import OperationalError

from engine.errors import CarepathError

ENV_PREFIX = "CAREPATH_"
monotonic = time.monotonic  # the deadlines' clock (tests move it)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """The limits of every wait on the database (see the module's table for the defaults)."""

    db_lock_timeout_ms: int = 5000
    db_statement_timeout_ms: int = 10_000
    db_client_timeout_ms: int = 12_000
    db_connect_timeout_s: int = 5
    sqlite_busy_timeout_ms: int = 5000

    @classmethod
    def from_env(cls, environ: Any = None) -> DatabaseTimeouts:
        """The defaults, each overridden by its ``CAREPATH_…`` variable when set.

        Raises:
            ValueError: a variable that is not a positive whole number (naming it).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for item in fields(cls):
            name = ENV_PREFIX + item.name.upper()
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value <= 0:
                raise ValueError(f"{name} must be a positive whole number, not {raw!r}")
            values[item.name] = value
        timeouts = cls(**values)
        if timeouts.db_connect_timeout_s < 2:
            # libpq treats 1 as 2 seconds: say so rather than pretend.
            raise ValueError("CAREPATH_DB_CONNECT_TIMEOUT_S must be at least 2")
        return timeouts

    @property
    def client_seconds(self) -> float:
        return self.db_client_timeout_ms / 1000

    def postgres_options(self) -> str:
        """The server-side limits as libpq's ``options`` startup parameter (no round trip)."""
        return (
            f"-c lock_timeout={self.db_lock_timeout_ms} "
            f"-c statement_timeout={self.db_statement_timeout_ms}"
        )


class NoAnswer(psycopg.OperationalError):
    """The database did not answer within the client's limit; the connection is closed."""


_wait = psycopg.Connection.wait


class DeadlineConnection(psycopg.Connection[Any]):
    """A psycopg connection that never waits for the server past a limit.

    Every wait for the server (a result, a flush, a COMMIT) goes through :meth:`wait`.
    While :attr:`deadline` is set (a step's transaction), waits end at that instant;
    otherwise each wait may last :attr:`wait_limit` seconds. A wait that runs out closes
    the connection, since its protocol state is then unknown, and raises :class:`NoAnswer`.
    """

    wait_limit: float | None = None
    deadline: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        # On every exchange with the server (a dozen per step): kept to a few comparisons.
        deadline = self.deadline
        limit = self.wait_limit if deadline is None else max(0.0, deadline - monotonic())
        if limit is None or (timeout is not None and timeout < limit):
            return _wait(self, gen, interval, timeout)  # the caller's own, shorter limit
        try:
            return _wait(self, gen, interval, limit)
        except pg_errors._WaitTimeout:
            self.pgconn.finish()
            # The interrupted exchange would try to finish itself on the closed connection
            # when collected; end it now, quietly.
            with suppress(Exception):
                gen.close()
            raise NoAnswer(f"no answer from the database within {self.limit_text()}") from None

    def limit_text(self) -> str:
        return f"{self.wait_limit:g} s" if self.wait_limit is not None else "its deadline"


class _ClosedOnPurpose(logging.Filter):
    """psycopg warns that it could not end the pipeline of a connection :meth:`wait` closed
    on purpose; the timeout itself is what is reported, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        pipeline = args[0] if args else None
        pgconn = getattr(pipeline, "pgconn", None)
        closed = pgconn is not None and pgconn.status == psycopg.pq.ConnStatus.BAD
        return not (closed and str(record.msg).startswith("error ignored"))


logging.getLogger("psycopg").addFilter(_ClosedOnPurpose())


def closed_by_server(driver_connection: Any) -> bool:
    """Whether an idle PostgreSQL connection has heard from the server, learnt without a
    round trip: if so it is replaced.

    A connection the server ended (``pg_terminate_backend``, a restart) has its farewell
    and end-of-file waiting in the socket, while an idle live one has nothing to read:
    carepath does not LISTEN, so whatever else the server says unprompted (a rare notice)
    costs no more than a new connection.
    """
    try:
        readable, _, _ = select.select([driver_connection.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True
    return bool(readable)


class DatabaseTimeout(CarepathError, OperationalError):
    """A wait on the database ran out: a lock held elsewhere, or a database not answering.

    It is a SQLAlchemy ``OperationalError`` too, so code that waits out outages
    (the worker) treats it as one.

    Args:
        where: the database, named without its password.
        reason: what was waited for, and for how long.
        maybe_applied: True when COMMIT had been sent: the step may have been applied.
        orig: the driver's error.
    """

    def __init__(
        self,
        where: str,
        reason: str,
        maybe_applied: bool = False,
        orig: BaseException | None = None,
    ) -> None:
        self.where = where
        self.reason = reason
        self.maybe_applied = maybe_applied
        OperationalError.__init__(self, None, None, orig or Exception(reason))

    def __str__(self) -> str:
        outcome = (
            "the outcome is unknown: it may have been applied"
            if self.maybe_applied
            else "nothing was applied"
        )
        return f"timed out waiting for the database at {self.where}: {self.reason}; {outcome}"


def timeout_reason(orig: BaseException, timeouts: DatabaseTimeouts) -> str | None:
    """What a driver error says was waited for too long, or None when it is no timeout."""
    if isinstance(orig, NoAnswer):
        return f"no answer within {timeouts.client_seconds:g} s (CAREPATH_DB_CLIENT_TIMEOUT_MS)"
    if isinstance(orig, pg_errors.LockNotAvailable):
        return (
            f"a lock held by another transaction for more than {timeouts.db_lock_timeout_ms} ms "
            "(CAREPATH_DB_LOCK_TIMEOUT_MS)"
        )
    if isinstance(orig, pg_errors.QueryCanceled):
        return (
            f"a statement ran longer than {timeouts.db_statement_timeout_ms} ms "
            "(CAREPATH_DB_STATEMENT_TIMEOUT_MS)"
        )
    if isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
        return (
            "another connection holds the database's write lock "
            f"(waited {timeouts.sqlite_busy_timeout_ms} ms, CAREPATH_SQLITE_BUSY_TIMEOUT_MS)"
        )
    return None


def timeouts_of(engine: Any) -> DatabaseTimeouts:
    """The limits :func:`models.db.make_engine` gave ``engine`` (the defaults otherwise)."""
    return getattr(engine, "carepath_timeouts", None) or DEFAULTS


DEFAULTS = DatabaseTimeouts()
