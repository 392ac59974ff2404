"""record_cursors: how far the hub has read Asterisk's own call records (ADR 0018)

Revision ID: t0003
Revises: t0002
Create Date: 2026-12-04 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ioc_core.db

revision = "t0003"
down_revision = "t0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("offset", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated_at", ioc_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_record_cursors")),
    )


def downgrade() -> None:
    op.drop_table("record_cursors")
