"""Initial tables: queue, sync events, hourly throughput, backlog snapshots, errors, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-03-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The types of models.py as they were at this revision (a revision never imports the models).
UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def text(name: str, length: int, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, UtcDateTime, nullable=nullable)


def integer(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def identity() -> sa.Column:
    return sa.Column("id", BigId, autoincrement=True, nullable=False)


def index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)


def upgrade() -> None:
    op.create_table(
        "dynamics_sync_queue",
        identity(),
        text("object_type", 64),
        text("record_id", 128),
        text("direction", 16),
        text("operation", 16),
        text("state", 16),
        text("label", 255, nullable=True),
        time("queued_at"),
        time("changed_at"),
        integer("change_count"),
        integer("attempts"),
        time("not_before"),
        text("claim_token", 32, nullable=True),
        time("claimed_until", nullable=True),
        time("dirty_since", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynamics_sync_queue")),
        sa.UniqueConstraint(
            "object_type", "record_id", "direction",
            name=op.f("uq_dynamics_sync_queue_object_type_record_id_direction"),
        ),
        **TABLE_OPTIONS,
    )
    index("dynamics_sync_queue", "state", "object_type", "operation", "direction", "queued_at")
    index("dynamics_sync_queue", "state", "queued_at")

    op.create_table(
        "dynamics_sync_event",
        identity(),
        text("object_type", 64),
        text("record_id", 128),
        text("operation", 16),
        text("direction", 16),
        time("synced_at"),
        integer("latency_ms", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynamics_sync_event")),
        **TABLE_OPTIONS,
    )
    index("dynamics_sync_event", "synced_at", "object_type", "operation", "direction", "latency_ms")

    op.create_table(
        "dynamics_sync_hourly",
        time("hour"),
        text("object_type", 64),
        text("operation", 16),
        text("direction", 16),
        integer("synced_count"),
        integer("failed_count"),
        sa.Column("latency_sum_ms", sa.BigInteger(), nullable=False),
        integer("latency_max_ms", nullable=True),
        time("computed_at"),
        sa.PrimaryKeyConstraint(
            "hour", "object_type", "operation", "direction", name=op.f("pk_dynamics_sync_hourly")
        ),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "dynamics_sync_backlog_snapshot",
        time("taken_at"),
        text("object_type", 64),
        text("operation", 16),
        text("direction", 16),
        integer("pending_count"),
        sa.PrimaryKeyConstraint(
            "taken_at", "object_type", "operation", "direction",
            name=op.f("pk_dynamics_sync_backlog_snapshot"),
        ),
        **TABLE_OPTIONS,
    )

    op.create_table(
        "dynamics_sync_error",
        identity(),
        text("object_type", 64),
        text("record_id", 128),
        text("record_label", 255, nullable=True),
        text("operation", 16),
        text("direction", 16),
        text("error_code", 32),
        text("error_message", 2000),
        time("occurred_at"),
        integer("attempt"),
        text("state", 16),
        time("state_changed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynamics_sync_error")),
        **TABLE_OPTIONS,
    )
    index("dynamics_sync_error", "occurred_at")
    index("dynamics_sync_error", "object_type", "occurred_at")
    index("dynamics_sync_error", "error_code", "occurred_at")
    index("dynamics_sync_error", "state", "occurred_at")
    index("dynamics_sync_error", "object_type", "record_id", "direction", "state")
    index("dynamics_sync_error", "record_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index(
            "ix_dynamics_sync_error_search",
            "dynamics_sync_error",
            ["record_id", "record_label", "error_code", "error_message"],
            postgresql_using="gin",
            postgresql_ops={
                "record_id": "gin_trgm_ops",
                "record_label": "gin_trgm_ops",
                "error_code": "gin_trgm_ops",
                "error_message": "gin_trgm_ops",
            },
        )

    op.create_table(
        "dynamics_sync_job",
        text("name", 64),
        text("holder", 128, nullable=True),
        time("lease_expires_at", nullable=True),
        time("last_started_at", nullable=True),
        time("last_finished_at", nullable=True),
        text("last_status", 16, nullable=True),
        text("last_message", 500, nullable=True),
        time("next_run_at", nullable=True),
        time("watermark", nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dynamics_sync_job")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    for table in (
        "dynamics_sync_job",
        "dynamics_sync_error",
        "dynamics_sync_backlog_snapshot",
        "dynamics_sync_hourly",
        "dynamics_sync_event",
        "dynamics_sync_queue",
    ):
        op.drop_table(table)
