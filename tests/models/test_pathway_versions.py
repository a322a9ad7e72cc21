"""The database records each published pathway version with its digest, once, and refuses a
shipped definition whose digest differs from the one on record."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, update

import pathways
from engine.definition import DefinitionError
from models.db import upgrade
from models.pathway_versions import PATHWAY_VERSION, listed, record_published


def test_upgrade_records_every_published_version_once(db_engine: Engine) -> None:
    upgrade(db_engine)  # again: nothing more is recorded
    with db_engine.connect() as connection:
        rows = connection.execute(select(PATHWAY_VERSION)).mappings().all()
        assert record_published(connection) == []
    published = [v for v in pathways.versions(pathways.LUMBOSACRAL_RADICULOPATHY)
                 if v.status == "published"]  # fmt: skip
    assert [v.version for v in published] == ["1.0.0", "1.1.0"]
    assert sorted((r["pathway_id"], r["version"]) for r in rows) == [
        (v.pathway_id, v.version) for v in published
    ]
    for shown, row in zip(listed(db_engine), sorted(rows, key=lambda r: r["version"]), strict=True):
        assert shown.recorded
        assert shown.status == "published"
        assert row["digest"] == shown.digest


def test_a_version_missing_from_the_record_is_recorded_at_the_next_upgrade(
    db_engine: Engine,
) -> None:
    with db_engine.begin() as connection:
        connection.execute(PATHWAY_VERSION.delete())
    assert not listed(db_engine)[0].recorded
    upgrade(db_engine)
    assert listed(db_engine)[0].recorded


def test_a_definition_other_than_the_one_on_record_is_refused(db_engine: Engine) -> None:
    forged = "sha256:" + "0" * 64
    with db_engine.begin() as connection:
        connection.execute(update(PATHWAY_VERSION).values(digest=forged))
    with pytest.raises(DefinitionError, match=f"published to this database as {forged}"):
        listed(db_engine)
    with pytest.raises(DefinitionError, match="lumbosacral-radiculopathy 1.0.0"):
        upgrade(db_engine)
    with db_engine.connect() as connection:  # the failed upgrade changed nothing
        count = connection.execute(select(func.count()).select_from(PATHWAY_VERSION))
        assert count.scalar_one() == 2  # 1.0.0 and 1.1.0, each as it was
