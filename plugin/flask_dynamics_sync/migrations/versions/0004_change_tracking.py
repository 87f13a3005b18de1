"""Change tracking: where each mapped table's read from Dataverse stands.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynamics_sync_change_tracking",
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("full_reads", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("object_type", name=op.f("pk_dynamics_sync_change_tracking")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("dynamics_sync_change_tracking")
