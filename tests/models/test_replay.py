"""Replay on both backends: a recorded history re-run step for step matches its audit rows,
and a changed input, state, timer or definition is named at the first step it changes."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, update

import pathways
from engine.definition import parse_definition
from engine.errors import EpisodeNotFound
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models import replay
from models.db import make_engine, read_only
from models.replay import replay_episodes
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow, DueTimer, Episode, Task
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


@pytest.fixture
def drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")  # 1.1.0 is a draft: open episodes on it


@pytest.fixture
def repo(db_engine: Engine, drafts: None) -> EpisodeRepository:
    return EpisodeRepository(db_engine, DEFAULTS)


def audit_rows(engine: Engine, episode_id: str) -> list[Any]:
    query = select(AuditEntry).where(AuditEntry.episode_id == episode_id).order_by(AuditEntry.seq)
    with read_only(engine) as connection:
        return list(connection.execute(query))


def change(engine: Engine, statement: Any) -> None:
    with engine.begin() as connection:
        assert connection.execute(statement).rowcount >= 1


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_a_course_replays_step_for_step(
    db_engine: Engine, repo: EpisodeRepository, version: str
) -> None:
    episode = course(repo, version)
    rows = audit_rows(db_engine, episode)
    assert {r.pathway_version for r in rows} == {version}
    kinds = {(r.trigger, r.type.split(":")[0], r.accepted) for r in rows}
    for kind in [("open", "open", True), ("event", "order", False), ("event", "order", True),
                 ("event", "red_flag", True), ("event", "red_flag_cleared", True),
                 ("event", "task_done", True), ("timer", "task", True),
                 ("timer", "phase", True), ("event", "resolve", True)]:  # fmt: skip
        assert kind in kinds
    before = contents(db_engine)

    report = replay_episodes(db_engine, [episode], DEFAULTS)

    assert report.ok, [d.line() for d in report.differing]
    assert report.as_json() == {
        "episodes": 1, "steps": len(rows), "matched": len(rows), "differing": []
    }  # fmt: skip
    assert contents(db_engine) == before  # the database was only read


def test_interleaved_episodes_on_two_versions_each_replay_on_their_own(
    db_engine: Engine, repo: EpisodeRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their timers fire in the same batches; each replay fires only its own episode's,
    read a batch at a time and replayed on as many private databases as it takes."""
    episodes = [open_on(repo, "1.0.0", "P-old"), open_on(repo, "1.1.0", "P-new")]
    for n, (vas, odi) in enumerate([(7, 44), (8, 60), (4, 30), (2, 10)]):
        for episode in episodes:
            repo.apply(episode, visit(vas, odi), day(10 + 15 * n))
        repo.fire_due(day(18 + 15 * n))
    assert replay_episodes(db_engine, None, DEFAULTS).ok
    monkeypatch.setattr(replay, "BATCH", 1)
    monkeypatch.setattr(replay, "PRIVATE_EPISODES", 1)
    report = replay_episodes(db_engine, list(reversed(episodes)), DEFAULTS)
    assert report.ok, [d.line() for d in report.differing]
    assert [e.episode_id for e in report.episodes] == list(reversed(episodes))
    for replayed in report.episodes:
        rows = audit_rows(db_engine, replayed.episode_id)
        assert replayed.steps == replayed.matched == len(rows)
        assert "timer" in {r.trigger for r in rows}


def test_an_unknown_episode_is_named_before_anything_is_replayed(db_engine: Engine) -> None:
    with pytest.raises(EpisodeNotFound, match="no-such-episode"):
        replay_episodes(db_engine, ["no-such-episode"], DEFAULTS)


# --------------------------------------------------------------------------------------------
# Random histories


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.sampled_from(["1.0.0", "1.1.0"]), history=random_histories(14))
def test_random_histories_replay_step_for_step(
    sqlite_url: str, drafts: None, version: str, history: Steps
) -> None:
    engine = make_engine(sqlite_url)
    try:
        repo = EpisodeRepository(engine, DEFAULTS)
        episode = open_on(repo, version)
        elapsed = play(repo, episode, history, 1)
        repo.fire_due(day(elapsed + 90))
        report = replay_episodes(engine, [episode], DEFAULTS)
        assert report.ok, report.differing[0].line()
        assert report.episodes[0].steps == len(audit_rows(engine, episode))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# What a replay catches


def second_visit(engine: Engine, episode: str) -> int:
    query = (
        select(ClinicalEventRow.id)
        .where(ClinicalEventRow.episode_id == episode, ClinicalEventRow.type == "assessment")
        .order_by(ClinicalEventRow.id)
    )
    with read_only(engine) as connection:
        return list(connection.scalars(query))[1]


