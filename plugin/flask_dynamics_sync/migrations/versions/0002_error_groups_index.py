"""Index for the groups of open errors (error code, object, direction) on Sync Errors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "dynamics_sync_error"
INDEX = "ix_dynamics_sync_error_groups"


def upgrade() -> None:
    op.create_index(INDEX, TABLE, ["state", "direction", "object_type", "error_code", "occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
