"""The audit log: append-only in the database, and a hash chain that names the first bad row."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.audit import (
    GENESIS_HASH,
    append_audit,
    canonical_json,
    entry_hash,
    payload_digest,
    verify_chain,
)
from models.audit_verify import ChainReport
from models.tables import AuditEntry, AuditHead

PARIS = ZoneInfo("Europe/Paris")
# A clinic-local instant with microseconds: the hash must survive the UTC round trip.
MONDAY_MORNING = datetime(2025, 3, 3, 9, 15, 30, 123456, tzinfo=PARIS)


def append_step(session: Session, episode_id: str, n: int) -> AuditEntry:
    return append_audit(
        session,
        episode_id=episode_id,
        trigger="open" if n == 0 else "event",
        type="enrol" if n == 0 else "follow_up_recorded",
        actor="dr.martin",
        occurred_at=MONDAY_MORNING + timedelta(days=n),
        recorded_at=MONDAY_MORNING + timedelta(days=n, minutes=5),
        accepted=True,
        configuration_before=[] if n == 0 else ["active", "conservative_care"],
        configuration_after=["active", "conservative_care"],
        rules=["FU-ACTIVE"],
        reason=None,
        payload={"vas_leg": 7 - n, "note": "douleur à la jambe", "on": date(2025, 3, 3)},
        pathway_id="lumbosacral-radiculopathy",
        pathway_version="1.0",
    )


@pytest.fixture
def five_rows(session_factory: sessionmaker[Session]) -> list[AuditEntry]:
    """Five steps over two episodes, committed in two transactions of one session."""
    with session_factory() as session:
        with session.begin():
            rows = [append_step(session, "ep-a", 0), append_step(session, "ep-b", 0)]
        with session.begin():
            rows += [
                append_step(session, "ep-a", 1),
                append_step(session, "ep-b", 1),
                append_step(session, "ep-a", 2),
            ]
    return rows


def verify(session_factory: sessionmaker[Session], batch_size: int = 5000) -> ChainReport:
    with session_factory() as session:
        return verify_chain(session, batch_size=batch_size)


def lift_append_only_guard(engine: Engine) -> None:
    """What an intruder with the database owner's rights could do."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
        else:
            connection.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")


def log_snapshot(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text("SELECT * FROM audit_log ORDER BY seq"))]


def test_an_intact_log_verifies(
    five_rows: list[AuditEntry], session_factory: sessionmaker[Session]
) -> None:
    assert [row.seq for row in five_rows] == [1, 2, 3, 4, 5]
    assert five_rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(five_rows, five_rows[1:], strict=False))
    result = verify(session_factory)
    assert result.ok, result.problem
    assert result.rows_checked == 5
    assert result.first_bad_seq is None
    with session_factory() as session:
        head = session.get_one(AuditHead, 1)
        assert (head.last_seq, head.last_hash) == (5, five_rows[-1].hash)


def test_verification_pages_through_the_log(
    five_rows: list[AuditEntry], session_factory: sessionmaker[Session]
) -> None:
    for batch_size in (1, 2, 5):
        result = verify(session_factory, batch_size=batch_size)
        assert (result.ok, result.rows_checked) == (True, 5)


def test_an_empty_log_verifies(session_factory: sessionmaker[Session]) -> None:
    assert verify(session_factory).ok
    assert verify(session_factory).rows_checked == 0


def test_the_database_refuses_to_change_or_delete_a_row(
    five_rows: list[AuditEntry], db_engine: Engine
) -> None:
    before = log_snapshot(db_engine)
    statements = [
        "UPDATE audit_log SET actor = 'someone.else' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 4",
        "DELETE FROM audit_log",
    ]
    if db_engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(IntegrityError, match="append-only"), db_engine.begin() as connection:
            connection.exec_driver_sql(statement)
    assert log_snapshot(db_engine) == before


