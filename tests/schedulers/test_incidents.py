"""One damaged episode never stops the others' timers: it becomes an incident, listed with
its error, counted, retried after repair, and its timers then fire once, in due order."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, func, select, text, update
from typer.testing import CliRunner

import pathways
import schedulers.logs
from cli.main import app
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit import verify_chain
from models.db import make_engine, make_session_factory
from models.incidents import list_incidents
from models.repository import EpisodeRepository
from models.tables import AuditEntry, DueTimer, Episode
from pathways.lumbosacral_radiculopathy.code import CODE
from schedulers.worker import Worker

ENROLLED = datetime(2026, 3, 2, 9, tzinfo=UTC)
SWEEP_AT = ENROLLED + timedelta(days=50)


def open_episodes(engine: Engine, count: int) -> list[str]:
    repo = EpisodeRepository(engine, PathwayDefaults())
    ids = []
    for i in range(count):
        opening = parse_opening(
            {
                "patient": {"ref": f"inc-{i}", "age": 40 + i % 40},
                "onset": (ENROLLED - timedelta(days=i % 10)).date().isoformat(),
                "enrolled_at": ENROLLED.isoformat(),
            }
        )
        ids.append(repo.open(opening, ENROLLED)["id"])
    return ids


def pending_due(engine: Engine, now: datetime, *where: Any) -> int:
    query = select(func.count()).select_from(DueTimer)
    query = query.where(DueTimer.status == "pending", DueTimer.due_at <= now, *where)
    with engine.connect() as connection:
        return connection.scalar(query) or 0


def timer_audit(engine: Engine) -> dict[str, list[datetime]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AuditEntry.episode_id, AuditEntry.type, AuditEntry.occurred_at)
            .where(AuditEntry.trigger == "timer")
            .order_by(AuditEntry.seq)
        ).all()
    assert len(set(rows)) == len(rows), "a timer was applied twice"
    by_episode: dict[str, list[datetime]] = defaultdict(list)
    for episode_id, _, due_at in rows:
        by_episode[episode_id].append(due_at)
    return by_episode


def damage(engine: Engine, episode_id: str, **values: Any) -> None:
    with engine.begin() as connection:
        connection.execute(update(Episode).where(Episode.id == episode_id).values(**values))


def stored(engine: Engine, episode_id: str, column: str) -> Any:
    with engine.connect() as connection:
        return connection.scalar(select(getattr(Episode, column)).where(Episode.id == episode_id))


def worker(engine: Engine, clock: FakeClock) -> Worker:
    return Worker(EpisodeRepository(engine, PathwayDefaults()), clock)


class Kept(logging.Handler):
    """Keeps the records of the logger it is put on, whatever else handles them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def incident_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Kept]:
    # The commands run in-process here would set logging up afresh, dropping this handler.
    monkeypatch.setattr(schedulers.logs, "configure", lambda *_, **__: None)
    logger = logging.getLogger("carepath.incidents")
    kept = Kept()
    logger.addHandler(kept)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield kept
    logger.removeHandler(kept)
    logger.setLevel(level)


