"""The command line's reads in the access log, and the ``audit access`` listing.

A command that shows episode data records its read before it prints anything, as the API
does before it answers: the actor is ``cli:<operating-system user>`` (whoever can run the
command can reach the database), the role ``cli``, the route the command itself
(``carepath episode show``). If the record cannot be written, nothing is printed.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine

from engine.clinic_time import Clock
from engine.errors import InvalidEvent
from models.access_log import read_of
from models.access_reading import AccessFilter, episodes_named, page
from models.access_writer import AccessLogWriter

ROLE = "cli"


def actor() -> str:
    """``cli:`` and the operating-system user running the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = str(os.getuid())
    return f"cli:{user}"


def record_read(
    engine: Engine,
    clock: Clock,
    command: str,
    episodes: Iterable[str] | None,
    **options: Any,
) -> None:
    """Put the read by ``carepath COMMAND`` of ``episodes`` on record (None: more than can
    be listed; ``options``, those given, are kept as its query).

    Raises:
        AccessLogUnavailable: it could not be written; show nothing.
    """
    given = {name: value for name, value in options.items() if value is not None}
    entry = read_of(
        actor(), ROLE, f"carepath {command}", clock.now(), episodes,
        query=urlencode(given) or None,
    )  # fmt: skip
    AccessLogWriter(engine).record(entry)


def instant(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with a UTC offset from ``option``.

    Raises:
        InvalidEvent: not such a time (the field is the option).
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(option, f"must be an ISO 8601 time with offset, got {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidEvent(option, f"needs a UTC offset (e.g. 'Z'), got {value!r}")
    return parsed


def listing(
    engine: Engine,
    clock: Clock,
    since: str | None,
    until: str | None,
    who: str | None,
    episode: str | None,
    limit: int,
    cursor: int,
) -> dict[str, Any]:
    """A page of the access log (``{"items", "next_cursor"}``), its own read on record."""
    where = AccessFilter(instant(since, "--since"), instant(until, "--until"), who, episode)
    rows, next_cursor = page(engine, where, cursor, limit)
    record_read(
        engine, clock, "audit access", episodes_named(rows),
        since=since, until=until, actor=who, episode=episode, limit=limit, cursor=cursor or None,
    )  # fmt: skip
    return {"items": rows, "next_cursor": next_cursor}
