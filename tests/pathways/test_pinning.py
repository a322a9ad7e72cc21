"""An episode opens on the newest published version, or on the published one asked for, and
runs on the version it opened on."""

from __future__ import annotations

import pytest

import pathways
from engine.errors import InvalidEvent
from engine.events import Opening, parse_opening
from engine.settings import OPENING_VERSION_ENV
from pathways import of_episode
from tests.engine.helpers import Episode

OPENING = {"patient": {"ref": "P-1"}, "onset": "2026-01-05"}


def opened_on(payload: dict[str, object]) -> Opening:
    """The opening as the repository takes it: parsed, then its version chosen."""
    return pathways.opening_for(parse_opening(payload))


@pytest.fixture
def clinic_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """No version chosen by the clinic (the suite otherwise opens on 1.0.0)."""
    monkeypatch.delenv(OPENING_VERSION_ENV, raising=False)


def test_a_new_episode_opens_on_the_newest_published_version(clinic_default: None) -> None:
    newest = pathways.newest().version
    assert newest == "1.1.0"
    assert opened_on(OPENING).pathway_version == newest
    assert opened_on({**OPENING, "pathway_version": "1.0.0"}).pathway_version == "1.0.0"
    episode = Episode()
    assert episode.state.pathway_version == newest
    assert of_episode(episode.state) is pathways.definition(
        pathways.LUMBOSACRAL_RADICULOPATHY, newest
    )


def test_a_draft_is_not_opened_on_and_is_not_the_default(
    with_draft: None, clinic_default: None
) -> None:
    assert [v.status for v in pathways.versions(pathways.LUMBOSACRAL_RADICULOPATHY)] == [
        "published", "published", "draft",
    ]  # fmt: skip
    assert opened_on(OPENING).pathway_version == "1.1.0"
    with pytest.raises(InvalidEvent) as refused:
        opened_on({**OPENING, "pathway_version": "1.2.0"})
    assert refused.value.field == "pathway_version"
    assert "a draft, not yet published" in refused.value.reason
    assert "(published: 1.0.0, 1.1.0)" in refused.value.reason


def test_a_clinic_may_choose_the_version_its_new_episodes_open_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OPENING_VERSION_ENV, "1.0.0")  # not yet signed 1.1.0 off
    assert opened_on(OPENING).pathway_version == "1.0.0"
    assert opened_on({**OPENING, "pathway_version": "1.1.0"}).pathway_version == "1.1.0"
    monkeypatch.setenv(OPENING_VERSION_ENV, "2.0.0")
    with pytest.raises(InvalidEvent) as refused:
        opened_on(OPENING)
    assert refused.value.field == "pathway_version"
    assert refused.value.reason.startswith("CAREPATH_PATHWAY_VERSION: '2.0.0' is not a version")


@pytest.mark.parametrize("version", ["9.9.9", "", "1.0.0-and-a-much-longer-tail", 100])
def test_an_unknown_version_is_invalid_naming_the_field(version: object) -> None:
    with pytest.raises(InvalidEvent) as refused:
        opened_on({**OPENING, "pathway_version": version})
    assert refused.value.field == "pathway_version"