def worse_visit(engine: Engine, episode: str) -> Any:
    # Leg pain worse than at the first visit instead of better: FU-RESPONSE says otherwise.
    data = {"vas_leg": 10, "odi": 80}
    return (
        update(ClinicalEventRow)
        .where(ClinicalEventRow.id == second_visit(engine, episode))
        .values(data=data)
    )


def lost_visit(engine: Engine, episode: str) -> Any:
    return delete(ClinicalEventRow).where(ClinicalEventRow.id == second_visit(engine, episode))


def forgotten_facts(engine: Engine, episode: str) -> Any:
    return update(Episode).where(Episode.id == episode).values(facts={})


def other_patient(engine: Engine, episode: str) -> Any:
    flags = {"prior_lbp": False, "workers_comp": True}
    patient = {"age": 52, "sex": "female", "flags": flags}
    return update(Episode).where(Episode.id == episode).values(patient=patient)


def moved_timer(engine: Engine, episode: str) -> Any:
    return (
        update(DueTimer)
        .where(DueTimer.episode_id == episode, DueTimer.kind == "phase", DueTimer.status == "fired")
        .values(payload={"to": "chronic"})
    )


def renamed_item(engine: Engine, episode: str) -> Any:
    done = (Task.episode_id == episode, Task.status == "done")
    return update(Task).where(*done).values(key=Task.key + "-renamed")


Tampering = Callable[[Engine, str], Any]


@pytest.mark.parametrize(
    ("tamper", "row", "says"),
    [
        (worse_visit, ("event", "assessment", 2), "payload_digest: recorded"),
        (lost_visit, ("event", "assessment", 2), "is not this row's: an event is missing"),
        (other_patient, ("open", "open", 0), "payload_digest: recorded"),
        (moved_timer, ("timer", "phase:subacute", 0), "due_timer holds no timer of the episode"),
        (renamed_item, ("event", "task_done", 0), "no due item of the episode is the one"),
        (forgotten_facts, None, "its replay: facts: differs in assessments, baseline,"),
    ],
)
def test_a_changed_record_is_named_at_the_first_step_it_changes(
    db_engine: Engine,
    repo: EpisodeRepository,
    tamper: Tampering,
    row: tuple[str, str, int] | None,
    says: str,
) -> None:
    episode = course(repo, "1.0.0")
    assert replay_episodes(db_engine, [episode], DEFAULTS).ok
    change(db_engine, tamper(db_engine, episode))

    (replayed,) = replay_episodes(db_engine, [episode], DEFAULTS).episodes

    difference = replayed.difference
    assert difference is not None
    assert says in difference.line()
    assert difference.line().startswith(f"episode {episode}")
    rows = audit_rows(db_engine, episode)
    if row is None:
        assert difference.seq is None
        assert replayed.matched == replayed.steps == len(rows)
        return
    trigger, type_, nth = row
    expected = [r.seq for r in rows if (r.trigger, r.type) == (trigger, type_)][
        nth - 1 if nth else 0
    ]
    assert (difference.seq, difference.trigger, difference.type) == (expected, trigger, type_)
    assert f"differs at audit row {expected} ({trigger} {type_})" in difference.line()
    assert replayed.matched == replayed.steps - 1 == [r.seq for r in rows].index(expected)


def test_a_changed_visit_changes_what_the_replay_decides(
    db_engine: Engine, repo: EpisodeRepository
) -> None:
    episode = course(repo, "1.0.0")
    change(db_engine, worse_visit(db_engine, episode))
    (difference,) = replay_episodes(db_engine, [episode], DEFAULTS).differing
    assert {"payload_digest", "rules"} <= set(difference.fields)
    detail = difference.as_json()
    assert (detail["episode"], detail["trigger"]) == (episode, "event")
    assert "FU-RESPONSE" in detail["fields"]["rules"]["recorded"]


def test_other_defaults_than_the_steps_were_taken_with_differ_and_say_where(
    db_engine: Engine, repo: EpisodeRepository
) -> None:
    episode = course(repo, "1.0.0")
    other = PathwayDefaults(conservative_window_days=28, urgent_task_hours=12)
    (difference,) = replay_episodes(db_engine, [episode], other).differing
    assert difference.seq is not None
    assert "differs at audit row" in difference.line()


@pytest.fixture
def edited_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The pathway's package copied, served by the registry in its place: edit its files."""
    copy = tmp_path / "edited_lsr"
    shutil.copytree(Path(pathways.__file__).parent / "lumbosacral_radiculopathy", copy)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pathways.PACKAGES, pathways.LUMBOSACRAL_RADICULOPATHY, "edited_lsr")
    pathways.definition.cache_clear()
    pathways._published.cache_clear()
    try:
        yield copy
    finally:
        monkeypatch.undo()
        pathways.definition.cache_clear()
        pathways._published.cache_clear()
        sys.modules.pop("edited_lsr", None)


