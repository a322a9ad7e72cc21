"""Fixtures for the whole suite: every database test runs on SQLite and on PostgreSQL.

Each test gets a fresh, migrated database. Migrating takes a while, copying does not: the
schema is migrated once per session into a template (a file for SQLite, a template database
for PostgreSQL) and each test gets a copy.

PostgreSQL comes from ``CAREPATH_TEST_POSTGRES_URL``. When it cannot be reached its tests are
skipped with the reason, unless ``CAREPATH_REQUIRE_POSTGRES=1`` (CI), which fails them.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

import pathways
from engine.settings import OPENING_VERSION_ENV
from models.db import describe_url, make_engine, make_session_factory, normalize_url, upgrade

# The suite written for 1.0.0 runs on it, its subprocesses too: an episode opens on 1.0.0
# unless a test names its version (the 1.1.0 tests do) or lifts this (the default's own).
os.environ[OPENING_VERSION_ENV] = "1.0.0"

POSTGRES_URL_ENV = "CAREPATH_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REQUIRE_POSTGRES_ENV = "CAREPATH_REQUIRE_POSTGRES"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "carepath.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    # Closing the last connection checkpoints the WAL into the file, so the file alone
    # is the whole database.
    engine.dispose()
    return path


class PostgresCopies:
    """Copies of a migrated template database, made and dropped by helper threads.

    ``CREATE DATABASE ... TEMPLATE`` takes 100-200 ms, mostly waiting on fsync: a few
    helpers make the next copies while a test runs and drop used ones afterwards, so a
    test seldom waits for either.
    """

    AHEAD = 3
    WORKERS = 3
    WAIT_SECONDS = 120

    def __init__(self, server: Engine, template: str) -> None:
        self._server = server
        self._template = template
        self._names = (f"carepath_t_{os.getpid()}_{n}" for n in itertools.count(1))
        self._jobs: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[str | BaseException] = queue.SimpleQueue()
        self._drop_errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"postgres-copies-{n}", daemon=True)
            for n in range(self.WORKERS)
        ]
        for thread in self._threads:
            thread.start()
        for _ in range(self.AHEAD):
            self._jobs.put(("create", next(self._names)))

    def take(self) -> str:
        """The name of a fresh copy; the caller gives it back when done."""
        self._jobs.put(("create", next(self._names)))
        try:
            made = self._ready.get(timeout=self.WAIT_SECONDS)
        except queue.Empty:
            raise RuntimeError("no PostgreSQL test database after two minutes") from None
        if isinstance(made, BaseException):
            raise made
        return made

    def give_back(self, name: str) -> None:
        self._jobs.put(("drop", name))

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        with self._server.connect() as connection:
            while True:
                try:
                    left = self._ready.get_nowait()
                except queue.Empty:
                    break
                if isinstance(left, str):
                    _drop_database(connection, left)
        if self._drop_errors:
            raise self._drop_errors[0]

    def _work(self) -> None:
        try:
            connection = self._server.connect()
        except BaseException as exc:
            self._ready.put(exc)
            return
        with connection:
            while (job := self._jobs.get()) is not None:
                action, name = job
                try:
                    if action == "create":
                        connection.exec_driver_sql(
                            f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'
                        )
                        self._ready.put(name)
                    else:
                        _drop_database(connection, name)
                except BaseException as exc:
                    if action == "create":
                        self._ready.put(exc)
                    else:
                        self._drop_errors.append(exc)


def _drop_database(connection: Connection, name: str) -> None:
    # FORCE: a test that forgot to dispose an engine must not leak the database.
    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_unreachable(url: URL, error: Exception) -> NoReturn:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    message = f"PostgreSQL not reachable at {describe_url(url)}: {reason}; set {POSTGRES_URL_ENV}"
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server_url() -> URL:
    return normalize_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))


@pytest.fixture(scope="session")
def postgres_copies(postgres_server_url: URL) -> Iterator[PostgresCopies]:
    """A migrated template database (one per test session), and the copies made from it."""
    server = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        admin = server.connect()
    except DBAPIError as exc:
        server.dispose()
        _postgres_unreachable(postgres_server_url, exc)

    template = f"carepath_tpl_{os.getpid()}"
    copies: PostgresCopies | None = None
    try:
        _drop_database(admin, template)
        admin.exec_driver_sql(f'CREATE DATABASE "{template}"')
        engine = make_engine(postgres_server_url.set(database=template))
        try:
            upgrade(engine)
        finally:
            # CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template.
            engine.dispose()
        copies = PostgresCopies(server, template)
        yield copies
    finally:
        try:
            if copies is not None:
                copies.close()
        finally:
            _drop_database(admin, template)
            admin.close()
            server.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "carepath.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return

    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database, for what only SQLite can show: its columns hold
    whatever is written to them, where PostgreSQL's types refuse it."""
    path = tmp_path / "carepath.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(db_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(db_engine)


@pytest.fixture
def postgres_url(postgres_copies: PostgresCopies, postgres_server_url: URL) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, for what only PostgreSQL can show (several
    worker processes sharing one database). Mark such tests ``postgres``."""
    name = postgres_copies.take()
    try:
        yield postgres_server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        postgres_copies.give_back(name)


@pytest.fixture
def with_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The pathway's package as shipped, plus a 1.2.0 definition not yet published."""
    package = Path(pathways.__file__).parent / "lumbosacral_radiculopathy"
    copy = tmp_path / "drafted_pathway"
    shutil.copytree(package, copy)
    first = (package / "1.0.0.toml").read_text("utf-8")
    (copy / "1.2.0.toml").write_text(first.replace('version = "1.0.0"', 'version = "1.2.0"', 1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(pathways.PACKAGES, pathways.LUMBOSACRAL_RADICULOPATHY, "drafted_pathway")
    caches = (pathways.definition, pathways._published, pathways.code)
    for cached in caches:
        cached.cache_clear()
    yield
    for cached in caches:
        cached.cache_clear()
    sys.modules.pop("drafted_pathway", None)
