"""Engines, sessions and schema upgrades for SQLite (embedded) and PostgreSQL (production).

SQLite is tuned for one machine with several writers (the API and the timer worker): WAL so
readers never block, a busy timeout so a writer waits its turn, and transactions that start
with ``BEGIN IMMEDIATE`` so two writers queue for the lock instead of one failing with
"database is locked" when its read transaction tries to become a write transaction.
"""

from __future__ import annotations

import os
import sqlite3
import time
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

DEFAULT_URL = "sqlite:///./carepath.db"
DATABASE_URL_ENV = "CAREPATH_DATABASE_URL"
MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent

SQLITE_BUSY_TIMEOUT_MS = 5000
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


def begin_sqlite(driver_connection: Any, sql: str = "BEGIN IMMEDIATE") -> None:
    """Start a transaction, waiting up to the busy timeout for the write lock.

    Under many concurrent writers SQLite in WAL mode sometimes answers "database is locked"
    at once instead of calling its busy handler; wait and try again here instead of
    failing the step.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
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


def make_engine(url: str | URL, *, begin_immediate: bool = True, **kwargs: Any) -> Engine:
    """An engine configured for carepath.

    Args:
        url: a SQLAlchemy URL; ``postgresql://`` means psycopg 3.
        begin_immediate: SQLite only. Start every transaction with ``BEGIN IMMEDIATE``
            (take the write lock up front); False gives SQLite's deferred ``BEGIN``.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    # json.dumps's text, from an encoder built once instead of on every value.
    kwargs.setdefault("json_serializer", json_text.dumps)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
        engine = create_engine(parsed, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_when_idle(engine)
        return engine

    memory = _is_memory_sqlite(parsed)
    connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
    if memory:
        # One shared connection, or every checkout would see a new, empty database.
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN, instead of the driver's
        # legacy implicit BEGIN (deferred, and not before DDL or SELECT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
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

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        reader = connection.get_execution_options().get(READ_ONLY)
        begin_sqlite(connection.connection.driver_connection, "BEGIN" if reader else begin_sql)

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use when it has sat idle: a connection the database
    dropped meanwhile (a restart, a failover) is replaced instead of failing the request."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["returned_at"] = monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or monotonic() - returned_at < PING_IDLE_AFTER_SECONDS:
            return  # new, or in use a moment ago
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
    """Raise :class:`DatabaseUnavailable` unless a trivial query succeeds."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
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


def _run_alembic(target: str | URL | Engine, action: str, revision: str) -> None:
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        # One transaction for the whole run: on PostgreSQL and (with our BEGIN) SQLite,
        # a failed migration leaves the schema as it was.
        with engine.begin() as connection:
            getattr(command, action)(alembic_config(connection), revision)
    finally:
        if engine is not target:
            engine.dispose()


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (``alembic upgrade head``)."""
    _run_alembic(target, "upgrade", revision)


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
