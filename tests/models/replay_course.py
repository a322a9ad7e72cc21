"""A realistic course for replay tests, built through the unit of work with a fake clock."""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import Engine, select

from engine.clinic_time import add_days, clinic_noon
from engine.episode import OPEN_TASK_STATUSES
from engine.errors import InvalidEvent
from engine.events import parse_event, parse_opening
from models.db import read_only
from models.idempotency import Answer, KeyedWrite, Replayed, request_digest
from models.repository import EpisodeRepository
from models.tables import Base
from tests.engine.test_memory import EVENTS

ONSET = date(2026, 1, 5)


def day(n: int, hours: int = 0) -> datetime:
    return clinic_noon(add_days(ONSET, n), UTC) + timedelta(hours=hours)  # type: ignore[arg-type]


def visit(vas_leg: int, odi: int, **more: Any) -> dict[str, Any]:
    return {"type": "assessment", "data": {"vas_leg": vas_leg, "odi": odi, **more},
            "actor": "dr.gp"}  # fmt: skip


def open_on(repo: EpisodeRepository, version: str, ref: str = "P-1", **patient: Any) -> str:
    opening = parse_opening(
        {
            "patient": {"ref": ref, "age": 52, "sex": "female", "prior_lbp": True, **patient},
            "onset": ONSET.isoformat(),
            "enrolled_at": day(1).isoformat(),
            "coordinator": "nurse.jones",
            "pathway_version": version,
        }
    )
    return str(repo.open(opening, day(1), actor="coordinator.kim")["id"])


def keyed_apply(
    repo: EpisodeRepository, episode_id: str, payload: dict[str, Any], at: datetime
) -> None:
    """The event sent twice with one idempotency key: the retry is answered, not applied."""
    route = "POST /episodes/{episode_id}/events"
    digest = request_digest("POST", route, {"episode_id": episode_id}, payload)

    def respond(result: Any) -> Answer:
        return Answer(200, json.dumps({"version": result[1]["version"]}), {})

    for attempt in range(2):
        key = KeyedWrite("service-1", route, f"key-{episode_id}", digest, respond)
        try:
            repo.apply_parsed(episode_id, parse_event(payload), at, keyed=key)
        except Replayed:
            assert attempt == 1
        else:
            assert attempt == 0


def first_open_item(repo: EpisodeRepository, episode_id: str) -> str:
    due = repo.view(episode_id)["due"]
    return str(next(d["key"] for d in due if d["status"] in OPEN_TASK_STATUSES))


def course(repo: EpisodeRepository, version: str, ref: str = "P-1") -> str:
    """Visits, an early MRI refused then ordered with an override, physiotherapy, a red flag
    raised and cleared, timers fired at later instants (some late, some on time), a due
    item marked done, a retried request, late documentation, a resolve and an event after
    it. Returns the episode's id."""
    episode = open_on(repo, version, ref)
    repo.apply(episode, visit(8, 52, slr_positive=True), day(3))
    refused, _ = repo.apply(episode, {"type": "order", "data": {"kind": "mri"}}, day(4))
    assert not refused.accepted
    override = {"kind": "mri", "override_reason": "suspected tumour on x-ray"}
    repo.apply(episode, {"type": "order", "data": override, "actor": "dr.gp"}, day(4, 1))
    physio = {"kind": "physio_formal", "start": add_days(ONSET, 5).isoformat(), "adherence": "good"}
    late = {"type": "treatment", "data": physio, "actor": "physio",
            "occurred_at": day(5).isoformat()}  # fmt: skip
    repo.apply(episode, late, day(6))  # documented a day late
    repo.apply(
        episode, {"type": "red_flag", "data": {"kind": "infection", "note": "fever"}}, day(17)
    )
    repo.fire_due(day(18, 1))  # the urgent work-up is overdue
    repo.apply(episode, {"type": "red_flag_cleared", "data": {"kind": "infection"}}, day(18, 2))
    repo.complete_task(episode, first_open_item(repo, episode), "nurse.jones", day(19))
    keyed_apply(repo, episode, visit(5, 34), day(30))
    repo.fire_due(day(52), on_time=True)
    repo.apply(episode, visit(2, 12), day(53))
    repo.fire_due(day(60, 5))
    repo.apply(episode, {"type": "resolve", "data": {"reason": "recovered"}}, day(61))
    with suppress(InvalidEvent):  # refused on record from 1.1.0 (EP-FINAL), invalid on 1.0.0
        repo.apply(episode, visit(3, 15), day(62))
    repo.fire_due(day(200))
    return episode


def contents(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table: what a read-only replay must leave as it found it."""
    with read_only(engine) as connection:
        return {
            name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
            for name, table in Base.metadata.tables.items()
        }


# A random history: each step's days since the one before, the hours its event is documented
# late (None: "now"), the event, and whether a due item is marked done first.
Steps = list[tuple[int, int | None, Any, bool]]


# A handover among three coordinators: accepted when its "from" is the one in charge.
_NAMES = st.sampled_from([None, "sam", "robin"])
HANDOVERS = st.tuples(st.just("handover"), st.fixed_dictionaries({"from": _NAMES, "to": _NAMES}))


def random_histories(max_size: int) -> st.SearchStrategy[Steps]:
    return st.lists(
        st.tuples(
            st.integers(0, 12),
            st.one_of(st.none(), st.integers(0, 30)),
            st.one_of(EVENTS, HANDOVERS),
            st.sampled_from([False] * 6 + [True]),
        ),
        min_size=1,
        max_size=max_size,
    )


def play(repo: EpisodeRepository, episode: str, steps: Steps, elapsed: int) -> int:
    """Take ``steps`` on the episode from day ``elapsed``, the timers due on the way fired
    first; an event the engine finds invalid (before onset, after the end on 1.0.0, ...) is
    skipped. Returns the day of the last step."""
    for gap, late, (kind, data), done in steps:
        elapsed += gap
        now = day(elapsed)
        repo.fire_due(now)
        if done and repo.view(episode)["status"] == "active":
            with suppress(InvalidEvent, StopIteration):
                repo.complete_task(episode, first_open_item(repo, episode), "nurse", now)
        payload = {"type": kind, "data": data}
        if late is not None:
            payload["occurred_at"] = max(day(1), now - timedelta(hours=late)).isoformat()
        with suppress(InvalidEvent):
            repo.apply(episode, payload, now)
    return elapsed
