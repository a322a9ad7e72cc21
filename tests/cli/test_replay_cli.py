"""`carepath episode replay ID` and `carepath audit replay`: the summary, and the step that
differs named on one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from cli.main import app
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.db import make_engine, read_only
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow
from tests.models.replay_course import contents, course


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def repo(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> EpisodeRepository:
    monkeypatch.setenv(DRAFTS_ENV, "1")
    return EpisodeRepository(engine, PathwayDefaults())


def run(db_url: str, *args: str, **env: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"CAREPATH_DATABASE_URL": db_url, **env})


def steps_of(engine: Engine, episode: str) -> list[Any]:
    query = select(AuditEntry).where(AuditEntry.episode_id == episode).order_by(AuditEntry.seq)
    with read_only(engine) as connection:
        return list(connection.execute(query))


def worsen_last_visit(engine: Engine, episode: str) -> int:
    """The episode's last recorded visit made a much worse one; returns its audit row."""
    query = (
        select(ClinicalEventRow.id)
        .where(ClinicalEventRow.episode_id == episode, ClinicalEventRow.accepted)
        .where(ClinicalEventRow.type == "assessment")
        .order_by(ClinicalEventRow.id.desc())
    )
    with engine.begin() as connection:
        last = connection.scalars(query).first()
        connection.execute(
            update(ClinicalEventRow)
            .where(ClinicalEventRow.id == last)
            .values(data={"vas_leg": 10, "odi": 90})
        )
    visits = [r for r in steps_of(engine, episode) if r.type == "assessment" and r.accepted]
    return int(visits[-1].seq)


def test_an_intact_episode_replays_with_exit_0_and_a_summary(
    db_url: str, engine: Engine, repo: EpisodeRepository
) -> None:
    episode = course(repo, "1.1.0")
    before = contents(engine)

    result = run(db_url, "episode", "replay", episode)

    assert result.exit_code == 0, result.output
    steps = len(steps_of(engine, episode))
    assert json.loads(result.stdout) == {
        "episodes": 1, "steps": steps, "matched": steps, "differing": []
    }  # fmt: skip
    assert result.stderr == ""
    assert contents(engine) == before


def test_a_tampered_episode_exits_1_naming_the_step(
    db_url: str, engine: Engine, repo: EpisodeRepository
) -> None:
    episode = course(repo, "1.0.0")
    seq = worsen_last_visit(engine, episode)

    result = run(db_url, "episode", "replay", episode)

    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"episode {episode} differs at audit row {seq} (event assessment): ")
    assert "; payload_digest: recorded " in line
    summary = json.loads(result.stdout)
    (detail,) = summary["differing"]
    assert (detail["episode"], detail["seq"], detail["trigger"]) == (episode, seq, "event")
    assert set(detail["fields"]) >= {"payload_digest"}
    assert summary["matched"] == summary["steps"] - 1
    assert summary["steps"] == [r.seq for r in steps_of(engine, episode)].index(seq) + 1


def test_audit_replay_goes_through_every_episode_and_reports_each_that_differs(
    db_url: str, engine: Engine, repo: EpisodeRepository
) -> None:
    episodes = [course(repo, version, f"P-{n}") for n, version in
                enumerate(["1.0.0", "1.1.0", "1.0.0", "1.1.0"])]  # fmt: skip
    everything = sum(len(steps_of(engine, e)) for e in episodes)
    intact = run(db_url, "audit", "replay")
    assert intact.exit_code == 0, intact.output
    assert json.loads(intact.stdout) == {
        "episodes": 4, "steps": everything, "matched": everything, "differing": []
    }  # fmt: skip
    assert "replaying" in intact.stderr  # the progress bar

    worsen_last_visit(engine, episodes[1])
    worsen_last_visit(engine, episodes[3])
    result = run(db_url, "audit", "replay")

    assert result.exit_code == 1
    named = [line for line in result.stderr.splitlines() if line.startswith("episode ")]
    assert [line.split()[1] for line in named] == [episodes[1], episodes[3]]
    summary = json.loads(result.stdout)
    assert summary["episodes"] == 4
    assert [d["episode"] for d in summary["differing"]] == [episodes[1], episodes[3]]

    chosen = run(db_url, "audit", "replay", "--episode", episodes[2], "--episode", episodes[0])
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["episodes"] == 2


def test_an_unknown_episode_or_bad_defaults_are_refused(db_url: str, engine: Engine) -> None:
    unknown = run(db_url, "episode", "replay", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "not found: no episode with id nope"
    listed = run(db_url, "audit", "replay", "--episode", "nope")
    assert listed.exit_code == 1
    assert "not found: no episode with id nope" in listed.stderr
    bad = run(db_url, "audit", "replay", CAREPATH_DEFAULTS='{"no_such_default": 1}')
    assert bad.exit_code == 2
    assert "invalid: CAREPATH_DEFAULTS: unknown default(s): no_such_default" in bad.stderr
