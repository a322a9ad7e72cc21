"""Alembic environment for carepath.

``models.db.upgrade`` passes an open connection in ``config.attributes["connection"]`` (so an
in-memory SQLite database can be migrated); the ``alembic`` command line passes a URL in
``sqlalchemy.url`` instead.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from models.db import make_engine
from models.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(**options: Any) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **options)


def run_migrations_offline() -> None:
    """Emit the SQL to a script instead of running it (``alembic upgrade head --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url is not None and url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or pass a connection")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
