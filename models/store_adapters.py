"""What differs between the databases carepath runs on, each in one adapter.

:class:`~models.episode_store.EpisodeStore` reads and writes an episode's rows with
statements every database runs, one at a time. An adapter is the store for one database:
what it does differently is here, and nowhere else on the hot path.

- :class:`SqliteStore`: a file in the process. ``BEGIN IMMEDIATE`` takes the write lock up
  front, so writers are serialised and the portable statements need no locks; round trips
  cost nothing, so nothing is batched.
- :class:`PostgresStore`: a server. A writer's transaction is pipelined (BEGIN, the reads,
  the writes and COMMIT in two round trips), a batch of rows of a kind goes in one
  statement, a batch's episodes are read (and locked) in one statement each, timers are
  claimed by the database's clock with ``SKIP LOCKED``, and an event, its audit row and the
  chain's head are written in one statement.

:func:`store_for` picks the adapter for an engine's dialect; :func:`models.store.transaction`
asks it how to begin and end a transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Dialect, Table

from engine.clinic_time import to_utc
from engine.errors import UnreadableEpisode
from models.db import begin_sqlite
from models.episode_store import (
    Claimed,
    EpisodeStore,
    Loaded,
    _loaded,
    claimed_from,
    first_of_each,
)
from models.statements import Cursor, Rows
from models.step_sql import PostgresStatements, Statements, statements_for
from models.stored import converted
from models.timeouts import DatabaseTimeouts

# From this many rows the one-statement form of a write (BulkWrites) costs the driver less
# than the statement repeated: below it, building and sending the arrays costs more than
# it saves (measured with timer rows on PostgreSQL: even at three, ahead from four).
BULK_FROM_ROWS = 4


class SqliteStore(EpisodeStore):
    """SQLite: the portable statements, in a transaction that holds the write lock."""

    @staticmethod
    def prepare(driver: Any) -> None:
        """Nothing to set on the connection before a transaction."""

    @staticmethod
    def pipeline(driver: Any, read_only: bool) -> AbstractContextManager[Any]:
        return nullcontext()

    @staticmethod
    def begin(driver: Any, cursor: Cursor, read_only: bool, timeouts: DatabaseTimeouts) -> None:
        # A writer takes the write lock up front (BEGIN IMMEDIATE), a reader a snapshot.
        busy_ms = timeouts.sqlite_busy_timeout_ms
        begin_sqlite(driver, "BEGIN" if read_only else "BEGIN IMMEDIATE", busy_ms)

    @staticmethod
    def commit(driver: Any, cursor: Cursor, read_only: bool) -> None:
        driver.commit()

    @staticmethod
    def release(driver: Any) -> None:
        """Nothing to undo on the connection after a transaction."""

    insert = staticmethod(Statements.insert)

    @staticmethod
    def claimed(query: Any, of: Table) -> Any:
        """``query``'s rows, claimed for this transaction: the write lock already has."""
        return query


