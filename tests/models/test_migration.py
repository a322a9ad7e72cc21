"""Migrating episodes between pathway versions, on both backends: the dry run changes
nothing and says what would change, applying does what it said, once; an episode whose
record the target version would decide otherwise is left, with the reason; a migrated
episode is the episode it would be had it run on the target from the start, and replays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, delete, select

from engine.errors import EpisodeNotFound
from engine.events import parse_opening
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.audit_verify import verify_log
from models.db import make_engine, read_only
from models.migration import Planned, migrate, rerun_record
from models.replay import replay_episodes
from models.replay_history import read_histories
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow, DueTimer
from tests.models.replay_course import (
    Steps,
    contents,
    course,
    day,
    open_on,
    play,
    random_histories,
    visit,
)

DEFAULTS = PathwayDefaults()
NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")  # a draft too may be the target, as on a review install


@pytest.fixture
def repo(db_engine: Engine) -> EpisodeRepository:
    return EpisodeRepository(db_engine, DEFAULTS)


def opened(repo: EpisodeRepository, version: str, onset_days_ago: int, ref: str = "P-1") -> str:
    onset = (NOW - timedelta(days=onset_days_ago)).date().isoformat()
    opening = {"patient": {"ref": ref, "age": 50}, "onset": onset,
               "enrolled_at": NOW.isoformat(), "pathway_version": version}  # fmt: skip
    return str(repo.open(parse_opening(opening), NOW)["id"])


def plans(engine: Engine, at: datetime, **options: Any) -> tuple[list[Planned], Any]:
    seen: list[Planned] = []
    summary = migrate(engine, "1.1.0", at, defaults=DEFAULTS, on_episode=seen.append, **options)
    return seen, summary


def pending_timers(engine: Engine, episode: str) -> list[tuple[Any, ...]]:
    query = select(DueTimer.kind, DueTimer.ref, DueTimer.due_at, DueTimer.payload).where(
        DueTimer.episode_id == episode, DueTimer.status == "pending"
    )
    with read_only(engine) as connection:
        return sorted(tuple(row) for row in connection.execute(query))


def standing(repo: EpisodeRepository, episode: str) -> dict[str, Any]:
    """What a migration must make of an episode: all of it but its identity and counters."""
    view = repo.view(episode)
    state = repo.load(episode)
    return {
        "configuration": state.configuration,
        "history": state.history,
        "facts": state.facts,
        "due": view["due"],
        "recommendations": view["recommendations"],
        "pathway": view["pathway"],
        "timers": pending_timers(repo.engine, episode),
    }


# --------------------------------------------------------------------------------------------
# Courses 1.1.0 decides otherwise than 1.0.0, each taken on an episode of either version


def red_flag_referral(repo: EpisodeRepository, episode: str) -> datetime:
    """RF-CARE: a referral made under a cauda equina flag is kept when the flag clears."""
    retention = {"vas_leg": 8, "odi": 60, "ces_screen": {"urinary_retention": True}}
    repo.apply(episode, {"type": "assessment", "data": retention}, NOW)
    referred = {"service": "spinal surgery", "urgency": "emergency"}
    repo.apply(episode, {"type": "referral_sent", "data": referred}, NOW + timedelta(hours=1))
    cleared = {"type": "red_flag_cleared", "data": {"kind": "ces", "note": "MRI clear"}}
    repo.apply(episode, cleared, NOW + timedelta(hours=5))
    return NOW + timedelta(days=3)


def early_review(repo: EpisodeRepository, episode: str) -> datetime:
    """FU-ACTIVE across the 12-week line: the next review one interval after the visit."""
    at = NOW + timedelta(days=15)
    repo.fire_due(at)
    repo.apply(episode, visit(5, 40), at)
    return at + timedelta(days=1)


Course = Callable[[EpisodeRepository, str], datetime]
COURSES: list[tuple[Course, int]] = [(red_flag_referral, 20), (early_review, 60)]


@pytest.mark.parametrize(("take", "onset_days_ago"), COURSES)
def test_a_migrated_episode_is_what_it_would_be_had_it_run_on_the_target_from_the_start(
    repo: EpisodeRepository, take: Course, onset_days_ago: int
) -> None:
    old = opened(repo, "1.0.0", onset_days_ago, "P-old")
    new = opened(repo, "1.1.0", onset_days_ago, "P-new")
    take(repo, old)
    at = take(repo, new)
    repo.fire_due(at)
    assert standing(repo, old) != standing(repo, new)  # the versions differ on this course
    seen, summary = plans(repo.engine, at)
    assert [p.episode_id for p in seen] == [old]
    assert (summary.migrated, summary.changed, summary.left) == (1, 1, 0)
    assert standing(repo, old) == standing(repo, new)


def test_a_dry_run_changes_nothing_and_applying_does_what_it_said_once(
    repo: EpisodeRepository,
) -> None:
    episodes = [opened(repo, "1.0.0", days, f"P-{days}") for _, days in COURSES]
    at = max(take(repo, episode) for (take, _), episode in zip(COURSES, episodes, strict=True))
    repo.fire_due(at)
    before = contents(repo.engine)
    dry, summary = plans(repo.engine, at, dry_run=True)
    assert contents(repo.engine) == before  # every row of every table
    assert (summary.candidates, summary.migrated, summary.changed) == (2, 2, 2)
    assert all(p.outcome == "would migrate" for p in dry)
    referral = next(p for p in dry if p.episode_id == episodes[0]).changes
    assert referral is not None
    assert referral.configuration is not None
    assert "referred" in set(referral.configuration[1]) - set(referral.configuration[0])
    review = next(p for p in dry if p.episode_id == episodes[1]).changes
    assert review is not None
    assert [m["key"] for m in review.due_moved] == ["periodic_review_1"]
    assert review.due_moved[0]["before"]["rule"] == "FU-3M"
    assert review.due_moved[0]["after"]["rule"] == "FU-ACTIVE"
    assert review.timers_set
    assert review.timers_cancelled

    applied, _ = plans(repo.engine, at)
    assert [p.as_json() | {"outcome": "-"} for p in applied] == [
        p.as_json() | {"outcome": "-"} for p in dry
    ]
    assert all(p.outcome == "migrated" for p in applied)
    after = contents(repo.engine)
    again, summary = plans(repo.engine, at + timedelta(hours=1))
    assert (again, summary.candidates) == ([], 0)
    assert contents(repo.engine) == after


def test_the_migration_is_one_audit_row_the_chain_holds_and_the_episode_replays(
    repo: EpisodeRepository,
) -> None:
    episode = opened(repo, "1.0.0", 20)
    at = red_flag_referral(repo, episode)
    plans(repo.engine, at, actor="governance.lee")
    query = select(AuditEntry).where(AuditEntry.episode_id == episode).order_by(AuditEntry.seq)
    with read_only(repo.engine) as connection:
        rows = list(connection.execute(query).mappings())
    [moved] = [r for r in rows if r["trigger"] == "migration"]
    assert moved == rows[-1]
    said = (moved["type"], moved["actor"], moved["pathway_version"])
    assert said == ("1.0.0->1.1.0", "governance.lee", "1.1.0")
    assert "referred" in set(moved["configuration_after"]) - set(moved["configuration_before"])
    assert verify_log(repo.engine).ok
    # Steps after the migration run on 1.1.0, and the whole record replays.
    repo.apply(episode, visit(3, 20), at + timedelta(days=1))
    assert repo.view(episode)["pathway"]["version"] == "1.1.0"
    report = replay_episodes(repo.engine, [episode], DEFAULTS)
    assert report.ok, report.differing[0].line()


SCS = {"type": "procedure", "data": {"kind": "scs"}}


def test_an_episode_whose_record_the_target_would_decide_otherwise_is_left_with_the_reason(
    repo: EpisodeRepository,
) -> None:
    stimulated = opened(repo, "1.0.0", 100, "P-scs")
    step, _ = repo.apply(stimulated, SCS, NOW)  # 1.0.0 accepts it; 1.1.0 refuses it
    assert step.accepted
    other = opened(repo, "1.0.0", 20, "P-other")
    before = contents(repo.engine)
    seen, summary = plans(repo.engine, NOW + timedelta(hours=1))
    [left] = [p for p in seen if p.episode_id == stimulated]
    assert left.outcome == "left"
    assert left.left is not None
    assert "cannot be migrated safely" in left.left
    assert "procedure recorded" in left.left
    assert "SCS-POSTOP" in left.left
    assert (summary.migrated, summary.left) == (1, 1)
    assert repo.view(stimulated)["pathway"]["version"] == "1.0.0"  # left as it was
    assert repo.view(other)["pathway"]["version"] == "1.1.0"
    assert contents(repo.engine)["episode"] != before["episode"]  # the other one moved


def test_ended_episodes_stay_and_named_ones_are_each_reported(repo: EpisodeRepository) -> None:
    ended = opened(repo, "1.0.0", 20, "P-ended")
    repo.apply(ended, {"type": "resolve", "data": {"reason": "recovered"}}, NOW)
    current = opened(repo, "1.1.0", 20, "P-current")
    active = opened(repo, "1.0.0", 20, "P-active")
    seen, summary = plans(repo.engine, NOW, dry_run=True)
    assert [p.episode_id for p in seen] == [active]
    seen, summary = plans(repo.engine, NOW, dry_run=True, ids=[ended, current, active])
    reasons = {p.episode_id: p.left for p in seen}
    assert reasons[active] is None
    assert "has ended (resolved)" in str(reasons[ended])
    assert "already on 1.1.0" in str(reasons[current])
    assert (summary.candidates, summary.migrated, summary.left) == (3, 1, 2)
    with pytest.raises(EpisodeNotFound):
        plans(repo.engine, NOW, ids=["no-such-episode"])


def test_a_draft_is_no_target_where_drafts_are_not_allowed(
    repo: EpisodeRepository, monkeypatch: pytest.MonkeyPatch, with_draft: None
) -> None:
    opened(repo, "1.0.0", 20)
    monkeypatch.delenv(DRAFTS_ENV)
    with pytest.raises(ValueError, match="draft, not yet published"):
        migrate(repo.engine, "1.2.0", NOW)
    with pytest.raises(ValueError, match="not a version"):
        migrate(repo.engine, "9.9.9", NOW)


def test_an_unreadable_record_is_left_and_the_others_migrate(repo: EpisodeRepository) -> None:
    broken = opened(repo, "1.0.0", 20, "P-broken")
    fine = opened(repo, "1.0.0", 20, "P-fine")
    for episode in (broken, fine):
        repo.apply(episode, visit(6, 40), NOW + timedelta(hours=1))
    with repo.engine.begin() as connection:  # the event as received is lost
        connection.execute(delete(ClinicalEventRow).where(ClinicalEventRow.episode_id == broken))
    seen, summary = plans(repo.engine, NOW + timedelta(hours=2))
    reasons = {p.episode_id: p.left for p in seen}
    assert reasons[fine] is None
    assert "its record cannot be taken again: clinical_event holds no further event" in str(
        reasons[broken]
    )
    assert (summary.migrated, summary.left) == (1, 1)


# --------------------------------------------------------------------------------------------
# Taken again on its own version, a record gives the episode as stored


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_a_record_taken_again_on_its_own_version_gives_the_stored_episode(
    repo: EpisodeRepository, version: str
) -> None:
    episode = course(repo, version)
    [history] = read_histories(repo.engine, [episode])
    again = rerun_record(history, version, DEFAULTS)
    stored = history.state()
    assert again.unsafe is None
    assert again.state.configuration == stored.configuration
    assert again.state.history == stored.history
    assert again.state.facts == stored.facts
    assert {k: t.view() for k, t in again.state.tasks.items()} == {
        k: t.view() for k, t in stored.tasks.items()
    }


# --------------------------------------------------------------------------------------------
# Random histories across a migration


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=random_histories(10), after=random_histories(10))
def test_random_histories_replay_across_a_migration(
    sqlite_url: str, before: Steps, after: Steps
) -> None:
    engine = make_engine(sqlite_url)
    try:
        repo = EpisodeRepository(engine, DEFAULTS)
        episode = open_on(repo, "1.0.0")
        elapsed = play(repo, episode, before, 1)
        seen, _ = plans(engine, day(elapsed, 1), ids=[episode])
        elapsed = play(repo, episode, after, elapsed + 1)
        repo.fire_due(day(elapsed + 90))
        migrated = seen[0].outcome == "migrated"
        assert repo.view(episode)["pathway"]["version"] == ("1.1.0" if migrated else "1.0.0")
        report = replay_episodes(engine, [episode], DEFAULTS)
        assert report.ok, report.differing[0].line()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_write_the_database_refuses_leaves_that_episode_and_the_others_migrate(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import migration

    engine = make_engine(postgres_url)
    try:
        repo = EpisodeRepository(engine, DEFAULTS)
        refused, fine = opened(repo, "1.0.0", 20, "P-refused"), opened(repo, "1.0.0", 20, "P-fine")
        decide = migration.decide_migration

        def too_long_for_one(code: Any, before: Any, *args: Any) -> Any:
            decision = decide(code, before, *args)
            if before.id == refused:  # a type longer than its column: PostgreSQL refuses it
                decision.audit["type"] = "x" * 100
            return decision

        monkeypatch.setattr(migration, "decide_migration", too_long_for_one)
        seen, summary = plans(engine, NOW + timedelta(hours=1))
        reasons = {p.episode_id: p.left for p in seen}
        assert reasons[fine] is None
        assert "the database refused the write" in str(reasons[refused])
        assert (summary.migrated, summary.left) == (1, 1)
        assert repo.view(refused)["pathway"]["version"] == "1.0.0"
        assert repo.view(fine)["pathway"]["version"] == "1.1.0"
    finally:
        engine.dispose()


class _Deadlocked(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


def test_a_batch_that_loses_a_deadlock_is_planned_again_and_each_episode_migrates_once(
    repo: EpisodeRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from models import migration

    episodes = [opened(repo, "1.0.0", 20, f"P-{n}") for n in range(3)]
    real, writes = migration._write, []

    def loses_the_first(*args: Any, **kwargs: Any) -> Any:
        writes.append(len(args[1]))
        if len(writes) == 1:  # the database chose this batch as the deadlock's victim
            raise OperationalError("UPDATE due_timer", {}, _Deadlocked("deadlock detected"))
        return real(*args, **kwargs)

    monkeypatch.setattr(migration, "_write", loses_the_first)
    seen, summary = plans(repo.engine, NOW + timedelta(hours=1))
    assert writes == [3, 3]  # the whole batch, planned again and written once
    assert (summary.migrated, summary.left) == (3, 0)
    assert all(p.left is None for p in seen)
    with read_only(repo.engine) as connection:
        rows = connection.scalars(
            select(AuditEntry.episode_id).where(AuditEntry.trigger == "migration")
        ).all()
    assert sorted(rows) == sorted(episodes)


def test_an_item_the_target_has_no_such_item_for_is_cancelled(
    repo: EpisodeRepository,
) -> None:
    # A late presenter with persisting pain: 1.1.0 has the REF-3M referral due at once
    # (FU-RESPONSE without a baseline); 1.0.0 waits for a second visit. Moved back to
    # 1.0.0, the referral item is cancelled, as an episode on 1.0.0 from the start shows.
    late, born = opened(repo, "1.1.0", 100, "P-late"), opened(repo, "1.0.0", 100, "P-born")
    for episode in (late, born):
        repo.apply(episode, visit(7, 40), NOW + timedelta(hours=1))
    assert "referral" in {d["key"] for d in repo.view(late)["due"]}
    dry = []
    migrate(repo.engine, "1.0.0", NOW + timedelta(hours=2), defaults=DEFAULTS,
            dry_run=True, on_episode=dry.append)  # fmt: skip
    [plan] = dry
    assert plan.changes is not None
    assert [d["key"] for d in plan.changes.due_cancelled] == ["referral"]
    migrate(repo.engine, "1.0.0", NOW + timedelta(hours=2), defaults=DEFAULTS)
    [cancelled] = [d for d in repo.view(late)["due"] if d["key"] == "referral"]
    assert cancelled["status"] == "cancelled"
    migrated, first = standing(repo, late), standing(repo, born)
    for name in ("configuration", "history", "facts", "recommendations", "timers"):
        assert migrated[name] == first[name], name
    assert [d for d in migrated["due"] if d["key"] != "referral"] == first["due"]
    # A later visit on 1.0.0 that brings the referral up takes the cancelled item's key over.
    for episode in (late, born):
        repo.apply(episode, visit(7, 40), NOW + timedelta(days=20))
    assert standing(repo, late)["due"] == standing(repo, born)["due"]


def test_a_step_between_the_snapshot_and_the_write_is_taken_into_the_plan(
    repo: EpisodeRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import migration

    episode = opened(repo, "1.0.0", 10)
    read = migration.read_histories
    raced: list[str] = []

    def then_an_event_arrives(engine: Engine, ids: Any, whole_steps: bool = True) -> Any:
        histories = read(engine, ids, whole_steps)
        if not raced:  # a refused order, recorded after the snapshot: no version moves
            step, _ = repo.apply(episode, {"type": "order", "data": {"kind": "mri"}},
                                 NOW + timedelta(hours=1))  # fmt: skip
            raced.append(str(step.accepted))
        return histories

    monkeypatch.setattr(migration, "read_histories", then_an_event_arrives)
    seen, summary = plans(repo.engine, NOW + timedelta(hours=2))
    assert raced == ["False"]
    assert [p.outcome for p in seen] == ["migrated"]
    assert [r["trigger"] for r in _audit(repo.engine, episode)] == ["open", "event", "migration"]
    report = replay_episodes(repo.engine, [episode], DEFAULTS)
    assert report.ok, report.differing[0].line()


def _audit(engine: Engine, episode: str) -> list[Any]:
    query = select(AuditEntry).where(AuditEntry.episode_id == episode).order_by(AuditEntry.seq)
    with read_only(engine) as connection:
        return list(connection.execute(query).mappings())


def test_a_migration_keeps_the_coordinator_an_episode_was_handed_to(
    repo: EpisodeRepository,
) -> None:
    episode = opened(repo, "1.0.0", 20)
    handover = {"type": "handover", "data": {"to": "sam"}, "actor": "lee"}
    step, _ = repo.apply(episode, handover, NOW + timedelta(hours=1))
    assert step.accepted
    [planned], _ = plans(repo.engine, NOW + timedelta(hours=2))
    assert planned.left is None
    assert planned.applied
    view = repo.view(episode)
    assert (view["pathway"]["version"], view["coordinator"]) == ("1.1.0", "sam")
    assert replay_episodes(repo.engine, [episode], DEFAULTS).ok


def test_a_migration_takes_a_reopened_item_again(repo: EpisodeRepository) -> None:
    episode = opened(repo, "1.0.0", 20)
    key = next(i["key"] for i in repo.view(episode)["due"] if i["status"] != "done")
    repo.complete_task(episode, key, "nurse", NOW + timedelta(hours=1))
    repo.reopen_task(episode, key, "nurse", NOW + timedelta(hours=2))
    [planned], _ = plans(repo.engine, NOW + timedelta(hours=3))
    assert planned.left is None
    assert next(i for i in repo.view(episode)["due"] if i["key"] == key)["status"] != "done"
    assert replay_episodes(repo.engine, [episode], DEFAULTS).ok
