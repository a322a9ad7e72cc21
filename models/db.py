"""Engines, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (production).

SQLite is tuned for one machine with several writers (the API and the timer worker): WAL so
readers never block, a busy timeout so a writer waits its turn, and transactions that start
with ``BEGIN IMMEDIATE`` so two writers queue for the lock instead of one failing with
"database is locked" when its read transaction tries to become a write transaction. Readers
(and the start-up check) begin with a plain ``BEGIN`` and never wait for a writer.

Every wait is bounded (:mod:`models.timeouts`): a lock held too long, or a database that
does not answer, is :class:`~models.timeouts.DatabaseTimeout`, never an endless wait.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

import migrations
from engine.errors import CarepathError
from models import json_text
from models.timeouts import (
    DatabaseTimeout,
    DatabaseTimeouts,
    DeadlineConnection,
    NoAnswer,
    closed_by_server,
    timeout_reason,
)

DEFAULT_URL = "sqlite:///./carepath.db"
DATABASE_URL_ENV = "CAREPATH_DATABASE_URL"
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent

SQLITE_BUSY_TIMEOUT_MS = DatabaseTimeouts.sqlite_busy_timeout_ms  # our default
# A pooled PostgreSQL connection idle for longer than this is checked before it is handed
# out; one used more recently is trusted, as a busy pool's connections were just seen
# alive. Checking every checkout would add a round trip to every request.
PING_IDLE_AFTER_SECONDS = 0.5
monotonic = time.monotonic  # the pool's clock (tests move it)
# Connections kept open per process. The API's thread pool runs a request's dependencies
# and its handler on separate threads, each holding a connection for a moment; a pool
# smaller than the concurrency opens and closes a connection per request beyond it.
POSTGRES_POOL_SIZE = 16
SQLITE_AUTOCHECKPOINT_PAGES = 10_000


# Execution option for a connection that only reads: on SQLite it starts with a plain BEGIN,
# so it neither waits for nor holds up the writers.
READ_ONLY = "carepath_read_only"


def read_only(engine: Engine, single_statement: bool = False) -> Connection:
    """A connection for reading only (``with read_only(engine) as connection: ...``).

    With ``single_statement`` on PostgreSQL no transaction is opened around the read: one
    statement sees one snapshot anyway, and BEGIN and ROLLBACK would cost two round trips.
    """
    connection = engine.connect().execution_options(**{READ_ONLY: True})
    if single_statement and engine.dialect.name == "postgresql":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def begin_sqlite(
    driver_connection: Any, sql: str = "BEGIN IMMEDIATE", busy_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> None:
    """Start a transaction, waiting up to the busy timeout (``busy_ms``) for the write lock.

    Under many concurrent writers SQLite in WAL mode sometimes answers "database is locked"
    at once instead of calling its busy handler; wait and try again here instead of
    failing the step. Past the busy timeout the driver's "database is locked" is raised.
    """
    deadline = time.monotonic() + busy_ms / 1000
    pause = 0.001
    while True:
        try:
            driver_connection.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def checkpoint_sqlite(engine: Engine) -> None:
    """Fold SQLite's write-ahead log back into the database without waiting on anyone
    (a no-op on PostgreSQL and for in-memory databases)."""
    if engine.dialect.name != "sqlite" or _is_memory_sqlite(engine.url):
        return
    # On the driver's connection, outside any transaction: a checkpoint cannot run in one.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        cursor.close()
    finally:
        connection.close()


class DatabaseUnavailable(CarepathError):
    """The database cannot be reached.

    Args:
        where: the database, named without its password (host:port/name, or the file).
        reason: the driver's explanation.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"cannot reach the database at {where}: {reason}")


def normalize_url(url: str | URL) -> URL:
    """Parse a URL, sending plain ``postgresql://`` URLs to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def database_url(cli_value: str | None = None) -> str:
    """The URL to use: the command line's, else ``CAREPATH_DATABASE_URL``, else the default."""
    chosen = cli_value or os.environ.get(DATABASE_URL_ENV) or DEFAULT_URL
    return normalize_url(chosen).render_as_string(hide_password=False)


def describe_url(url: str | URL) -> str:
    """Where a database is, for a person: ``user@host:port/name`` or the SQLite file.

    Never includes the password.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    user = f"{parsed.username}@" if parsed.username else ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{user}{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def make_engine(
    url: str | URL,
    *,
    begin_immediate: bool = True,
    timeouts: DatabaseTimeouts | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine configured for carepath.

    Args:
        url: a SQLAlchemy URL; ``postgresql://`` means psycopg 3.
        begin_immediate: SQLite only. Start every transaction with ``BEGIN IMMEDIATE``
            (take the write lock up front); False gives SQLite's deferred ``BEGIN``.
        timeouts: the limits of every wait (default: :meth:`DatabaseTimeouts.from_env`).
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Raises:
        ValueError: a timeout variable in the environment is not a positive whole number.
    """
    parsed = normalize_url(url)
    timeouts = timeouts or DatabaseTimeouts.from_env()
    # json.dumps's text, from an encoder built once instead of on every value.
    kwargs.setdefault("json_serializer", json_text.dumps)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
        # The server-side limits travel in the startup packet, after any the URL sets.
        given = str(parsed.query.get("options", ""))
        options = f"{given} {timeouts.postgres_options()}".strip()
        connect_args = {
            "connect_timeout": timeouts.db_connect_timeout_s,
            "options": options,
            **kwargs.pop("connect_args", {}),
        }
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _bound_postgres(engine, timeouts, check_idle=not kwargs.get("pool_pre_ping"))
        return engine

    memory = _is_memory_sqlite(parsed)
    connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
    if memory:
        # One shared connection, or every checkout would see a new, empty database.
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    engine.carepath_timeouts = timeouts  # type: ignore[attr-defined]
    _timeouts_raised(engine, timeouts)
    busy_ms = timeouts.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN, instead of the driver's
        # legacy implicit BEGIN (deferred, and not before DDL or SELECT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                # Copying the log back into the database costs milliseconds; leave it to
                # the worker's sweeps (checkpoint_sqlite) instead of the request that
                # happens to cross SQLite's default of 1,000 pages. This is the backstop.
                cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    begin_sql = "BEGIN IMMEDIATE" if begin_immediate else "BEGIN"

    where = describe_url(parsed)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        reader = connection.get_execution_options().get(READ_ONLY)
        try:
            begin_sqlite(
                connection.connection.driver_connection, "BEGIN" if reader else begin_sql, busy_ms
            )
        except sqlite3.Error as exc:
            # SQLAlchemy runs this hook outside its error handling: wrap the driver's error
            # here, or a held lock would escape as a raw sqlite3 traceback.
            reason = timeout_reason(exc, timeouts)
            if reason is not None:
                raise DatabaseTimeout(where, reason, orig=exc) from exc
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc

    return engine


