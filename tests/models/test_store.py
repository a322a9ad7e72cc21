"""The step's transaction on the driver's cursor: values round-trip, failures undo everything."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.exc import IntegrityError

from engine.episode import Step, TimerRequest
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine
from models.repository import EpisodeRepository
from models.statements import Prepared
from models.step_sql import EPISODE, TASK, TIMER
from models.store import EpisodeChanges, Loaded, transaction
from models.tables import AuditEntry, Episode
from pathways.lumbosacral_radiculopathy.steps import open_episode

PARIS_WINTER = timezone(timedelta(hours=1))


def opening(ref: str = "r-1") -> object:
    return parse_opening(
        {
            "patient": {"ref": ref, "age": 44},
            "onset": "2026-01-05",
            "enrolled_at": "2026-01-06T09:00:00+00:00",
        }
    )


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model)) or 0


def test_values_round_trip_through_the_column_types(db_engine: Engine) -> None:
    repo = EpisodeRepository(db_engine, PathwayDefaults())
    view = repo.open(opening(), datetime(2026, 1, 6, 9, 0, 0, 123456, tzinfo=UTC))  # type: ignore[arg-type]
    with transaction(db_engine, read_only=True) as store:
        loaded = store.read(view["id"])
    state = loaded.state
    assert state.onset == date(2026, 1, 5)
    assert state.enrolled_at == datetime(2026, 1, 6, 9, tzinfo=UTC)
    assert state.patient.age == 44
    assert state.configuration == view["configuration"]
    # Instants come back aware, in UTC, microseconds kept.
    created_at = select(TASK.c.created_at).where(TASK.c.key == "first_follow_up")
    with transaction(db_engine, read_only=True) as store:
        row = store.cursor.query(Prepared(created_at, db_engine.dialect), {}).first()
    assert row is not None
    created = row["created_at"]
    assert created == datetime(2026, 1, 6, 9, 0, 0, 123456, tzinfo=UTC)
    assert created.tzinfo is not None


def test_a_literal_in_a_statement_is_filled_in_and_a_missing_value_is_named(
    db_engine: Engine,
) -> None:
    statement = select(TIMER.c.id).where(
        TIMER.c.status == "pending", TIMER.c.episode_id == bindparam("b_episode")
    )
    prepared = Prepared(statement, db_engine.dialect)
    parameters = prepared.parameters({"b_episode": "e-1"})
    values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    assert "pending" in values
    assert "e-1" in values
    with pytest.raises(KeyError, match="b_episode"):
        prepared.parameters({})


def test_an_aware_instant_in_any_zone_is_stored_in_utc(db_engine: Engine) -> None:
    repo = EpisodeRepository(db_engine, PathwayDefaults())
    local = datetime(2026, 1, 6, 10, 0, tzinfo=PARIS_WINTER)
    view = repo.open(opening(), local)  # type: ignore[arg-type]
    with db_engine.connect() as connection:
        stored = connection.scalar(select(EPISODE.c.created_at).where(EPISODE.c.id == view["id"]))
    assert stored == datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


def test_a_failed_step_writes_nothing_and_its_connection_is_reusable(db_engine: Engine) -> None:
    repo = EpisodeRepository(db_engine, PathwayDefaults())
    now = datetime(2026, 1, 6, 9, tzinfo=UTC)
    repo.open(opening(), now, episode_id="e-1")  # type: ignore[arg-type]
    episodes, audit = count(db_engine, Episode), count(db_engine, AuditEntry)
    # The same id again: the episode insert fails after its tasks and timers were sent.
    with pytest.raises(IntegrityError):
        repo.open(opening("r-2"), now, episode_id="e-1")  # type: ignore[arg-type]
    assert (count(db_engine, Episode), count(db_engine, AuditEntry)) == (episodes, audit)
    # Every pooled connection still works, and the next step commits.
    repo.open(opening("r-3"), now, episode_id="e-3")  # type: ignore[arg-type]
    assert count(db_engine, Episode) == episodes + 1


def test_an_exception_in_the_block_rolls_the_step_back(db_engine: Engine) -> None:
    repo = EpisodeRepository(db_engine, PathwayDefaults())
    now = datetime(2026, 1, 6, 9, tzinfo=UTC)
    view = repo.open(opening(), now)  # type: ignore[arg-type]
    audit = count(db_engine, AuditEntry)

    class Interrupted(Exception):
        pass

    def interrupted_step() -> None:
        with transaction(db_engine) as store:
            loaded = store.read(view["id"], for_update=True)
            store.append_audit(
                episode_id=view["id"],
                trigger="event",
                type="note",
                actor="t",
                occurred_at=now,
                recorded_at=now,
                accepted=True,
                configuration_before=loaded.state.configuration,
                configuration_after=loaded.state.configuration,
                rules=[],
                reason=None,
                payload={},
                pathway_id="p",
                pathway_version="1",
            )
            raise Interrupted

    with pytest.raises(Interrupted):
        interrupted_step()
    assert count(db_engine, AuditEntry) == audit
    assert repo.view(view["id"])["version"] == 1


def test_a_batch_nets_each_episodes_timers_before_writing() -> None:
    base = parse_opening(
        {"patient": {"ref": "n-1"}, "onset": "2026-01-05", "enrolled_at": "2026-01-06T09:00:00Z"}
    )
    opened = open_episode(base, "e-1", datetime(2026, 1, 6, 9, tzinfo=UTC), PathwayDefaults())
    changes = EpisodeChanges(Loaded(opened.state))
    at = datetime(2026, 2, 1, tzinfo=UTC)

    def step(cancel: list[str], *refs: str) -> Step:
        made = Step(state=opened.state.clone(), accepted=True)
        made.cancel_refs = cancel
        made.timers = [TimerRequest("task", at, ref) for ref in refs]
        return made

    changes.absorb(step([], "task:a", "task:b"))
    changes.absorb(step(["task:a"], "task:a2"))  # a booked then cancelled: never written
    assert [t.ref for t in changes.booked] == ["task:b", "task:a2"]
    assert changes.cancelled == {"task:a"}  # still cancels a stored timer with that ref
    assert changes.state.version == opened.state.version + 2
    changes.absorb(step(["*"]))
    assert changes.booked == []
    assert changes.cancel_all


def test_a_reader_does_not_queue_behind_a_writer(db_engine: Engine) -> None:
    from models.db import read_only

    with db_engine.connect() as writer:
        writer.execute(select(func.count()).select_from(Episode))  # holds SQLite's write lock
        started = datetime.now(UTC)
        with read_only(db_engine) as reader:
            assert reader.scalar(select(func.count()).select_from(Episode)) == 0
        assert (datetime.now(UTC) - started).total_seconds() < 1


VISIT = {"vas_leg": 6, "odi": 40}


def _outcome(engine: Engine, prefix: str) -> dict[str, list[tuple[object, ...]]]:
    """What a sweep left for the episodes whose ids start with ``prefix``, without ids."""
    queries = {
        "episode": "SELECT substr(id, 3), configuration::text, facts::text, version, phase, "
        "management, referral FROM episode WHERE id LIKE :p ORDER BY id",
        "task": "SELECT substr(episode_id, 3), key, rule, status, due_at, escalate_at, "
        "completed_at, updated_at FROM task WHERE episode_id LIKE :p ORDER BY episode_id, key",
        "due_timer": "SELECT substr(episode_id, 3), kind, ref, due_at, status, fired_at, "
        "outcome FROM due_timer WHERE episode_id LIKE :p ORDER BY episode_id, due_at, kind, ref",
        "reminder": "SELECT substr(idempotency_key, 3), task_status, due_at FROM reminder "
        "WHERE episode_id LIKE :p ORDER BY idempotency_key",
        "audit_log": "SELECT substr(episode_id, 3), trigger, type, rules::text, "
        "configuration_before::text, configuration_after::text, occurred_at FROM audit_log "
        "WHERE episode_id LIKE :p ORDER BY episode_id, seq",
    }
    with engine.connect() as connection:
        return {
            table: [tuple(row) for row in connection.execute(text(sql), {"p": prefix + "%"})]
            for table, sql in queries.items()
        }


@pytest.mark.postgres
def test_rows_written_in_bulk_are_the_rows_written_one_by_one(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL writes a batch's rows of each kind with one statement; a sweep must
    leave exactly what the row-by-row statements leave."""
    from models import store_adapters

    engine = make_engine(postgres_url)
    try:
        repo = EpisodeRepository(engine, PathwayDefaults())
        enrolled = datetime(2026, 1, 6, 9, tzinfo=UTC)
        visit = enrolled + timedelta(days=16)
        later = enrolled + timedelta(days=200)  # phase changes, reviews, escalations, ...
        outcomes = []
        for prefix, bulk in (("a-", True), ("b-", False)):
            for i in range(6):
                repo.open(opening(f"r-{i}"), enrolled, episode_id=f"{prefix}{i}")  # type: ignore[arg-type]
            # Every write of two rows or more in one statement, or none.
            monkeypatch.setattr(store_adapters, "BULK_FROM_ROWS", 2 if bulk else 10**9)
            for i in range(6):  # a follow-up visit: its item's pending timers are cancelled
                repo.apply(f"{prefix}{i}", {"type": "assessment", "data": VISIT}, visit)
            while repo.fire_batch(later, 50).claimed:
                pass
            monkeypatch.undo()
            outcomes.append(_outcome(engine, prefix))
        bulk_written, one_by_one = outcomes
        assert all(bulk_written.values())  # every kind of row was written
        assert bulk_written == one_by_one
    finally:
        engine.dispose()


def test_timers_cancelled_together_are_those_named_and_no_others(db_engine: Engine) -> None:
    repo = EpisodeRepository(db_engine, PathwayDefaults())
    now = datetime(2026, 1, 6, 9, tzinfo=UTC)
    repo.open(opening(), now, episode_id="e-1")  # type: ignore[arg-type]
    repo.open(opening("r-2"), now, episode_id="e-2")  # type: ignore[arg-type]
    query = select(TIMER.c.episode_id, TIMER.c.ref, TIMER.c.status, TIMER.c.outcome)
    with db_engine.connect() as connection:
        before = {(r.episode_id, r.ref) for r in connection.execute(query)}
    refs = sorted(ref for episode, ref in before if episode == "e-1")[:2]
    assert len(refs) == 2
    with transaction(db_engine) as store:
        store.cancel_timers("e-1", refs, now)
    with db_engine.connect() as connection:
        after = {(r.episode_id, r.ref): (r.status, r.outcome) for r in connection.execute(query)}
    cancelled = {key for key, (status, _) in after.items() if status == "cancelled"}
    assert cancelled == {("e-1", ref) for ref in refs}
    assert {after[key][1] for key in cancelled} == {"cancelled by the engine"}