def test_an_altered_row_is_named(
    five_rows: list[AuditEntry], db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    lift_append_only_guard(db_engine)
    with db_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_log SET actor = 'dr.nobody' WHERE seq = 3")

    result = verify(session_factory)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.problem == "row 3 (episode ep-a): hash mismatch: the row was altered"


def test_a_rewritten_row_breaks_the_next_link(
    five_rows: list[AuditEntry], db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    # A careful intruder recomputes the altered row's own hash; the next row still points
    # at the old one.
    lift_append_only_guard(db_engine)
    with session_factory() as session, session.begin():
        row = session.get_one(AuditEntry, 3)
        row.accepted = False
        fields = {c.key: getattr(row, c.key) for c in AuditEntry.__table__.columns}
        row.hash = entry_hash(fields, row.prev_hash)

    result = verify(session_factory)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "row 4 (episode ep-b): prev_hash does not match row 3"


def test_a_deleted_row_is_named(
    five_rows: list[AuditEntry], db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    lift_append_only_guard(db_engine)
    with db_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_log WHERE seq = 4")

    result = verify(session_factory)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "row 4 missing: the log goes from row 3 to row 5"


def test_rows_cut_off_the_end_are_caught_by_the_head(
    five_rows: list[AuditEntry], db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    lift_append_only_guard(db_engine)
    with db_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit_log WHERE seq = 5")

    result = verify(session_factory)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "audit_head says 5 rows, log has 4"


def test_a_head_that_disagrees_with_the_log_is_caught(
    five_rows: list[AuditEntry], db_engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with db_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_head SET last_seq = 6")
    result = verify(session_factory)
    assert (result.ok, result.problem) == (False, "audit_head says 6 rows, log has 5")

    with db_engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE audit_head SET last_seq = 5, last_hash = '{'f' * 64}'")
    result = verify(session_factory)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "audit_head hash does not match row 5"


def test_hashes_survive_a_reload(
    five_rows: list[AuditEntry], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session:
        stored = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        for appended, row in zip(five_rows, stored, strict=True):
            assert row.occurred_at == appended.occurred_at
            assert row.occurred_at.tzinfo is UTC
            assert row.occurred_at.microsecond == 123456
            fields = {c.key: getattr(row, c.key) for c in AuditEntry.__table__.columns}
            assert entry_hash(fields, row.prev_hash) == appended.hash == row.hash


def test_the_payload_is_kept_as_a_digest(five_rows: list[AuditEntry]) -> None:
    payload = {"on": date(2025, 3, 3), "note": "douleur à la jambe", "vas_leg": 7}
    assert five_rows[0].payload_digest == payload_digest(payload)
    assert payload_digest(dict(reversed(payload.items()))) == payload_digest(payload)


def test_canonical_json_is_one_text_per_value() -> None:
    assert canonical_json(MONDAY_MORNING) == '"2025-03-03T08:15:30.123456Z"'
    assert canonical_json(datetime(2025, 3, 3, tzinfo=UTC)).endswith('.000000Z"')
    assert (
        canonical_json({"b": [1, "é"], "a": date(2025, 3, 3)}) == '{"a":"2025-03-03","b":[1,"é"]}'
    )
    with pytest.raises(ValueError, match="naive"):
        canonical_json(datetime(2025, 3, 3, 9, 0))


def test_a_naive_instant_is_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, pytest.raises(ValueError, match="naive"):
        append_audit(
            session,
            episode_id="ep-a",
            trigger="event",
            type="follow_up_recorded",
            actor="dr.martin",
            occurred_at=datetime(2025, 3, 3, 9, 0),
            recorded_at=MONDAY_MORNING,
            accepted=True,
            configuration_before=[],
            configuration_after=[],
            rules=[],
            reason=None,
            payload={},
            pathway_id="lumbosacral-radiculopathy",
            pathway_version="1.0",
        )


def test_concurrent_appenders_take_turns(session_factory: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def clinic(episode_id: str) -> None:
        try:
            for n in range(10):
                with session_factory() as session, session.begin():
                    append_step(session, episode_id, n)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=clinic, args=(f"ep-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    result = verify(session_factory)
    assert (result.ok, result.rows_checked) == (True, 30), result.problem
