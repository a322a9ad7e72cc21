"""The access log: every read of episode data, hash-chained, append-only.

``access_log`` holds one row per read (who, role, route, episodes, outcome, time) chained by
SHA-256 like the audit log; ``access_log_episode`` indexes the rows by episode;
``access_head`` is the chain's head. Triggers refuse UPDATE and DELETE on the log and its
index, refuse deleting the head, and let the head move only forward, onto a row of the log.

On PostgreSQL, ``access_log_append`` appends a batch in one statement, so that the head
stays locked only while the database works (not across a round trip to the client): each
row's canonical JSON comes from carepath in two pieces, around its ``prev_hash`` and
before its ``seq``, and the function fills those in and hashes (see
``models.access_log``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
APPEND_ONLY = ("access_log", "access_log_episode")
HEAD_MESSAGE = "access_head only moves forward, onto a row of access_log"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("episode_ids", _json(), nullable=True),
        sa.Column("episode_count", sa.Integer(), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access_log")),
        sa.CheckConstraint(
            "\"outcome\" IN ('answered', 'forbidden', 'not_found')",
            name=op.f("ck_access_log_outcome"),
        ),
    )
    op.create_index(op.f("ix_access_log_actor_seq"), "access_log", ["actor", "seq"])
    op.create_index(op.f("ix_access_log_recorded_at"), "access_log", ["recorded_at"])

    op.create_table(
        "access_log_episode",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("episode_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", "episode_id", name=op.f("pk_access_log_episode")),
    )
    op.create_index(
        op.f("ix_access_log_episode_episode_id_seq"), "access_log_episode", ["episode_id", "seq"]
    )

    access_head = op.create_table(
        "access_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_access_head_single_row")),
    )
    op.bulk_insert(access_head, [{"id": 1, "last_seq": 0, "last_hash": GENESIS_HASH}])

    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        _postgresql_triggers()
    elif dialect == "sqlite":
        _sqlite_triggers()
    else:
        raise NotImplementedError(f"no append-only triggers for {dialect}")


def _postgresql_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION access_log_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation',
                      HINT = 'reads are recorded, never changed or removed';
        END
        $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
        )
    op.execute(
        f"""
        CREATE FUNCTION access_head_moves_forward() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.last_seq < OLD.last_seq
               OR NOT EXISTS (SELECT 1 FROM access_log
                              WHERE seq = NEW.last_seq AND hash = NEW.last_hash) THEN
                RAISE EXCEPTION '{HEAD_MESSAGE}' USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER access_head_moves_forward BEFORE UPDATE OR DELETE ON access_head "
        "FOR EACH ROW EXECUTE FUNCTION access_head_moves_forward()"
    )
    op.execute(
        "CREATE TRIGGER access_head_no_truncate BEFORE TRUNCATE ON access_head "
        "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
    )
    op.execute(APPEND_FUNCTION)


APPEND_FUNCTION = """
CREATE FUNCTION access_log_append(
    p_recorded_at timestamptz[], p_actor text[], p_role text[], p_route text[],
    p_outcome text[], p_episode_ids jsonb[], p_episode_count integer[], p_query text[],
    p_before text[], p_middle text[], p_index_row integer[], p_index_episode text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    head_seq integer;
    link text;
    prevs text[] := '{}';
    hashes text[] := '{}';
    n integer := cardinality(p_actor);
BEGIN
    SELECT last_seq, last_hash INTO head_seq, link FROM access_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'access_head row is missing: run `carepath db upgrade`';
    END IF;
    FOR i IN 1 .. n LOOP
        prevs[i] := link;
        link := encode(sha256(convert_to(
            p_before[i] || link || p_middle[i] || (head_seq + i)::text || '}', 'UTF8')), 'hex');
        hashes[i] := link;
    END LOOP;
    INSERT INTO access_log (seq, recorded_at, actor, role, route, outcome, episode_ids,
                            episode_count, query, prev_hash, hash)
    SELECT head_seq + i, p_recorded_at[i], p_actor[i], p_role[i], p_route[i], p_outcome[i],
           p_episode_ids[i], p_episode_count[i], p_query[i], prevs[i], hashes[i]
    FROM generate_subscripts(p_actor, 1) AS i;
    INSERT INTO access_log_episode (seq, episode_id)
    SELECT head_seq + r, e FROM unnest(p_index_row, p_index_episode) AS u(r, e);
    UPDATE access_head SET last_seq = head_seq + n, last_hash = link WHERE id = 1;
    RETURN head_seq + n;
END
$$
"""


def _sqlite_triggers() -> None:
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER access_head_no_delete BEFORE DELETE ON access_head "
        f"BEGIN SELECT RAISE(ABORT, '{HEAD_MESSAGE}'); END"
    )
    op.execute(
        "CREATE TRIGGER access_head_moves_forward BEFORE UPDATE ON access_head "
        "WHEN NEW.id <> OLD.id OR NEW.last_seq < OLD.last_seq OR NOT EXISTS "
        "(SELECT 1 FROM access_log WHERE seq = NEW.last_seq AND hash = NEW.last_hash) "
        f"BEGIN SELECT RAISE(ABORT, '{HEAD_MESSAGE}'); END"
    )


def downgrade() -> None:
    # Dropping a table drops its triggers; the PostgreSQL functions outlive them.
    op.drop_table("access_head")
    op.drop_index(op.f("ix_access_log_episode_episode_id_seq"), table_name="access_log_episode")
    op.drop_table("access_log_episode")
    op.drop_index(op.f("ix_access_log_recorded_at"), table_name="access_log")
    op.drop_index(op.f("ix_access_log_actor_seq"), table_name="access_log")
    op.drop_table("access_log")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS access_log_append")
        op.execute("DROP FUNCTION IF EXISTS access_head_moves_forward()")
        op.execute("DROP FUNCTION IF EXISTS access_log_append_only()")
