"""The migrations build exactly the schema the models describe, on both backends.

Also the connection plumbing in ``models.db``: URLs, unreachable servers, column types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect
from sqlalchemy.exc import StatementError

from models.db import (
    DEFAULT_URL,
    DatabaseUnavailable,
    alembic_config,
    check_connection,
    current_revision,
    database_url,
    downgrade,
    make_engine,
    upgrade,
)
from models.tables import Base, DueTimer

TABLES = {
    "episode", "clinical_event", "due_timer", "task", "audit_log", "audit_head",
    "access_log", "access_log_episode", "access_head",
}  # fmt: skip


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences: list[Any] = compare_metadata(context, Base.metadata)
        return differences


def test_models_match_migrations(db_engine: Engine) -> None:
    assert schema_differences(db_engine) == []


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_migrated_database_is_at_head(db_engine: Engine) -> None:
    assert current_revision(db_engine) == head_revision()


def test_downgrade_to_base_then_upgrade_again(db_engine: Engine) -> None:
    downgrade(db_engine, "base")
    assert TABLES.isdisjoint(inspect(db_engine).get_table_names())
    assert current_revision(db_engine) is None

    upgrade(db_engine)
    assert set(inspect(db_engine).get_table_names()) >= TABLES
    assert schema_differences(db_engine) == []


def test_upgrade_at_head_changes_nothing(db_engine: Engine) -> None:
    upgrade(db_engine)
    assert current_revision(db_engine) == head_revision()


def test_in_memory_sqlite_can_be_migrated() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_an_unreachable_server_is_named_without_its_password() -> None:
    engine = make_engine("postgresql://carepath:s3cret@127.0.0.1:1/clinic")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            check_connection(engine)
    finally:
        engine.dispose()
    assert caught.value.where == "carepath@127.0.0.1:1/clinic"
    assert str(caught.value).startswith(
        "cannot reach the database at carepath@127.0.0.1:1/clinic: "
    )
    assert "s3cret" not in str(caught.value)


def test_the_database_url_comes_from_the_command_line_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CAREPATH_DATABASE_URL", raising=False)
    assert database_url(None) == DEFAULT_URL
    monkeypatch.setenv("CAREPATH_DATABASE_URL", "postgresql://clinic@db.example/carepath")
    assert database_url(None) == "postgresql+psycopg://clinic@db.example/carepath"
    assert database_url("sqlite:///other.db") == "sqlite:///other.db"


def test_a_naive_datetime_is_refused_by_the_column(db_engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db_engine.begin() as connection:
        connection.execute(
            insert(DueTimer).values(
                episode_id="ep-a",
                kind="task",
                due_at=datetime(2025, 3, 3, 9, 0),
                set_at=datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
            )
        )


def test_items_written_before_severity_are_ranked_as_the_pathway_ranks_them(
    db_engine: Engine,
) -> None:
    """Revision 0017 ranks the items already stored: the same ranks the pathway gives."""
    from sqlalchemy import select

    from engine.events import parse_event, parse_opening
    from models.repository import EpisodeRepository
    from models.tables import Task

    repo = EpisodeRepository(db_engine)
    now = datetime(2026, 1, 19, 10, tzinfo=UTC)
    for ref, flag in (("P-ces", "ces"), ("P-prog", "progressive_deficit"), ("P-routine", None)):
        opened = repo.open(parse_opening({"patient": {"ref": ref}, "onset": "2026-01-05"}), now)
        if flag:
            event = {"type": "red_flag", "data": {"kind": flag}, "actor": "dr-a"}
            repo.apply_parsed(opened["id"], parse_event(event), now)
    query = select(Task.key, Task.rule, Task.severity).order_by(Task.id)
    with db_engine.connect() as connection:
        ranked = connection.execute(query).all()
    assert {(key, severity) for key, _, severity in ranked} >= {
        ("ces_emergency", 0), ("urgent_workup", 1), ("first_follow_up", 4),
    }  # fmt: skip
    downgrade(db_engine, "0016")
    upgrade(db_engine)
    with db_engine.connect() as connection:
        assert connection.execute(query).all() == ranked
