"""The access log's chain: append-only in the database, tampering named by verify, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from engine.errors import InvalidEvent
from models.access_log import (
    BULK,
    MAX_LISTED,
    _fields,
    access_hash,
    append_reads,
    json_pieces,
    link,
    read_of,
)
from models.access_reading import AccessFilter, episodes_named, page, verify_access_log
from models.audit import GENESIS_HASH, canonical_json

NOON = datetime(2026, 1, 19, 12, 0, 0, 123456, tzinfo=UTC)


def five_reads() -> list:  # type: ignore[type-arg]
    return [
        read_of("alex", "coordinator", "GET /episodes/{episode_id}", NOON, ["ep-a"]),
        read_of("lab", "service", "GET /episodes", NOON + timedelta(minutes=1), ["ep-a", "ep-b"]),
        read_of("office", "auditor", "GET /audit/export", NOON + timedelta(minutes=2), None,
                query="format=csv"),
        read_of("alex", "coordinator", "GET /worklist", NOON + timedelta(minutes=3), []),
        read_of("sam", "coordinator", "GET /episodes/{episode_id}", NOON + timedelta(minutes=4),
                ["ep-b"], outcome="forbidden"),
    ]  # fmt: skip


@pytest.fixture
def logged(db_engine: Engine) -> Engine:
    """Five reads, appended in two batches."""
    reads = five_reads()
    assert append_reads(db_engine, reads[:2]) == [1, 2]
    assert append_reads(db_engine, reads[2:]) == [3, 4, 5]
    return db_engine


def lift_guards(engine: Engine) -> None:
    """What an intruder with the database owner's rights could do."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            for name in (
                "access_log_no_update",
                "access_log_no_delete",
                "access_log_episode_no_delete",
                "access_head_moves_forward",
            ):
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            for table in ("access_log", "access_log_episode", "access_head"):
                connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")


