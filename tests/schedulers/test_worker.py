"""The worker on a fake clock: every kind of timer fires once, on time, through sweeps."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from cli.simulate import load_scenario
from engine.clinic_time import FakeClock, add_days, clinic_noon
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit import verify_chain
from models.db import make_session_factory
from models.repository import EpisodeRepository
from models.tables import AuditEntry, DueTimer
from schedulers.worker import Worker

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SWEEP_EVERY = timedelta(hours=4)
HORIZON_DAYS = 120


def scenario_instant(value: Any, onset: date) -> datetime:
    """A scenario's ``at``: "day N" (clinic noon, N days after onset) or an instant."""
    if isinstance(value, str) and (match := re.fullmatch(r"day (\d+)", value)):
        return clinic_noon(add_days(onset, int(match.group(1))), UTC)  # type: ignore[arg-type]
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def drive(repo: EpisodeRepository, worker: Worker, clock: FakeClock, path: Path) -> str:
    """Open the example's episode and live through it: events at their instants, a sweep
    every few hours, up to day HORIZON_DAYS."""
    scenario = load_scenario(path)
    opening = parse_opening(
        jsonable(
            {
                k: scenario[k]
                for k in ("patient", "onset", "enrolled_at", "coordinator")
                if k in scenario
            }
        )
    )
    onset = opening.onset
    clock.set(opening.enrolled_at)
    episode_id = repo.open(opening, clock.now())["id"]
    events = [(scenario_instant(s["at"], onset), jsonable(s["event"])) for s in scenario["steps"]]
    end = clinic_noon(add_days(onset, HORIZON_DAYS), UTC)  # type: ignore[arg-type]
    while clock.now() < end:
        next_sweep = clock.now() + SWEEP_EVERY
        while events and events[0][0] <= next_sweep:
            at, payload = events.pop(0)
            clock.set(at)
            worker.sweep()  # what fell due before the event, first
            repo.apply(episode_id, payload, clock.now())
        clock.set(next_sweep)
        worker.sweep()
    return episode_id


def test_every_kind_of_timer_fires_once_on_time_through_the_worker(engine: Engine) -> None:
    repo = EpisodeRepository(make_session_factory(engine), PathwayDefaults())
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    worker = Worker(repo, clock, batch_size=3)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        drive(repo, worker, clock, path)

    with engine.connect() as connection:
        timers = connection.execute(select(DueTimer)).all()
        timer_audits = connection.execute(
            select(AuditEntry.episode_id, AuditEntry.type, AuditEntry.occurred_at).where(
                AuditEntry.trigger == "timer"
            )
        ).all()
    now = clock.now()
    assert not [t for t in timers if t.status == "pending" and t.due_at <= now]
    done = [t for t in timers if t.status in ("fired", "noop")]
    for timer in done:
        assert timer.due_at <= timer.fired_at <= timer.due_at + SWEEP_EVERY, timer.ref
    # One audit row per timer fired, none twice.
    assert len(timer_audits) == len(done)
    assert len(set(timer_audits)) == len(timer_audits)
    assert {t.ref for t in done if t.status == "fired"} >= {
        "phase:subacute",
        "phase:chronic",
        "task:first_follow_up",
        "task:six_week_review",
        "task:periodic_review_1",
        "task:opioid_review",
        "task:referral",
        "task:ces_emergency",
    }
    with make_session_factory(engine)() as session:
        assert verify_chain(session).ok
