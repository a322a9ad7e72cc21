"""What every `carepath` command shares: the database option, the clock, JSON output, and
errors rendered as one line on stderr.

Exit status: 0 ok, 1 refused or invalid (one line on stderr naming the rule or the field),
2 bad usage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from engine.clinic_time import SystemClock
from engine.errors import (
    CarepathError,
    EpisodeNotFound,
    InvalidConfiguration,
    InvalidEvent,
    StaleEpisode,
)
from engine.settings import PathwayDefaults
from models.db import (
    DatabaseUnavailable,
    check_connection,
    database_url,
    make_engine,
    make_session_factory,
    read_only,
)
from models.timeouts import DatabaseTimeout

if TYPE_CHECKING:
    from models.audit_keys import AuditKey
    from models.checkpointing import CheckpointSchedule
    from models.repository import EpisodeRepository

# Read through the module (``common.CLOCK``), so that a test can move it.
CLOCK = SystemClock()


class Options:
    """The options given before the command (``carepath --db URL …``)."""

    db: str | None = None


OPTIONS = Options()


def as_json(value: Any) -> str:
    """JSON as every command prints it: indented, times and dates as ISO 8601."""
    return json.dumps(value, indent=2, default=str)


def print_json(value: Any) -> None:
    typer.echo(as_json(value))


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def open_engine() -> Engine:
    """The database, checked with a read that takes no lock: a writer holding SQLite's
    lock does not stop a command from starting (its write waits its turn, bounded)."""
    try:
        engine = make_engine(database_url(OPTIONS.db))
    except ValueError as exc:  # a CAREPATH_DB_* setting
        fail(f"invalid: {exc}", 2)
    try:
        check_connection(engine)
    except (DatabaseUnavailable, DatabaseTimeout) as exc:
        engine.dispose()
        fail(f"error: {exc}")
    return engine


def require_schema(engine: Engine) -> None:
    with read_only(engine) as connection:
        migrated = inspect(connection).has_table("episode")
    if not migrated:
        engine.dispose()
        fail("error: database not migrated: run carepath db upgrade")


@contextmanager
def database() -> Iterator[Engine]:
    """An engine on the migrated carepath database, disposed afterwards; a database error
    in the block is one line on stderr and exit status 1, never a traceback."""
    engine = open_engine()
    try:
        with reported():
            require_schema(engine)
            yield engine
    finally:
        engine.dispose()


def repository(engine: Engine) -> EpisodeRepository:
    from models.repository import EpisodeRepository

    try:
        defaults = PathwayDefaults.from_env()
    except (ValueError, TypeError) as exc:
        fail(f"invalid: CAREPATH_DEFAULTS: {exc}", 2)
    return EpisodeRepository(make_session_factory(engine), defaults)


@contextmanager
def reported() -> Iterator[None]:
    """Render carepath and database errors as one line on stderr with exit status 1."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - rendered for the user
        handle(exc)


def handle(exc: Exception) -> NoReturn:
    if isinstance(exc, InvalidEvent):
        fail(f"invalid: {exc.field}: {exc.reason}")
    if isinstance(exc, EpisodeNotFound):
        fail(f"not found: {exc}")
    if isinstance(exc, StaleEpisode):
        fail(f"stale: {exc}")
    if isinstance(exc, InvalidConfiguration):
        fail(f"error: {exc}")
    if isinstance(exc, DatabaseTimeout):
        # Named before the generic database error it also is: say what was waited for.
        advice = "look (episode show) before trying again" if exc.maybe_applied else "try again"
        fail(f"error: {exc}; {advice}")
    if isinstance(exc, DBAPIError):
        fail(f"error: database: {str(exc.orig).strip().splitlines()[0]}")
    if isinstance(exc, CarepathError):
        fail(f"error: {exc}")
    raise exc


def parse_time(value: str | None, field: str) -> str | None:
    """An ISO 8601 time with its offset, as text; anything else is refused naming ``field``."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"invalid: {field}: must be an ISO 8601 time with offset, got {value!r}")
    if parsed.tzinfo is None:
        fail(f"invalid: {field}: needs a UTC offset (e.g. 'Z'), got {value!r}")
    return parsed.isoformat()


def audit_key() -> AuditKey | None:
    """This process's audit key (None without CAREPATH_AUDIT_KEY_FILE); a key file that
    cannot be used is bad usage, found before anything starts."""
    from models.audit_keys import AUDIT_KEY_FILE_ENV, AuditKeyError, process_key

    try:
        return process_key()
    except AuditKeyError as exc:
        fail(f"invalid: {AUDIT_KEY_FILE_ENV}: {exc.path}: {exc.reason}", 2)


def warn_without_key() -> None:
    logging.getLogger("carepath.audit").warning(
        "no audit key (CAREPATH_AUDIT_KEY_FILE): rows are not sealed and the chain is not "
        "checkpointed, so a forged tail would not show"
    )


def checkpoints(engine: Engine, key: AuditKey | None, interval: float) -> CheckpointSchedule | None:
    """The worker's checkpoint schedule with ``key``; without one, a warning and none."""
    from models.checkpointing import CheckpointSchedule

    if key is None:
        warn_without_key()
        return None
    return CheckpointSchedule(engine, key, interval)