def snapshot(engine: Engine) -> list[list[tuple[object, ...]]]:
    with engine.connect() as connection:
        return [
            [tuple(r) for r in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in ("access_log", "access_log_episode", "access_head")
        ]


def test_an_intact_log_verifies_with_its_index(logged: Engine) -> None:
    result = verify_access_log(logged)
    assert (result.ok, result.rows_checked, result.problem) == (True, 5, None)
    for batch_size in (1, 2, 5):
        assert verify_access_log(logged, batch_size).ok
    with logged.connect() as connection:
        index = connection.execute(
            text("SELECT seq, episode_id FROM access_log_episode ORDER BY seq, episode_id")
        ).all()
        head = connection.execute(text("SELECT last_seq, last_hash FROM access_head")).one()
        first = connection.execute(text("SELECT prev_hash FROM access_log WHERE seq = 1")).one()
    # Every listed episode once, the export under "*", the empty worklist under nothing.
    assert [tuple(r) for r in index] == [(1, "ep-a"), (2, "ep-a"), (2, "ep-b"), (3, BULK),
                                         (5, "ep-b")]  # fmt: skip
    assert head[0] == 5
    assert first[0] == GENESIS_HASH


def test_an_empty_log_verifies(db_engine: Engine) -> None:
    result = verify_access_log(db_engine)
    assert (result.ok, result.rows_checked) == (True, 0)


def test_the_rows_read_back_as_recorded(logged: Engine) -> None:
    rows, cursor = page(logged, AccessFilter())
    assert cursor is None
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    first, _, export, worklist, forbidden = rows
    assert (first["actor"], first["role"]) == ("alex", "coordinator")
    assert first["route"] == "GET /episodes/{episode_id}"
    assert (first["episode_ids"], first["episode_count"]) == (["ep-a"], 1)
    assert first["recorded_at"] == "2026-01-19T12:00:00.123456+00:00"
    assert (export["episode_ids"], export["episode_count"], export["query"]) == (
        None, None, "format=csv",
    )  # fmt: skip
    assert (worklist["episode_ids"], worklist["episode_count"]) == ([], 0)
    assert forbidden["outcome"] == "forbidden"
    # The hash covers every recorded field, as read back.
    recorded = {**first, "recorded_at": datetime.fromisoformat(first["recorded_at"])}
    assert access_hash(recorded, GENESIS_HASH) == first["hash"]
    assert access_hash({**recorded, "query": "x"}, GENESIS_HASH) != first["hash"]


def test_the_database_refuses_to_change_or_remove_a_read(logged: Engine) -> None:
    before = snapshot(logged)
    statements = [
        "UPDATE access_log SET actor = 'someone.else' WHERE seq = 3",
        "DELETE FROM access_log WHERE seq = 4",
        "DELETE FROM access_log",
        "UPDATE access_log_episode SET episode_id = 'ep-z' WHERE seq = 1",
        "DELETE FROM access_log_episode WHERE seq = 2",
        "DELETE FROM access_head",
        # The head only moves forward, onto a row of the log.
        "UPDATE access_head SET last_seq = 3, last_hash = (SELECT hash FROM access_log "
        "WHERE seq = 3)",
        f"UPDATE access_head SET last_hash = '{'f' * 64}'",
        f"UPDATE access_head SET last_seq = 6, last_hash = '{'f' * 64}'",
    ]
    if logged.dialect.name == "postgresql":
        statements += ["TRUNCATE access_log", "TRUNCATE access_log_episode", "TRUNCATE access_head"]
    for statement in statements:
        refused = pytest.raises(IntegrityError, match="append-only|only moves forward")
        with refused, logged.begin() as connection:
            connection.exec_driver_sql(statement)
    assert snapshot(logged) == before
    assert verify_access_log(logged).ok


def test_an_altered_row_is_named(logged: Engine) -> None:
    lift_guards(logged)
    with logged.begin() as connection:
        connection.exec_driver_sql("UPDATE access_log SET actor = 'nobody' WHERE seq = 3")
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem == "row 3 (nobody, GET /audit/export): hash mismatch: the row was altered"


def test_a_rehashed_row_breaks_the_next_link(logged: Engine) -> None:
    # A careful intruder recomputes the altered row's own hash (with the project's own
    # function); the next row still points at the old one.
    lift_guards(logged)
    rows, _ = page(logged, AccessFilter())
    forged = {**rows[1], "recorded_at": datetime.fromisoformat(rows[1]["recorded_at"]),
              "episode_ids": ["ep-b"], "episode_count": 1}  # fmt: skip
    digest = access_hash(forged, forged["prev_hash"])
    with logged.begin() as connection:
        connection.execute(
            text("UPDATE access_log SET episode_ids = :ids, episode_count = 1, hash = :h "
                 "WHERE seq = 2"),
            {"ids": '["ep-b"]', "h": digest},
        )  # fmt: skip
        connection.exec_driver_sql(
            "DELETE FROM access_log_episode WHERE seq = 2 AND episode_id = 'ep-a'"
        )
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.problem == "row 3 (office, GET /audit/export): prev_hash does not match row 2"


def test_a_deleted_row_is_named(logged: Engine) -> None:
    lift_guards(logged)
    with logged.begin() as connection:
        connection.exec_driver_sql("DELETE FROM access_log WHERE seq = 2")
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem == "row 2 missing: the log goes from row 1 to row 3"


def test_rows_cut_off_the_end_are_caught_by_the_head(logged: Engine) -> None:
    lift_guards(logged)
    with logged.begin() as connection:
        connection.exec_driver_sql("DELETE FROM access_log WHERE seq = 5")
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "access_head says 5 rows, log has 4"


def test_an_edited_head_is_caught(logged: Engine) -> None:
    lift_guards(logged)
    with logged.begin() as connection:
        connection.exec_driver_sql(f"UPDATE access_head SET last_hash = '{'f' * 64}'")
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "access_head hash does not match row 5"

    with logged.begin() as connection:
        connection.exec_driver_sql("UPDATE access_head SET last_seq = 4")
    assert verify_access_log(logged).problem == "access_head says 4 rows, log has 5"


def test_a_read_removed_from_the_episode_index_is_caught(logged: Engine) -> None:
    # Hiding a read from "who read ep-b" without touching the chained row.
    lift_guards(logged)
    with logged.begin() as connection:
        connection.exec_driver_sql("DELETE FROM access_log_episode WHERE episode_id = 'ep-b'")
    assert page(logged, AccessFilter(episode_id="ep-b"))[0] == [page(logged, AccessFilter())[0][2]]
    result = verify_access_log(logged)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem == (
        "row 2 (lab, GET /episodes): the episode index does not match the row "
        "(missing: ep-b; extra: none)"
    )


def test_filters_by_time_actor_and_episode_with_a_cursor(logged: Engine) -> None:
    def seqs(where: AccessFilter, after: int = 0, limit: int = 100) -> list[int]:
        return [row["seq"] for row in page(logged, where, after, limit)[0]]

    assert seqs(AccessFilter(since=NOON + timedelta(minutes=1))) == [2, 3, 4, 5]
    assert seqs(AccessFilter(until=NOON + timedelta(minutes=2))) == [1, 2]
    assert seqs(AccessFilter(actor="alex")) == [1, 4]
    # An episode's reads, and the export that may have shown it.
    assert seqs(AccessFilter(episode_id="ep-a")) == [1, 2, 3]
    assert seqs(AccessFilter(episode_id="ep-b")) == [2, 3, 5]
    assert seqs(AccessFilter(episode_id="ep-none")) == [3]
    rows, cursor = page(logged, AccessFilter(), 0, 2)
    assert ([r["seq"] for r in rows], cursor) == ([1, 2], 2)
    assert seqs(AccessFilter(), after=cursor) == [3, 4, 5]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": datetime(2026, 1, 1)}, "since"),
        ({"until": datetime(2026, 1, 1)}, "until"),
        ({"since": NOON, "until": NOON}, "until"),
        ({"actor": "a\x00b"}, "actor"),
        ({"episode_id": "e\x00"}, "episode"),
    ],
)
def test_a_bad_filter_names_its_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        AccessFilter(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_read_lists_each_episode_once_up_to_the_bound() -> None:
    entry = read_of("a", "service", "GET /episodes", NOON, ["e1", "e2", "e1"])
    assert (entry.episode_ids, entry.episode_count) == (("e1", "e2"), 2)
    many = read_of("a", "calendar", "GET /calendar/{coordinator}.ics", NOON,
                   (f"e{i}" for i in range(MAX_LISTED + 1)))  # fmt: skip
    assert (many.episode_ids, many.episode_count) == (None, MAX_LISTED + 1)
    exported = read_of("a", "auditor", "GET /audit/export", NOON, None)
    assert (exported.episode_ids, exported.episode_count) == (None, None)
    # An id asked for that cannot be stored as it is (a NUL, a line break) is escaped.
    odd = read_of("a", "service", "GET /episodes/{episode_id}", NOON, ["x\x00\r\ny", "z" * 99],
                  outcome="not_found")  # fmt: skip
    assert odd.episode_ids == ("x\\x00\\r\\ny", "z" * 64)
    with pytest.raises(ValueError, match="outcome"):
        read_of("a", "service", "GET /", NOON, [], outcome="maybe")


def test_odd_ids_and_big_reads_are_stored_and_verify(db_engine: Engine) -> None:
    # Hashed in the database on PostgreSQL, here on SQLite: verify recomputes in Python.
    reads = [
        read_of("Zoë Ødegård", "coordinator", "GET /worklist", NOON, ["é-1", "ep\"2\\"],
                query="coordinator=Zo%C3%AB&note=\u2603"),
        read_of("a", "service", "GET /episodes/{episode_id}", NOON, ["x\x00\ud800"],
                outcome="not_found"),
        read_of("a", "calendar", "GET /calendar/{coordinator}.ics", NOON,
                (f"e{i}" for i in range(MAX_LISTED + 5))),
    ]  # fmt: skip
    append_reads(db_engine, reads)
    rows, _ = page(db_engine, AccessFilter(episode_id="e3"))
    assert [(r["seq"], r["episode_count"]) for r in rows] == [(3, MAX_LISTED + 5)]
    assert page(db_engine, AccessFilter(actor="Zoë Ødegård"))[0][0]["episode_ids"] == [
        "\\xe9-1", 'ep"2\\',  # ids are kept to printable ASCII
    ]  # fmt: skip
    result = verify_access_log(db_engine)
    assert (result.ok, result.rows_checked) == (True, 3), result.problem


def test_the_pieces_the_database_hashes_make_the_rows_canonical_json() -> None:
    for entry in five_reads():
        before, middle = json_pieces(entry)
        fields = {"seq": 42, **_fields(entry)}
        text = before + "ab" * 32 + middle + "42}"
        assert text == canonical_json({**fields, "prev_hash": "ab" * 32})
        assert link(41, "ab" * 32, [entry])[0]["hash"] == access_hash(fields, "ab" * 32)


def test_episodes_named_by_a_page_of_the_log() -> None:
    rows = [{"episode_ids": ["a", "b"]}, {"episode_ids": None}, {"episode_ids": ["b", "c"]}]
    assert episodes_named(rows) == ["a", "b", "c"]
