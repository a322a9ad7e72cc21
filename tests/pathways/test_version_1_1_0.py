"""Version 1.1.0's corrections, each against 1.0.0's behaviour, on both databases.

1.1.0 is a draft until every correction of PATHWAY.md "Version 1.1.0" is in it: these
tests open episodes on it as a review installation does (``CAREPATH_PATHWAY_DRAFTS=1``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from cli.main import app
from engine.errors import InvalidEvent
from engine.events import parse_opening
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.repository import EpisodeRepository
from models.tables import AuditEntry

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)
OPENING = {"patient": {"ref": "P-11", "age": 50}, "onset": "2026-01-05"}
VISIT = {"type": "assessment", "data": {"vas_leg": 5, "odi": 30}}


@pytest.fixture(autouse=True)
def drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")


def opened(engine: Engine, version: str) -> tuple[EpisodeRepository, str]:
    repo = EpisodeRepository(engine, PathwayDefaults())
    view = repo.open(parse_opening({**OPENING, "pathway_version": version}), NOW)
    assert view["pathway"]["version"] == version
    return repo, str(view["id"])


def audit_rows(engine: Engine, episode: str) -> list[Any]:
    with engine.connect() as connection:
        query = select(AuditEntry).where(AuditEntry.episode_id == episode).order_by(AuditEntry.seq)
        return list(connection.execute(query).mappings())


def test_ep_final_an_event_on_a_closed_episode_is_a_refusal_on_record(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.1.0")
    repo.apply(episode, {"type": "close", "data": {"reason": "moved away"}}, NOW)
    step, view = repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert not step.accepted
    assert step.rules == ["EP-FINAL"]
    assert not step.override_possible
    assert "the episode is closed" in (step.reason or "")
    assert view["status"] == "closed"
    last = audit_rows(db_engine, episode)[-1]
    assert (last["type"], last["accepted"], last["rules"]) == ("assessment", False, ["EP-FINAL"])
    assert last["pathway_version"] == "1.1.0"


def test_ep_final_on_1_0_0_stays_invalid_input_and_writes_nothing(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.0.0")
    repo.apply(episode, {"type": "resolve", "data": {"reason": "recovered"}}, NOW)
    rows = len(audit_rows(db_engine, episode))
    with pytest.raises(InvalidEvent, match="the episode is resolved"):
        repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert len(audit_rows(db_engine, episode)) == rows


def test_ep_final_an_active_episode_on_1_1_0_still_takes_events(db_engine: Engine) -> None:
    repo, episode = opened(db_engine, "1.1.0")
    step, _ = repo.apply(episode, VISIT, NOW + timedelta(days=1))
    assert step.accepted
    assert "EP-FINAL" not in step.rules


def test_ep_final_a_simulation_shows_the_refused_step(tmp_path: Path) -> None:
    scenario = tmp_path / "closed.yaml"
    scenario.write_text(
        'patient: {ref: "sim-1"}\nonset: 2026-01-05\npathway_version: "1.1.0"\nsteps:\n'
        '  - {at: "day 10", event: {type: close, data: {reason: "moved away"}}}\n'
        '  - {at: "day 12", event: {type: assessment, data: {vas_leg: 4, odi: 30}}}\n'
    )
    ran = CliRunner().invoke(app, ["simulate", str(scenario)])
    assert ran.exit_code == 0, ran.output
    last = json.loads(ran.stdout)["timeline"][-1]
    assert (last["type"], last["accepted"], last["rules"]) == ("assessment", False, ["EP-FINAL"])
