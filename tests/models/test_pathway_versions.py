"""The database records each published pathway version with its digest, once, and refuses a
shipped definition whose digest differs from the one on record."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select, update

from engine.definition import DefinitionError
from models.db import upgrade
from models.pathway_versions import PATHWAY_VERSION, listed, record_published


def test_upgrade_records_every_published_version_once(db_engine: Engine) -> None:
    upgrade(db_engine)  # again: nothing more is recorded
    with db_engine.connect() as connection:
        rows = connection.execute(select(PATHWAY_VERSION)).mappings().all()
        assert record_published(connection) == []
    assert [(r["pathway_id"], r["version"]) for r in rows] == [
        ("lumbosacral-radiculopathy", "1.0.0")
    ]
    shown = listed(db_engine)[0]
    assert shown.version == "1.0.0"
    assert shown.recorded
    assert shown.status == "published"
    assert rows[0]["digest"] == shown.digest


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
        assert count.scalar_one() == 1
