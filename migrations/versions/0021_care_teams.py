"""Care teams, cover and the episode's team.

``team_member`` says which coordinators are in which care team, and where their mail goes;
``cover`` keeps who covers whose list until when. An episode may be among a team's
(``episode.team``, set at opening); its due items carry the team as they carry their owner,
so that a team's unassigned queue is read from an index in urgency order. Existing episodes
are among no team: they stay with their coordinator, or in the clinic-wide unassigned queue.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("episode", sa.Column("team", sa.String(128), nullable=True))
    op.create_index(op.f("ix_episode_team"), "episode", ["team"])
    op.add_column("task", sa.Column("team", sa.String(128), nullable=True))
    op.create_index(
        op.f("ix_task_team_owner_severity_due_at"), "task",
        ["team", "owner", "severity", "due_at", "id"],
    )  # fmt: skip
    op.create_table(
        "team_member",
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("coordinator", sa.String(128), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team", "coordinator", name=op.f("pk_team_member")),
    )
    op.create_index(op.f("ix_team_member_coordinator"), "team_member", ["coordinator"])
    op.create_table(
        "cover",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("coordinator", sa.String(128), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cover")),
    )
    op.create_index(op.f("ix_cover_by_ends_at"), "cover", ["by", "ends_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_cover_by_ends_at"), table_name="cover")
    op.drop_table("cover")
    op.drop_index(op.f("ix_team_member_coordinator"), table_name="team_member")
    op.drop_table("team_member")
    op.drop_index(op.f("ix_task_team_owner_severity_due_at"), table_name="task")
    op.drop_column("task", "team")
    op.drop_index(op.f("ix_episode_team"), table_name="episode")
    op.drop_column("episode", "team")
