"""The worker signs the chain's head on its own schedule, and cries out when it cannot."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit_keys import AuditKey
from models.checkpointing import CheckpointSchedule
from models.checkpoints import CHECKPOINT
from models.db import make_engine
from models.repository import EpisodeRepository
from schedulers.worker import Worker
from tests.models import audit_forgery as forge

NOW = datetime(2026, 1, 19, 9, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditKey:
    return forge.use_key(tmp_path, monkeypatch)


def enrol(repo: EpisodeRepository, now: datetime) -> None:
    opening = parse_opening(
        {"patient": {"ref": "r-1"}, "onset": "2026-01-05", "enrolled_at": now.isoformat()}
    )
    repo.open(opening, now)


def checkpoints(engine: Engine) -> list[tuple[int, int]]:
    with engine.connect() as connection:
        query = select(CHECKPOINT.c.id, CHECKPOINT.c.seq).order_by(CHECKPOINT.c.id)
        return [(row[0], row[1]) for row in connection.execute(query)]


def test_the_worker_checkpoints_every_interval_when_the_head_moved(
    engine: Engine, key: AuditKey
) -> None:
    clock = FakeClock(NOW)
    repo = EpisodeRepository(engine, PathwayDefaults())
    schedule = CheckpointSchedule(engine, key, interval=300)
    worker = Worker(repo, clock, checkpoint=schedule)
    enrol(repo, clock.now())
    worker.sweep()
    assert checkpoints(engine) == [(1, 1)]
    enrol(repo, clock.now())
    clock.advance(timedelta(minutes=4))
    worker.sweep()  # within the interval: not yet
    assert checkpoints(engine) == [(1, 1)]
    clock.advance(timedelta(minutes=2))
    worker.sweep()
    assert checkpoints(engine) == [(1, 1), (2, 2)]
    clock.advance(timedelta(minutes=10))
    worker.sweep()  # the head has not moved: nothing signed
    assert checkpoints(engine) == [(1, 1), (2, 2)]
    assert schedule.last is not None
    assert schedule.last.seq == 2


def test_a_head_that_went_backwards_is_logged_once_and_never_signed(
    engine: Engine, key: AuditKey, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    repo = EpisodeRepository(engine, PathwayDefaults())
    schedule = CheckpointSchedule(engine, key, interval=60)
    worker = Worker(repo, clock, checkpoint=schedule)
    for _ in range(3):
        enrol(repo, clock.now())
    worker.sweep()
    assert checkpoints(engine) == [(1, 3)]
    forge.cut_tail(engine, keep=1)
    forge.delete_checkpoints(engine, above_seq=1)
    caplog.set_level(logging.ERROR, logger="carepath.audit")
    for _ in range(3):
        clock.advance(timedelta(minutes=2))
        worker.sweep()
    assert checkpoints(engine) == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == "audit log not checkpointed"
    assert errors[0].problem.startswith("the log went backwards: this process signed row 3")  # type: ignore[attr-defined]
    assert schedule.problem == errors[0].problem  # type: ignore[attr-defined]


def test_a_forged_row_stops_the_schedule_until_it_is_dealt_with(
    engine: Engine, key: AuditKey, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    repo = EpisodeRepository(engine, PathwayDefaults())
    schedule = CheckpointSchedule(engine, key, interval=60)
    enrol(repo, clock.now())
    schedule(clock.now())
    forge.append_forged(engine)
    caplog.set_level(logging.INFO, logger="carepath.audit")
    clock.advance(timedelta(minutes=2))
    assert schedule(clock.now()) is None
    assert schedule.problem is not None
    assert "row 2 (no episode): no seal" in schedule.problem
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(CHECKPOINT)) == 1