class PostgresStore(EpisodeStore):
    """PostgreSQL: pipelined transactions, batches in one statement, the server's clock."""

    sql: PostgresStatements
    pipelined = True

    @staticmethod
    def prepare(driver: Any) -> None:
        # carepath sends BEGIN and COMMIT itself (the driver is in autocommit mode
        # meanwhile): left to psycopg, each would cost a round trip of its own.
        driver.autocommit = True

    @staticmethod
    def pipeline(driver: Any, read_only: bool) -> AbstractContextManager[Any]:
        return nullcontext() if read_only else cast(AbstractContextManager[Any], driver.pipeline())

    @staticmethod
    def begin(driver: Any, cursor: Cursor, read_only: bool, timeouts: DatabaseTimeouts) -> None:
        # A reader runs without a transaction: under READ COMMITTED each statement sees a
        # snapshot of its own either way.
        if not read_only:
            cursor.writer.execute("BEGIN")

    @staticmethod
    def commit(driver: Any, cursor: Cursor, read_only: bool) -> None:
        if not read_only:
            cursor.writer.execute("COMMIT")

    @staticmethod
    def release(driver: Any) -> None:
        driver.autocommit = False

    insert = staticmethod(PostgresStatements.insert)

    @staticmethod
    def claimed(query: Any, of: Table) -> Any:
        """Locked until commit, skipping the rows another transaction holds."""
        return query.with_for_update(of=of, skip_locked=True)

    def write_many(self, statement: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """From :data:`BULK_FROM_ROWS` rows, one statement (see :class:`BulkWrites`) where
        the rows' keys are distinct; otherwise one by one."""
        bulk = None if len(rows) < BULK_FROM_ROWS else self.sql.bulk.get(statement)
        if bulk is not None:
            writer, keys = bulk
            distinct = not keys or len({tuple(r[k] for k in keys) for r in rows}) == len(rows)
            if distinct:
                self.cursor.run_bulk(writer, rows)
                return
        super().write_many(statement, rows)

    def claim_due(
        self, now: datetime | None, limit: int, episode_id: str | None = None
    ) -> Claimed:
        """``now`` None: what is due is decided by the database's clock (the transaction's
        ``now()``, read back with the timers in the same round trip), not by a worker's,
        which may be skewed."""
        if now is not None or episode_id is not None:
            return super().claim_due(now, limit, episode_id)
        clock = self.cursor.query(self.sql.database_now, {})
        query = self.cursor.query(self.sql.claim_timers_by_database_clock, {"b_limit": limit})
        reading = clock.first()
        assert reading is not None
        return claimed_from(to_utc(reading["now"]), query)

    def read_many(self, episode_ids: Sequence[str]) -> dict[str, Loaded | UnreadableEpisode]:
        """In one round trip: one statement each for the episodes (locked in id order) and
        their due items."""
        ordered = sorted(set(episode_ids))
        reads = self.sql.batch_reads
        episodes = self.cursor.query(reads.episodes, {"b_ids": ordered})
        task_rows = self.cursor.query(reads.tasks, {"b_ids": ordered})
        return _read_set(ordered, episodes, task_rows)

    def lock_pending_timers(self, episode_ids: Sequence[str]) -> None:
        reads = self.sql.batch_reads
        self.cursor.query(reads.lock_timers, {"b_ids": sorted(set(episode_ids))}).raw()

    def last_steps(self, episode_ids: Sequence[str]) -> dict[str, int]:
        found = self.cursor.query(self.sql.batch_reads.last_steps, {"b_ids": list(episode_ids)})
        return {row["episode_id"]: int(row["seq"]) for row in found.all()}

    def held_elsewhere(self, timers: Sequence[Mapping[str, Any]]) -> set[str]:
        first = first_of_each(timers)
        found = self.cursor.query(
            self.sql.batch_reads.held,
            {
                "b_ids": list(first),
                "b_due": [t["due_at"] for t in first.values()],
                "b_timer": [t["id"] for t in first.values()],
            },
        )
        return {row["episode_id"] for row in found.all()}

    def record_event(self, event: Mapping[str, Any], **audit: Any) -> dict[str, Any]:
        """Both rows and the chain's new head in one statement."""
        chain = self.audit_chain()
        row = chain.append(**audit)
        self.cursor.run(
            self.sql.event_with_audit,
            {**{f"event_{k}": v for k, v in event.items()}, **row, "head_seal": chain.head_seal()},
        )
        return row


def _read_set(
    ordered: list[str], episodes: Rows, task_rows: Rows
) -> dict[str, Loaded | UnreadableEpisode]:
    """A batch's episodes from one statement each for episodes and due items, each row
    converted on its own, so that a row that does not parse spoils only its episode. (The
    first column of both statements is the episode's id, which needs no conversion.)"""
    found: dict[str, Loaded | UnreadableEpisode] = {}
    rows: dict[str, dict[str, Any]] = {}
    tasks: dict[str, list[dict[str, Any]]] = {episode_id: [] for episode_id in ordered}
    for raw in episodes.raw():
        try:
            rows[raw[0]] = converted(raw[0], episodes.statement.row, raw)
        except UnreadableEpisode as exc:
            found[raw[0]] = exc
    for raw in task_rows.raw():
        if raw[0] in found:
            continue
        try:
            tasks[raw[0]].append(
                converted(raw[0], task_rows.statement.row, raw, what="a due item's row")
            )
        except UnreadableEpisode as exc:
            found[raw[0]] = exc
            rows.pop(raw[0], None)
    for episode_id in ordered:
        if episode_id in found:
            continue
        row = rows.get(episode_id)
        if row is None:
            found[episode_id] = UnreadableEpisode(episode_id, "the episode row is missing")
            continue
        try:
            found[episode_id] = _loaded(row, tasks[episode_id])
        except UnreadableEpisode as exc:
            found[episode_id] = exc
    return found



def store_for(dialect: Dialect) -> type[SqliteStore] | type[PostgresStore]:
    """The adapter for ``dialect``.

    Raises:
        ValueError: a database carepath does not run on.
    """
    if dialect.name == "postgresql":
        return PostgresStore
    if dialect.name == "sqlite":
        return SqliteStore
    raise ValueError(f"carepath runs on SQLite and PostgreSQL, not {dialect.name}")


__all__ = ["PostgresStore", "SqliteStore", "statements_for", "store_for"]
