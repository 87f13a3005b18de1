"""The sync workers' figures: one row per worker process.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynamics_sync_worker",
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("heartbeat_at", UtcDateTime, nullable=False),
        sa.Column("stopped_at", UtcDateTime, nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("requests", "throttled", "retries", "token_refreshes", "records_synced", "records_failed")
        ),
        sa.Column("records_per_second", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_dynamics_sync_worker")),
        **TABLE_OPTIONS,
    )
    op.create_index(
        op.f("ix_dynamics_sync_worker_heartbeat_at"), "dynamics_sync_worker", ["heartbeat_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dynamics_sync_worker_heartbeat_at"), table_name="dynamics_sync_worker")
    op.drop_table("dynamics_sync_worker")
