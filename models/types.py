"""Column types that behave the same on SQLite and PostgreSQL.

Instants are stored in UTC and always come back tz-aware in UTC, whatever the backend: the
engine compares them with its clock's readings, and a naive datetime would be a guess at a
zone. JSON is JSONB on PostgreSQL (indexable, compact) and plain JSON text elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

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
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} has no UTC offset; pass an aware datetime"
            )
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        # SQLite's DATETIME text has no offset: store the UTC wall time.
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