def test_a_definition_edited_after_publication_cannot_be_replayed(
    db_engine: Engine, repo: EpisodeRepository, edited_definitions: Path
) -> None:
    published, draft = course(repo, "1.0.0", "P-old"), course(repo, "1.1.0", "P-new")
    assert replay_episodes(db_engine, None, DEFAULTS).ok  # the copy, as shipped
    text = (edited_definitions / "1.0.0.toml").read_text()
    assert "no bed rest" in text
    (edited_definitions / "1.0.0.toml").write_text(text.replace("no bed rest", "bed rest", 1))
    pathways.definition.cache_clear()

    report = replay_episodes(db_engine, None, DEFAULTS)

    (difference,) = report.differing
    assert difference.episode_id == published
    assert (difference.seq, difference.trigger) == (audit_rows(db_engine, published)[0].seq, "open")
    line = difference.line()
    assert "cannot be replayed on pathway lumbosacral-radiculopathy 1.0.0" in line
    assert "1.0.0.toml: edited after publication: its digest is sha256:" in line
    assert ", published as sha256:" in line
    assert [e.episode_id for e in report.episodes if e.difference is None] == [draft]


def test_a_definition_republished_under_another_digest_is_refused_by_the_databases_record(
    db_engine: Engine, repo: EpisodeRepository, edited_definitions: Path
) -> None:
    """The file and the package's record of it edited together: the database recorded the
    digest it was published with, and the replay holds the version to it."""
    episode = course(repo, "1.0.0")
    edited = (edited_definitions / "1.0.0.toml").read_text().replace("no bed rest", "bed rest", 1)
    digest = parse_definition(edited.encode(), "1.0.0.toml").digest
    record = edited_definitions / "published.toml"
    shipped = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0").digest
    record.write_text(record.read_text().replace(shipped, digest))
    (edited_definitions / "1.0.0.toml").write_text(edited)
    pathways.definition.cache_clear()
    pathways._published.cache_clear()
    assert pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0").digest == digest

    (difference,) = replay_episodes(db_engine, [episode], DEFAULTS).differing

    assert difference.trigger == "open"
    assert (
        f"cannot be replayed on pathway lumbosacral-radiculopathy 1.0.0: "
        f"lumbosacral-radiculopathy 1.0.0: published to this database as {shipped}, but the "
        f"definition shipped has {digest}"
    ) in difference.line()


def test_handovers_replay_and_the_opening_is_rebuilt_with_its_first_coordinator(
    db_engine: Engine, repo: EpisodeRepository
) -> None:
    """The episode row keeps the coordinator now in charge; the opening's is the first
    accepted handover's ``from``, a refused one in between changing nothing."""
    from engine.events import parse_opening

    opening = {"patient": {"ref": "P-7"}, "onset": "2026-01-05", "coordinator": "alex",
               "team": None, "enrolled_at": day(1).isoformat()}  # fmt: skip
    episode = str(repo.open(parse_opening(opening), day(1))["id"])
    for n, (holder, taker) in enumerate([("alex", "sam"), ("alex", "robin"), ("sam", None)]):
        handover = {"type": "handover", "data": {"from": holder, "to": taker}, "actor": "lee"}
        step, _ = repo.apply(episode, handover, day(2 + n))
        assert step.accepted == (holder != "alex" or taker == "sam")
    repo.apply(episode, {"type": "handover", "data": {"to": "robin"}}, day(6))
    assert repo.view(episode)["coordinator"] == "robin"
    report = replay_episodes(db_engine, [episode], DEFAULTS)
    assert report.ok, report.differing[0].line()
    change(db_engine, update(Episode).where(Episode.id == episode).values(coordinator="sam"))
    [differing] = replay_episodes(db_engine, [episode], DEFAULTS).differing
    assert "coordinator" in differing.fields


def test_an_item_reopened_after_done_replays(db_engine: Engine, repo: EpisodeRepository) -> None:
    episode = open_on(repo, "1.0.0")
    key = next(i["key"] for i in repo.view(episode)["due"] if i["status"] != "done")
    repo.complete_task(episode, key, "nurse", day(3))
    repo.reopen_task(episode, key, "nurse", day(4))
    assert next(i for i in repo.view(episode)["due"] if i["key"] == key)["status"] != "done"
    repo.fire_due(day(60))
    report = replay_episodes(db_engine, [episode], DEFAULTS)
    assert report.ok, report.differing[0].line()
    assert "task_reopened" in {r.type for r in audit_rows(db_engine, episode)}
