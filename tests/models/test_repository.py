"""The unit of work on both backends: one transaction per step, nothing written on bad input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.clinic_time import add_days, clinic_noon
from engine.errors import EpisodeNotFound, InvalidEvent, StaleEpisode, UnreadableEpisode
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit import HEAD_MISSING, verify_chain
from models.db import make_engine, make_session_factory
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow, DueTimer, Episode, Task

ONSET = date(2026, 1, 5)


def day(n: int) -> datetime:
    return clinic_noon(add_days(ONSET, n), UTC)  # type: ignore[arg-type]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def repo(factory: sessionmaker[Session]) -> EpisodeRepository:
    return EpisodeRepository(factory, PathwayDefaults())


def open_episode(repo: EpisodeRepository, **patient: object) -> dict:
    opening = parse_opening(
        {
            "patient": {"ref": "r-1", **patient},
            "onset": ONSET.isoformat(),
            "enrolled_at": day(1).isoformat(),
            "coordinator": "nurse.jones",
        }
    )
    return repo.open(opening, day(1))


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assessment(vas_leg: int = 6, odi: int = 40) -> dict:
    return {"type": "assessment", "data": {"vas_leg": vas_leg, "odi": odi}, "actor": "dr.gp"}


def test_opening_writes_the_episode_its_tasks_timers_and_one_audit_row(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    assert "acute" in view["configuration"]
    assert view["version"] == 1
    assert "first_follow_up" in [d["key"] for d in view["due"]]
    assert repo.view(view["id"]) == view
    with factory() as session:
        tasks = session.scalars(select(Task).where(Task.episode_id == view["id"])).all()
        assert {t.key for t in tasks} >= {"first_follow_up", "six_week_review"}
        assert all(t.owner == "nurse.jones" for t in tasks)
        assert session.scalar(select(func.count()).select_from(DueTimer)) >= 2
        (audit,) = session.scalars(select(AuditEntry)).all()
        assert (audit.trigger, audit.type, audit.actor) == ("open", "open", "system")
        assert audit.configuration_before == []


def test_an_accepted_event_bumps_the_version_and_extends_the_chain(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    step, after = repo.apply(view["id"], assessment(), day(15))
    assert step.accepted
    assert after["version"] == 2
    assert repo.view(view["id"])["version"] == 2
    with factory() as session:
        result = verify_chain(session)
        assert result.ok
        assert result.rows_checked == 2
        event = session.scalars(select(ClinicalEventRow)).one()
        assert event.accepted
        assert event.actor == "dr.gp"
    done = {d["key"]: d["status"] for d in repo.view(view["id"])["due"]}
    assert done["first_follow_up"] == "done"


def test_invalid_input_names_the_field_and_writes_nothing(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    with pytest.raises(InvalidEvent) as caught:
        repo.apply(view["id"], assessment(vas_leg=14), day(15))
    assert caught.value.field == "data.vas_leg"
    with pytest.raises(InvalidEvent) as caught:
        repo.apply(view["id"], {**assessment(), "occurred_at": "2025-12-01T00:00:00Z"}, day(15))
    assert caught.value.field == "occurred_at"
    assert repo.view(view["id"])["version"] == 1
    assert count(factory, AuditEntry) == 1
    assert count(factory, ClinicalEventRow) == 0


def test_a_refusal_is_recorded_but_changes_nothing(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    step, after = repo.apply(view["id"], {"type": "order", "data": {"kind": "mri"}}, day(17))
    assert not step.accepted
    assert "IMG-NO-EARLY" in step.rules
    assert step.eligible_from is not None
    assert after["version"] == 1
    assert after["configuration"] == view["configuration"]
    with factory() as session:
        audit = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert [a.accepted for a in audit] == [True, False]
        assert audit[-1].reason
        assert not session.scalars(select(ClinicalEventRow)).one().accepted


def test_a_corrupt_stored_configuration_is_refused_on_load(
    repo: EpisodeRepository, engine: Engine, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    with factory() as session, session.begin():
        row = session.get(Episode, view["id"])
        assert row is not None
        row.configuration = ["care", "acute", "subacute"]
    with pytest.raises(UnreadableEpisode, match=view["id"]):
        repo.view(view["id"])
    with pytest.raises(UnreadableEpisode, match="parallel care needs all its regions"):
        repo.apply(view["id"], assessment(), day(15))
    assert count(factory, AuditEntry) == 1


def test_a_step_on_an_unknown_episode_or_without_a_chain_head_says_which(
    repo: EpisodeRepository, engine: Engine, factory: sessionmaker[Session]
) -> None:
    # The step reads the episode and the audit chain's head in one statement: a row
    # missing from either must still be told apart.
    view = open_episode(repo)
    with pytest.raises(EpisodeNotFound):
        repo.apply("no-such-episode", assessment(), day(15))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_head"))
    with pytest.raises(RuntimeError, match=re.escape(HEAD_MISSING)):
        repo.apply(view["id"], assessment(), day(15))
    assert repo.view(view["id"])["version"] == 1
    assert count(factory, ClinicalEventRow) == 0


def test_an_episode_saved_and_reloaded_carries_on(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo, age=50, prior_lbp=True)
    repo.apply(view["id"], assessment(7, 44), day(15))
    # A new repository on the same database: nothing kept in memory.
    again = EpisodeRepository(factory, PathwayDefaults())
    step, after = again.apply(view["id"], assessment(3, 20), day(29))
    assert step.accepted
    assert "FU-RESPONSE" in step.rules
    assert after["version"] == 3
    assert after["risk_markers"] == repo.view(view["id"])["risk_markers"]


def test_timers_move_the_phase_at_six_weeks_and_are_audited(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    assert all(e["phase"] == "acute" for e in repo.fire_due(day(20)))
    entries = repo.fire_due(day(43))
    assert repo.view(view["id"])["phase"] == "subacute"
    assert any(e["type"] == "phase:subacute" and e["trigger"] == "timer" for e in entries)
    with factory() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.trigger == "timer")).all()
        assert any(r.type == "phase:subacute" and r.actor == "scheduler" for r in rows)
        assert verify_chain(session).ok
        fired = session.scalars(select(DueTimer).where(DueTimer.ref == "phase:subacute")).one()
        assert fired.status == "fired"
        assert fired.fired_at is not None
    # Firing again does nothing: every due timer was claimed once.
    assert repo.fire_due(day(43)) == []


def test_resolving_cancels_pending_timers(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    step, after = repo.apply(view["id"], {"type": "resolve", "data": {"reason": "better"}}, day(9))
    assert after["status"] == "resolved"
    # Whatever is left pending fires as a no-op and changes nothing.
    assert repo.fire_due(day(200)) == []
    assert repo.view(view["id"])["status"] == "resolved"
    with factory() as session:
        assert not session.scalars(select(DueTimer).where(DueTimer.status == "pending")).all()
        assert verify_chain(session).ok


def test_a_stale_version_is_refused(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    view = open_episode(repo)
    repo.apply(view["id"], assessment(), day(15), expected_version=1)
    with pytest.raises(StaleEpisode) as caught:
        repo.apply(view["id"], assessment(), day(16), expected_version=1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert count(factory, AuditEntry) == 2


def test_the_database_was_not_left_with_open_transactions(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def test_fire_due_respects_the_limit(repo: EpisodeRepository) -> None:
    open_episode(repo)
    open_episode(repo)
    before = repo.fire_due(day(1) + timedelta(days=60), limit=1)
    assert len(before) <= 1


def test_the_list_filter_columns_follow_every_step(
    repo: EpisodeRepository, factory: sessionmaker[Session]
) -> None:
    """A step rewrites only the summary columns it moved; the rest must still be right."""
    view = open_episode(repo)
    ces = {"urinary_retention": True, "saddle_anaesthesia": False}
    steps = [
        (assessment(), day(14)),  # moves none of them
        ({**assessment(8, 62), "data": {"vas_leg": 8, "odi": 62, "ces_screen": ces}}, day(21)),
        ({"type": "resolve", "data": {"reason": "referred on"}, "actor": "dr.gp"}, day(22)),
    ]
    seen = set()
    for payload, at in steps:
        _, after = repo.apply(view["id"], payload, at)
        with factory() as session:
            row = session.get(Episode, view["id"])
            assert row is not None
            stored = (row.status, row.phase, row.management, row.referral, row.red_flag)
        state = repo.load(view["id"])
        assert stored == (
            state.status,
            state.phase,
            state.management,
            state.referral,
            state.in_red_flag,
        )
        seen.add(stored)
    assert len(seen) == 3  # each step after the first moved at least one column