def _timeouts_raised(engine: Engine, timeouts: DatabaseTimeouts) -> None:
    """Raise a wait that ran out (lock, statement, no answer) as :class:`DatabaseTimeout`."""
    where = describe_url(engine.url)

    @event.listens_for(engine, "handle_error")
    def _timed_out(context: Any) -> BaseException | None:
        orig = context.original_exception
        reason = timeout_reason(orig, timeouts)
        if reason is None:
            return None
        # No statement: the wait was for COMMIT (psycopg sends no BEGIN of its own), and
        # an answer that never came leaves its outcome open.
        unknown = isinstance(orig, NoAnswer) and context.statement is None
        return DatabaseTimeout(where, reason, unknown, orig)


def _bound_postgres(engine: Engine, timeouts: DatabaseTimeouts, check_idle: bool) -> None:
    """Connections that never wait for the server past the client's limit, checked
    before use so that one the server closed is replaced instead of failing a request."""
    engine.carepath_timeouts = timeouts  # type: ignore[attr-defined]
    _timeouts_raised(engine, timeouts)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        connection = DeadlineConnection.connect(*cargs, **cparams)
        connection.wait_limit = timeouts.client_seconds
        return connection

    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A connection the server ended (pg_terminate_backend, a restart) says so in its
        # socket: found without a round trip, on every checkout.
        if closed_by_server(dbapi_connection):
            raise DisconnectionError("the server closed the connection")  # connect afresh
        returned_at = record.info.get("returned_at")
        if not check_idle or returned_at is None:
            return
        if monotonic() - returned_at < PING_IDLE_AFTER_SECONDS:
            return  # in use a moment ago
        # Idle a while: a connection lost without a word (a failover, a dropped network
        # path) is found only by asking.
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(str(exc)) from exc  # the pool connects afresh
            raise


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API renders them afterwards)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    """Raise :class:`DatabaseUnavailable` unless a trivial query succeeds.

    It reads only: on SQLite it takes no write lock, so a writer holding the lock (another
    process in the middle of a step) neither blocks it nor is blocked by it.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
        DatabaseTimeout: it did not answer within its limit.
    """
    try:
        with read_only(engine) as connection:
            connection.exec_driver_sql("SELECT 1")
    except DatabaseTimeout:
        raise
    except DBAPIError as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise DatabaseUnavailable(describe_url(engine.url), reason) from exc


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration built in code: no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_alembic(
    target: str | URL | Engine, action: str, revision: str, record_versions: bool = True
) -> None:
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        # One transaction for the whole run: on PostgreSQL and (with our BEGIN) SQLite,
        # a failed migration leaves the schema as it was.
        with engine.begin() as connection, _unbounded_statements(connection):
            getattr(command, action)(alembic_config(connection), revision)
            if action == "upgrade" and record_versions:
                # The pathway versions this install publishes, in the same transaction.
                from models.pathway_versions import record_published

                record_published(connection)
    finally:
        if engine is not target:
            engine.dispose()


@contextmanager
def _unbounded_statements(connection: Connection) -> Iterator[None]:
    """Let a migration's statements (an index built over a large table) run as long as
    they need; the lock timeout stays, so a migration waiting behind a long transaction
    fails instead of queueing every request behind it."""
    driver = connection.connection.driver_connection
    if not isinstance(driver, DeadlineConnection):
        yield
        return
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    limit, driver.wait_limit = driver.wait_limit, None
    try:
        yield
    finally:
        driver.wait_limit = limit


def upgrade(
    target: str | URL | Engine, revision: str = "head", record_versions: bool = True
) -> None:
    """Bring the schema up to ``revision`` (``alembic upgrade head``), and record the
    pathway versions this install publishes (:mod:`models.pathway_versions`), which checks
    every one of them; without ``record_versions`` none is recorded or checked (a replay's
    private database: the replay checks the versions it runs on itself)."""
    _run_alembic(target, "upgrade", revision, record_versions)


def downgrade(target: str | URL | Engine, revision: str = "base") -> None:
    """Take the schema down to ``revision``; ``base`` drops every table."""
    _run_alembic(target, "downgrade", revision)


def current_revision(target: str | URL | Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if engine is not target:
            engine.dispose()
