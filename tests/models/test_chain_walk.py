"""The verifier's fast path: its row text is ``canonical_json``'s, character for character,
for any row either database can hold; it never overrules the reference path; and a walk
split over processes answers as one walk does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from models import chain_parallel, chain_walk
from models.audit import AUDIT_CHAIN, AUDIT_LOG, HASHED_FIELDS, canonical_json, chain_row
from models.audit_verify import verify_log
from models.chain_walk import RowText, _time_text
from models.db import make_engine
from models.json_text import dumps
from models.types import _bind_sqlite_text
from tests.models import audit_forgery as forge

# Text either database stores: no NUL (PostgreSQL refuses it), no lone surrogate.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
STATES = st.lists(TEXT, max_size=6)
ROW = st.fixed_dictionaries(
    {
        "seq": st.integers(1, 2**31 - 1),
        "episode_id": st.none() | TEXT,
        "trigger": TEXT,
        "type": TEXT,
        "actor": TEXT,
        "occurred_at": INSTANTS,
        "recorded_at": INSTANTS,
        "accepted": st.booleans(),
        "configuration_before": STATES,
        "configuration_after": STATES,
        "rules": STATES,
        "reason": st.none() | TEXT,
        "payload_digest": TEXT,
        "pathway_id": TEXT,
        "pathway_version": TEXT,
        "prev_hash": TEXT,
    }
)


def postgres_text(instant: datetime) -> str:
    """A timestamptz as PostgreSQL writes it in a UTC session: the fraction's trailing
    zeros dropped, no fraction at all for a whole second."""
    fraction = f".{instant.microsecond:06d}".rstrip("0") if instant.microsecond else ""
    return (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d} {instant:%H:%M:%S}{fraction}+00"
    )


def as_read(row: dict[str, Any], dialect: str) -> tuple[Any, ...]:
    """The row as each driver gives it to the walk (RowText's column order)."""
    values: dict[str, Any] = dict(row)
    for name in ("occurred_at", "recorded_at"):
        instant = row[name]
        values[name] = _bind_sqlite_text(instant) if dialect == "sqlite" else postgres_text(instant)
    for name in ("configuration_before", "configuration_after", "rules"):
        # SQLite keeps the text carepath's encoder wrote; jsonb writes its own.
        values[name] = (
            dumps(row[name]) if dialect == "sqlite" else json.dumps(row[name], ensure_ascii=False)
        )
    values["accepted"] = int(row["accepted"]) if dialect == "sqlite" else row["accepted"]
    return tuple(values[name] for name in RowText(AUDIT_CHAIN).keys)


@settings(max_examples=400, deadline=None)
@given(ROW, st.sampled_from(["sqlite", "postgresql"]))
def test_the_row_text_is_canonical_json(row: dict[str, Any], dialect: str) -> None:
    content = {name: row[name] for name in (*HASHED_FIELDS, "prev_hash")}
    assert RowText(AUDIT_CHAIN).build(as_read(row, dialect)) == canonical_json(content)


@pytest.mark.parametrize(
    "stored",
    [
        "2026-01-06T09:00:00.000000",  # ISO with a T: not carepath's form
        "2026-01-06 09:00:00",
        "2026-01-06 09:00:00.000000+01",
        "2026-01-06 09:00:00.1234567+00",
        "2026-01-06 09:00:00.001+0",
        "0044-03-15 12:00:00+00 BC",
        "",
        None,
        17,
    ],
)
def test_a_time_in_another_form_is_left_to_the_reference_path(stored: object) -> None:
    assert _time_text(stored) is None


@pytest.mark.parametrize(
    ("stored", "canonical"),
    [
        ("2026-01-06 09:00:00.001000", '"2026-01-06T09:00:00.001000Z"'),  # SQLite
        ("2026-01-06 09:00:00.001+00", '"2026-01-06T09:00:00.001000Z"'),  # the same length
        ("2026-01-06 09:00:00+00", '"2026-01-06T09:00:00.000000Z"'),
        ("2026-01-06 09:00:00.123456+00", '"2026-01-06T09:00:00.123456Z"'),
    ],
)
def test_each_databases_time_text_is_read(stored: str, canonical: str) -> None:
    assert _time_text(stored) == canonical


ODD_TEXT = [
    'Sévère "night" pain\\after a fall',
    "line\nbreak\ttab\r\x01\x1f\x7f",
    "emoji 🦴 and ﬁ ligature, \u2028 separator",
    "",
]


@pytest.fixture
def engine(db_url: str) -> Engine:
    engine = make_engine(db_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def append_odd_rows(engine: Engine) -> None:
    """Rows through the ordinary write path, holding text JSON escapes and instants with
    and without microseconds."""
    last_seq, last_hash = 0, "0" * 64
    with engine.begin() as connection:
        for n, odd in enumerate(ODD_TEXT * 2):
            row = chain_row(
                last_seq, last_hash, episode_id=odd or None, trigger="event", type=odd,
                actor=odd, occurred_at=datetime(2026, 1, 6, 9, 0, n, n * 1000 % 7, tzinfo=UTC),
                recorded_at=datetime(2026, 1, 6, 9, 0, tzinfo=UTC), accepted=n % 2 == 0,
                configuration_before=[odd, "care"], configuration_after=[], rules=[odd],
                reason=odd if n % 3 else None, payload={"note": odd},
                pathway_id="lumbosacral-radiculopathy", pathway_version="1.0.0",
            )  # fmt: skip
            connection.execute(AUDIT_LOG.insert().values(row))
            last_seq, last_hash = row["seq"], row["hash"]
        connection.execute(
            text("UPDATE audit_head SET last_seq = :s, last_hash = :h"),
            {"s": last_seq, "h": last_hash},
        )


def test_rows_read_back_from_each_database_hash_on_the_fast_path(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_odd_rows(engine)

    def not_needed(*_: object) -> str:
        raise AssertionError("the fast path should have matched")

    monkeypatch.setattr(chain_walk, "_reference_hash", not_needed)
    report = verify_log(engine, full=True)
    assert (report.ok, report.rows_checked) == (True, 8), report.problem


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Engine:
    """SQLite only: it keeps an instant as text of any form."""
    engine = make_engine(sqlite_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def test_a_row_the_fast_path_cannot_read_is_decided_by_the_reference_path(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    append_odd_rows(engine)
    forge.lift_guard(engine)
    with engine.begin() as connection:  # the same instant, written another way
        connection.execute(
            text("UPDATE audit_log SET recorded_at = replace(recorded_at, ' ', 'T') WHERE seq = 3")
        )
    calls: list[int] = []
    reference = chain_walk._reference_hash

    def counted(engine: Engine, spec: Any, seq: int, prev_hash: str) -> str:
        calls.append(seq)
        return reference(engine, spec, seq, prev_hash)

    monkeypatch.setattr(chain_walk, "_reference_hash", counted)
    assert verify_log(engine, full=True).ok
    assert calls == [3]
    with engine.begin() as connection:  # another instant: the reference path says so
        connection.execute(
            text("UPDATE audit_log SET recorded_at = '2026-01-06T09:00:01' WHERE seq = 3")
        )
    report = verify_log(engine, full=True)
    assert (report.ok, report.first_bad_seq) == (False, 3)


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every walk of 4 rows or more split over three processes."""
    monkeypatch.setattr(chain_parallel, "PARALLEL_FROM_ROWS", 4)
    monkeypatch.setattr(chain_parallel.os, "cpu_count", lambda: 3)


def test_a_walk_split_over_processes_answers_as_one_walk(
    engine: Engine, split: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = forge.use_key(tmp_path, monkeypatch)
    append_odd_rows(engine)  # eight rows: parts of 3, 3 and 2
    assert chain_parallel.processes_for(engine, 8) == 3
    intact = verify_log(engine, key=key, full=True, accept_unsealed=True)
    assert (intact.ok, intact.rows_checked) == (True, 8), intact.problem
    forge.edit_in_place(engine, 5, actor="dr.nobody")  # inside the second part
    report = verify_log(engine, full=True)
    assert (report.ok, report.first_bad_seq, report.rows_checked) == (False, 5, 4)
    assert report.problem is not None
    assert report.problem.endswith("hash mismatch: the row was altered")


def test_a_link_broken_where_two_parts_meet_is_caught(engine: Engine, split: None) -> None:
    append_odd_rows(engine)
    forge.rewrite(engine, 3, rechain=False, actor="dr.nobody")  # row 4 starts part two
    report = verify_log(engine, full=True)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.problem == "row 4 (no episode): prev_hash does not match row 3"


def test_rows_missing_in_a_later_part_are_caught(engine: Engine, split: None) -> None:
    append_odd_rows(engine)
    forge.lift_guard(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 7"))
    report = verify_log(engine, full=True)
    assert (report.ok, report.first_bad_seq) == (False, 7)
    assert report.problem == "row 7 missing: the log goes from row 6 to row 8"


def test_a_value_its_column_cannot_hold_is_reported_not_raised(engine: Engine) -> None:
    append_odd_rows(engine)
    forge.lift_guard(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("UPDATE audit_log SET actor = X'00ff' WHERE seq = 2"))
        else:
            connection.execute(text("UPDATE audit_log SET occurred_at = 'infinity' WHERE seq = 2"))
    report = verify_log(engine, full=True)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert report.problem is not None
    assert "cannot be read (" in report.problem
    assert report.problem.endswith("): the row was altered")