def test_a_poison_pill_among_100_episodes_is_an_incident_and_fires_once_after_repair(
    engine: Engine, db_url: str, incident_log: Kept
) -> None:
    ids = open_episodes(engine, 100)
    bad = ids[37]
    configuration = stored(engine, bad, "configuration")
    damage(engine, bad, configuration=None)
    clock = FakeClock(SWEEP_AT)
    sweeper = worker(engine, clock)
    due_for_bad = pending_due(engine, clock.now(), DueTimer.episode_id == bad)
    assert due_for_bad > 1

    report = sweeper.sweep_logged()
    assert report is not None
    assert report.failed == 1
    # Every other episode's due timers fired, once each, in due order.
    assert pending_due(engine, clock.now(), DueTimer.episode_id != bad) == 0
    assert pending_due(engine, clock.now(), DueTimer.episode_id == bad) == due_for_bad
    fired = timer_audit(engine)
    assert set(fired) == set(ids) - {bad}
    assert all(dues == sorted(dues) for dues in fired.values())

    (incident,) = list_incidents(engine)
    assert (incident["kind"], incident["episode_id"]) == ("episode", bad)
    assert incident["error"] == "configuration is not a list of state ids"
    assert incident["attempts"] == 1
    assert incident["next_retry_at"] == (clock.now() + timedelta(minutes=1)).isoformat()
    assert incident["resolved"] is False
    with engine.connect() as connection:
        first_due = connection.scalar(
            select(DueTimer.id).where(DueTimer.episode_id == bad).order_by(DueTimer.due_at).limit(1)
        )
    assert incident["timer_id"] == first_due
    exposed = generate_latest(sweeper.metrics.registry).decode()
    assert 'carepath_open_incidents{kind="episode"} 1.0' in exposed
    assert 'carepath_failed_steps_total{kind="episode"} 1.0' in exposed
    assert 'carepath_worker_sweeps_total{outcome="ok"} 1.0' in exposed
    assert report.open_incidents == 1

    # The incident holds back its own episode only: no spinning, no second attempt yet.
    again = sweeper.sweep()
    assert (again.fired, again.failed, again.batches) == (0, 0, 1)

    # At its retry time, still damaged: another attempt, a longer wait.
    clock.advance(timedelta(minutes=1))
    retried = sweeper.sweep()
    assert retried.failed == 1
    assert [i["change"] for i in retried.incidents] == ["retried"]
    (incident,) = list_incidents(engine)
    assert incident["attempts"] == 2
    assert incident["next_retry_at"] == (clock.now() + timedelta(minutes=2)).isoformat()

    # Repaired, and retried by hand: its timers fire at the next sweep, once, in order.
    damage(engine, bad, configuration=configuration)
    env = {"CAREPATH_DATABASE_URL": db_url}
    answer = CliRunner().invoke(app, ["incidents", "--retry", str(incident["id"])], env=env)
    assert answer.exit_code == 0, answer.stderr
    repaired = sweeper.sweep()
    assert repaired.fired == due_for_bad
    assert [i["change"] for i in repaired.incidents] == ["resolved"]
    assert pending_due(engine, clock.now()) == 0
    fired = timer_audit(engine)
    assert len(fired[bad]) == due_for_bad
    assert fired[bad] == sorted(fired[bad])
    assert list_incidents(engine) == []
    (closed,) = list_incidents(engine, include_resolved=True)
    assert (closed["resolved"], closed["resolution"]) == (True, "retried")
    sweeper.count_incidents(clock.now())
    assert (
        'carepath_open_incidents{kind="episode"} 0.0'
        in generate_latest(sweeper.metrics.registry).decode()
    )
    with make_session_factory(engine)() as session:
        assert verify_chain(session).ok
    # Logged once per change, naming the episode.
    changes = [(r.getMessage(), r.episode_id)  # type: ignore[attr-defined]
               for r in incident_log.records]  # fmt: skip
    assert changes == [
        ("incident opened", bad), ("incident retried", bad), ("incident retry requested", bad),
        ("incident resolved", bad),
    ]  # fmt: skip


# Every shape the damage can take, each written as an attacker with database access would.
PORTABLE_DAMAGE = {
    "configuration not a list": ({"configuration": {"care": True}}, "configuration is not"),
    "unknown state ids": ({"configuration": ["care", "nowhere"]}, "unknown state id(s): nowhere"),
    "history not an object": ({"history": [1, 2]}, "history is not an object"),
    "facts not an object": ({"facts": "x"}, "facts is not an object"),
    "patient a JSON string": ({"patient": "P-1"}, "patient is not an object"),
    "clinic time zone unknown": ({"clinic_timezone": "Mars/Olympus"}, "Mars/Olympus"),
    "patient's age not a number": ({"patient": {"age": "old"}}, "patient.age"),
}
SQLITE_DAMAGE = {
    "onset not a date": ("onset = 'garbage'", "does not parse"),
    "enrolled_at not an instant": ("enrolled_at = 'yesterday'", "does not parse"),
    "patient not JSON": ("patient = '{not json'", "does not parse"),
    "version not a number": ("version = 'seven'", "version is not a whole number"),
    "status none of the statuses": ("status = 'weird'", "status is not"),
}


