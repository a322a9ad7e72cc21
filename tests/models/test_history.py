"""What a step reads and the view returns stays the same size as an episode's history grows,
on both backends; the history itself is all still there, a page at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from engine.due import current_items
from engine.episode import TaskItem, iso
from engine.errors import EpisodeNotFound, InvalidEvent
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import downgrade, upgrade
from models.history import TIMELINE_STEPS, due_page, timeline_page
from models.repository import EpisodeRepository
from models.store import transaction
from models.tables import AuditEntry, Task

START = datetime(2026, 1, 19, 9, tzinfo=UTC)
# A visit closes the open review and books the next; the rest add to the fact lists.
ROUND: list[dict[str, Any]] = [
    {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}},
    {"type": "treatment", "data": {"kind": "nsaid"}},
    {"type": "order", "data": {"kind": "mri"}},  # refused
    {"type": "order", "data": {"kind": "emg_ncs"}},
    {"type": "result", "data": {"modality": "emg_ncs", "findings": ["chronic_reinnervation"]}},
]


@pytest.fixture
def repo(db_engine: Engine) -> EpisodeRepository:
    return EpisodeRepository(db_engine, PathwayDefaults())


def open_episode(repo: EpisodeRepository) -> str:
    opening = parse_opening(
        {"patient": {"ref": "h-1", "age": 50}, "onset": "2026-01-05",
         "enrolled_at": START.isoformat(), "coordinator": "alex"}
    )  # fmt: skip
    return str(repo.open(opening, START)["id"])


def apply(repo: EpisodeRepository, episode_id: str, first: int, last: int) -> None:
    """Events ``first`` to ``last`` of the round, half an hour apart from the day after
    enrolment (the first visit completes the first follow-up): the 1,000th is on day 35,
    still in the conservative window, so that the episode stands where it stood."""
    for number in range(first, last + 1):
        payload = ROUND[(number - 1) % len(ROUND)]
        repo.apply(episode_id, payload, START + timedelta(days=1, minutes=30 * number))


def what_a_step_reads(repo: EpisodeRepository, episode_id: str) -> dict[str, Any]:
    with transaction(repo.engine) as store:
        loaded = store.read(episode_id, for_update=True)
        batch = store.read_many([episode_id])[episode_id]  # the worker's read
    assert batch.task_rows.keys() == loaded.task_rows.keys()
    return {
        "due items": sorted(loaded.task_rows),
        "fact lists": {k: len(v) for k, v in loaded.state.facts.items() if isinstance(v, list)},
    }


def stored_items(engine: Engine, episode_id: str) -> list[TaskItem]:
    task = Task.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(task).where(task.c.episode_id == episode_id).order_by(task.c.id)
        ).mappings()
        return [
            TaskItem(r["key"], r["rule"], r["due_at"], r["window_start"], r["escalate_at"],
                     r["status"], r["completed_at"])
            for r in rows
        ]  # fmt: skip


def test_a_step_reads_and_the_view_returns_as_much_at_the_1000th_event_as_at_the_10th(
    repo: EpisodeRepository, db_engine: Engine
) -> None:
    episode_id = open_episode(repo)
    apply(repo, episode_id, 1, 10)
    early_read = what_a_step_reads(repo, episode_id)
    early_view = repo.view_with_timeline(episode_id)
    apply(repo, episode_id, 11, 1000)
    late_read = what_a_step_reads(repo, episode_id)
    late_view = repo.view_with_timeline(episode_id)

    assert late_read["fact lists"] == early_read["fact lists"]
    assert len(late_read["due items"]) == len(early_read["due items"]) == 5
    assert len(late_view["due"]) == len(early_view["due"])
    assert len(late_view["timeline"]) == len(early_view["timeline"]) == TIMELINE_STEPS
    # The same items and steps; only what they say differs (dates, numbers, states).
    early_size, late_size = (len(json.dumps(v)) for v in (early_view, late_view))
    assert abs(late_size - early_size) < early_size * 0.02
    # Every item is still stored; a step loads exactly the current ones.
    stored = stored_items(db_engine, episode_id)
    assert len(stored) == 200 + 3  # a review per visit, the first follow-up, 6-week, referral
    current = current_items({t.key: t for t in stored})
    assert sorted(t.key for t in current) == late_read["due items"]


def test_archived_items_are_left_as_they_are(repo: EpisodeRepository, db_engine: Engine) -> None:
    episode_id = open_episode(repo)
    apply(repo, episode_id, 1, 20)
    task = Task.__table__
    query = select(task.c.key, task.c.updated_at, task.c.archived_at).where(
        task.c.episode_id == episode_id, task.c.archived_at.is_not(None)
    )
    with db_engine.connect() as connection:
        archived = set(connection.execute(query))
    assert {key for key, _, _ in archived} == {f"periodic_review_{n}" for n in (1, 2)}
    apply(repo, episode_id, 21, 30)
    with db_engine.connect() as connection:
        later = set(connection.execute(query))
    assert archived < later  # untouched, and joined by the reviews closed since
    assert {key for key, _, _ in later - archived} == {"periodic_review_3", "periodic_review_4"}


def test_the_timeline_pages_through_every_step_newest_first(
    repo: EpisodeRepository, db_engine: Engine
) -> None:
    episode_id = open_episode(repo)
    apply(repo, episode_id, 1, 23)
    late = {**ROUND[0], "occurred_at": "2026-01-20T08:15:00.123456+01:00"}  # documented late
    repo.apply(episode_id, late, START + timedelta(days=2))
    view = repo.view_with_timeline(episode_id)
    steps = list(view["timeline"])
    cursor = view["timeline_next_cursor"]
    while cursor is not None:
        page, cursor = timeline_page(db_engine, episode_id, cursor, limit=7)
        assert len(page) <= 7
        steps += page
    audit = AuditEntry.__table__
    with db_engine.connect() as connection:
        rows = connection.execute(
            select(audit.c.seq, audit.c.occurred_at)
            .where(audit.c.episode_id == episode_id)
            .order_by(audit.c.seq.desc())
        )
        audited = [(seq, iso(occurred_at)) for seq, occurred_at in rows]
    assert [(s["seq"], s["at"]) for s in steps] == audited  # the opening and 24 events
    assert steps[0]["at"] == "2026-01-20T07:15:00.123456Z"
    assert steps[-1]["trigger"] == "open"
    refused = [s for s in steps if not s["accepted"]]
    assert len(refused) == 5  # every MRI order
    assert refused[0]["rules"] == ["IMG-NO-EARLY"]
    assert "conservative window" in refused[0]["reason"]
    first, _ = timeline_page(db_engine, episode_id)
    assert first[:TIMELINE_STEPS] == view["timeline"]
    with pytest.raises(InvalidEvent) as bad:
        timeline_page(db_engine, episode_id, "not-a-cursor")
    assert bad.value.field == "cursor"
    with pytest.raises(EpisodeNotFound):
        timeline_page(db_engine, "no-such-episode")
    for _ in range(3):  # the connection goes back to the pool fit for the next read
        with pytest.raises(EpisodeNotFound):
            repo.view_with_timeline("no-such-episode")
        assert repo.view_with_timeline(episode_id)["timeline"] == view["timeline"]


def test_the_due_items_page_through_the_closed_ones_too(
    repo: EpisodeRepository, db_engine: Engine
) -> None:
    episode_id = open_episode(repo)
    apply(repo, episode_id, 1, 30)  # six visits
    closed: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = due_page(db_engine, episode_id, "closed", cursor, limit=2)
        closed += page
        if cursor is None:
            break
    assert [d["key"] for d in closed] == [f"periodic_review_{n}" for n in (5, 4, 3, 2, 1)] + [
        "first_follow_up"
    ]
    assert all(d["status"] == "done" and d["completed_at"] for d in closed)
    open_items, _ = due_page(db_engine, episode_id, "open")
    view = repo.view(episode_id)
    assert {d["key"] for d in open_items} == {
        d["key"] for d in view["due"] if d["status"] not in ("done", "cancelled")
    }
    everything, more = due_page(db_engine, episode_id)
    assert more is None
    assert len(everything) == len(closed) + len(open_items)
    with pytest.raises(EpisodeNotFound):
        due_page(db_engine, "no-such-episode")


def test_the_migration_archives_all_but_the_last_closed_item_of_each_kind(
    repo: EpisodeRepository, db_engine: Engine
) -> None:
    episode_id = open_episode(repo)
    apply(repo, episode_id, 1, 25)  # five visits: reviews 1 to 4 closed, 5 open
    task = Task.__table__
    downgrade(db_engine, "0008")
    with db_engine.begin() as connection:  # as the rows stood before: nothing archived
        connection.execute(
            text("UPDATE task SET status = 'cancelled' WHERE key = 'six_week_review'")
        )
    upgrade(db_engine)
    with db_engine.connect() as connection:
        archived = set(
            connection.scalars(select(task.c.key).where(task.c.archived_at.is_not(None)))
        )
    assert archived == {"periodic_review_1", "periodic_review_2", "periodic_review_3"}
    with transaction(db_engine, read_only=True) as store:
        keys = set(store.read(episode_id).task_rows)
    assert keys == {"first_follow_up", "six_week_review", "referral", "periodic_review_4",
                    "periodic_review_5"}  # fmt: skip
