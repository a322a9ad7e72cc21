"""The column types' one-function conversions answer exactly as SQLAlchemy's own chains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator

from models.types import UTCDateTime

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}
ZONES = st.sampled_from(
    [UTC, ZoneInfo("Europe/London"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"),
     timezone(timedelta(hours=-3, minutes=-30))]
)  # fmt: skip
INSTANTS = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=ZONES
)


def chain_bind(dialect_name: str) -> Any:
    """SQLAlchemy's decorator chain: process_bind_param, then the dialect's conversion."""
    dialect = DIALECTS[dialect_name]
    return TypeDecorator.bind_processor(column_type(dialect_name), dialect)


def chain_result(dialect_name: str) -> Any:
    dialect = DIALECTS[dialect_name]
    return TypeDecorator.result_processor(column_type(dialect_name), dialect, None)


def column_type(dialect_name: str) -> Any:
    """The type as a statement compiled for the dialect holds it."""
    return UTCDateTime().dialect_impl(DIALECTS[dialect_name])


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
@given(instant=INSTANTS)
def test_an_instant_is_bound_as_the_chain_binds_it(dialect_name: str, instant: datetime) -> None:
    fast = column_type(dialect_name).bind_processor(DIALECTS[dialect_name])
    assert fast is not None
    bound = fast(instant)
    assert bound == chain_bind(dialect_name)(instant)
    assert type(bound) is type(chain_bind(dialect_name)(instant))


@given(instant=INSTANTS)
def test_sqlite_text_reads_back_as_the_chain_reads_it(instant: datetime) -> None:
    dialect = DIALECTS["sqlite"]
    stored = column_type("sqlite").bind_processor(dialect)(instant)  # type: ignore[misc]
    read = column_type("sqlite").result_processor(dialect, None)(stored)  # type: ignore[misc]
    assert read == chain_result("sqlite")(stored) == instant.astimezone(UTC)
    assert read.tzinfo is UTC


@pytest.mark.parametrize(
    "stored",
    [
        "2026-01-31 23:59:59",
        "2026-03-29 01:30:00.000001",
        "2026-01-19T09:00:00+01:00",
        "2026-01-19T09:00:00Z",
        "2026-01-19",
        "2026-01-19 09",
    ],
)
def test_other_sqlite_texts_read_as_the_chain_reads_them(stored: str) -> None:
    read = column_type("sqlite").result_processor(DIALECTS["sqlite"], None)(stored)  # type: ignore[misc]
    assert read == chain_result("sqlite")(stored)
    assert read.tzinfo is UTC


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
def test_none_passes_and_bad_values_are_refused_alike(dialect_name: str) -> None:
    fast = column_type(dialect_name).bind_processor(DIALECTS[dialect_name])
    assert fast is not None
    assert fast(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        fast(datetime(2026, 1, 19, 9))
    with pytest.raises(TypeError, match="expected a datetime"):
        fast("2026-01-19")