@pytest.mark.parametrize("shape", PORTABLE_DAMAGE)
def test_every_shape_of_damage_is_an_incident_naming_the_episode(
    engine: Engine, shape: str
) -> None:
    values, reason = PORTABLE_DAMAGE[shape]
    ids = open_episodes(engine, 3)
    damage(engine, ids[1], **values)
    assert_one_incident_naming(engine, ids, reason)


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("shape", SQLITE_DAMAGE)
def test_every_shape_of_damage_sqlite_stores_is_an_incident_naming_the_episode(
    sqlite_engine: Engine, shape: str
) -> None:
    assignment, reason = SQLITE_DAMAGE[shape]
    ids = open_episodes(sqlite_engine, 3)
    with sqlite_engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        connection.execute(text(f"UPDATE episode SET {assignment} WHERE id = :id"),
                           {"id": ids[1]})  # fmt: skip
    assert_one_incident_naming(sqlite_engine, ids, reason)


def assert_one_incident_naming(engine: Engine, ids: list[str], reason: str) -> None:
    """A sweep fires the healthy episodes and makes one incident of ``ids[1]``."""
    clock = FakeClock(SWEEP_AT)
    report = worker(engine, clock).sweep()
    assert report.failed == 1
    (incident,) = list_incidents(engine)
    assert incident["episode_id"] == ids[1]
    assert reason in incident["error"]
    assert "\n" not in incident["error"]
    assert pending_due(engine, clock.now(), DueTimer.episode_id != ids[1]) == 0
    assert set(timer_audit(engine)) == {ids[0], ids[2]}


def test_a_step_that_raises_is_a_timer_incident_and_the_rest_commit(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = open_episodes(engine, 5)
    real = CODE.fire_timer

    def fire_timer(state: Any, *args: Any) -> Any:
        if state.id == ids[2]:
            raise RuntimeError("handler failed\nwith a second line")
        return real(state, *args)

    broken = replace(CODE, fire_timer=fire_timer)
    monkeypatch.setattr(pathways, "code", lambda pathway_id: broken)
    clock = FakeClock(SWEEP_AT)
    report = worker(engine, clock).sweep()
    assert report.failed == 1
    (incident,) = list_incidents(engine)
    assert (incident["kind"], incident["episode_id"]) == ("timer", ids[2])
    assert incident["error"] == "RuntimeError: handler failed"
    assert set(timer_audit(engine)) == set(ids) - {ids[2]}


def test_a_write_the_database_refuses_fails_its_episode_only(engine: Engine) -> None:
    ids = open_episodes(engine, 4)
    refused = ids[1]
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON episode "
                f"WHEN NEW.id = '{refused}' BEGIN SELECT RAISE(ABORT, 'refused by a check'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = '{refused}' THEN RAISE EXCEPTION 'refused by a check' "
                "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON episode "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    clock = FakeClock(SWEEP_AT)
    report = worker(engine, clock).sweep()
    assert report.failed == 1
    (incident,) = list_incidents(engine)
    assert (incident["kind"], incident["episode_id"]) == ("timer", refused)
    assert "refused by a check" in incident["error"]
    assert pending_due(engine, clock.now(), DueTimer.episode_id != refused) == 0
    assert set(timer_audit(engine)) == set(ids) - {refused}


def test_an_incident_resolved_by_hand_lets_its_timers_be_claimed_again(
    engine: Engine, db_url: str
) -> None:
    ids = open_episodes(engine, 2)
    facts = stored(engine, ids[0], "facts")
    damage(engine, ids[0], facts=[])
    clock = FakeClock(SWEEP_AT)
    sweeper = worker(engine, clock)
    sweeper.sweep()
    (incident,) = list_incidents(engine)
    damage(engine, ids[0], facts=facts)
    env = {"CAREPATH_DATABASE_URL": db_url}
    listed = CliRunner().invoke(app, ["incidents"], env=env)
    assert listed.exit_code == 0, listed.stderr
    assert [i["id"] for i in json.loads(listed.stdout)] == [incident["id"]]
    resolved = CliRunner().invoke(app, ["incidents", "--resolve", str(incident["id"])], env=env)
    assert resolved.exit_code == 0, resolved.stderr
    assert json.loads(resolved.stdout)["resolution"] == "by hand"
    again = CliRunner().invoke(app, ["incidents", "--resolve", str(incident["id"])], env=env)
    assert again.exit_code == 1
    assert f"no open incident with id {incident['id']}" in again.stderr
    assert sweeper.sweep().fired > 0
    assert pending_due(engine, clock.now()) == 0
