"""An episode opens on the newest published version, or on the published one asked for, and
runs on the version it opened on."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pathways
from engine.errors import InvalidEvent
from engine.events import parse_opening
from engine.rules import of_episode
from tests.engine.helpers import Episode
from tests.pathways.test_definitions import PACKAGE, V1

OPENING = {"patient": {"ref": "P-1"}, "onset": "2026-01-05"}


@pytest.fixture
def with_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pathway's package as shipped, plus a 1.1.0 definition not yet published."""
    copy = tmp_path / "drafted_pathway"
    shutil.copytree(PACKAGE, copy)
    (copy / "1.1.0.toml").write_text(V1.replace('version = "1.0.0"', 'version = "1.1.0"', 1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pathways.PACKAGES, pathways.LUMBOSACRAL_RADICULOPATHY, "drafted_pathway")
    caches = (pathways.definition, pathways._published)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()
    sys.modules.pop("drafted_pathway", None)


def test_a_new_episode_opens_on_the_newest_published_version() -> None:
    newest = pathways.newest().version
    assert parse_opening(OPENING).pathway_version == newest
    assert parse_opening({**OPENING, "pathway_version": "1.0.0"}).pathway_version == "1.0.0"
    episode = Episode()
    assert episode.state.pathway_version == newest
    assert of_episode(episode.state) is pathways.definition(
        pathways.LUMBOSACRAL_RADICULOPATHY, newest
    )


def test_a_draft_is_not_opened_on_and_is_not_the_default(with_draft: None) -> None:
    assert [v.status for v in pathways.versions(pathways.LUMBOSACRAL_RADICULOPATHY)] == [
        "published", "draft",
    ]  # fmt: skip
    assert parse_opening(OPENING).pathway_version == "1.0.0"
    with pytest.raises(InvalidEvent) as refused:
        parse_opening({**OPENING, "pathway_version": "1.1.0"})
    assert refused.value.field == "pathway_version"
    assert "a draft, not yet published" in refused.value.reason
    assert "(published: 1.0.0)" in refused.value.reason


@pytest.mark.parametrize("version", ["9.9.9", "", "1.0.0-and-a-much-longer-tail", 100])
def test_an_unknown_version_is_invalid_naming_the_field(version: object) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_opening({**OPENING, "pathway_version": version})
    assert refused.value.field == "pathway_version"
