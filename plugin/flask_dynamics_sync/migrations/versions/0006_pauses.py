"""Pauses: objects and directions an operator paused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynamics_sync_pause",
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("paused_by", sa.String(255), nullable=True),
        sa.Column("paused_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("object_type", "direction", name=op.f("pk_dynamics_sync_pause")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("dynamics_sync_pause")
