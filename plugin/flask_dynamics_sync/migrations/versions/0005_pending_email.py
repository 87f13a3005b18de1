"""Notification e-mails not sent yet: kept until the SMTP server took them (alerts are sent at least once).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynamics_sync_pending_email",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("subject", sa.String(998), nullable=False),
        sa.Column("body", LongText, nullable=False),
        sa.Column("claimed_until", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dynamics_sync_pending_email")),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("dynamics_sync_pending_email")
