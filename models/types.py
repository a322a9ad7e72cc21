"""Column types that behave the same on SQLite and PostgreSQL.

Instants are stored in UTC and always come back tz-aware in UTC, whatever the backend: the
engine compares them with its clock's readings, and a naive datetime would be a guess at a
zone. JSON is JSONB on PostgreSQL (indexable, compact) and plain JSON text elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.clinic_time import to_utc

# JSON documents: the engine's configuration, history, facts and event data.
PortableJSON: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A tz-aware instant, stored in UTC.

    PostgreSQL keeps it in a ``timestamptz``; SQLite keeps the naive UTC wall time. Either
    way the value read back is an aware datetime in UTC with its microseconds. A naive
    datetime is refused on the way in with :class:`ValueError`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "postgresql":
            return value
        # SQLite's DATETIME text has no offset: store the UTC wall time.
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _read_back(value)

    # Every step binds and reads a few dozen instants. The decorator's chain (this type's
    # method, then the dialect's own conversion) costs three calls and a dict format per
    # value; on the two dialects carepath runs on, one function does the same work. The
    # answers are the chain's own, value for value (tests/models/test_types.py).

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name == "postgresql":
            return _bind_aware
        if dialect.name == "sqlite" and _default_sqlite_format(self, dialect):
            return _bind_sqlite_text
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite" and _default_sqlite_format(self, dialect):
            return _read_sqlite_text
        return super().result_processor(dialect, coltype)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime (or anything else) is refused."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
    return to_utc(value)


def _read_back(value: datetime) -> datetime:
    """An instant as the database gave it, in UTC: a naive one is the UTC wall time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else to_utc(value)


def _bind_aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _bind_sqlite_text(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME text, "YYYY-MM-DD HH:MM:SS.ffffff", of the UTC wall time:
    # the aware form's ISO text less its "+00:00".
    global _last_bound
    if value is None:
        return None
    last = _last_bound
    if value is last[0]:
        return last[1]
    text = as_utc(value).isoformat(" ", "microseconds")[:26]
    _last_bound = (value, text)
    return text


# The last instant bound and its text: a step binds its clock reading (recorded_at,
# updated_at, set_at, ...) a dozen times, the same object each time. Held here, the object
# cannot be freed and its identity reused.
_last_bound: tuple[datetime | None, str | None] = (None, None)


def _read_sqlite_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    # The UTC wall time carepath writes, read as UTC: parsing an offset costs a tenth of
    # setting the zone with replace(). Any other text (one with an offset of its own, a
    # bare date) takes the general path.
    try:
        read = datetime.fromisoformat(value + "+00:00")
        if read.tzinfo is UTC:
            return read
    except ValueError:
        pass
    return _read_back(datetime.fromisoformat(value))


def _default_sqlite_format(column_type: UTCDateTime, dialect: Dialect) -> bool:
    """Whether the dialect stores the text SQLAlchemy writes by default (the fast forms
    write and read only that)."""
    impl = column_type.impl_instance.dialect_impl(dialect)
    return getattr(impl, "_storage_format", None) == _SQLITE_DATETIME_FORMAT and not getattr(
        impl, "_reg", None
    )


_SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
