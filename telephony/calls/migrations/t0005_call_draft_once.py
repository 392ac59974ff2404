"""calls: one draft per call (unique incident_code), its maker's claim, its description noted

Revision ID: t0005
Revises: t0004
Create Date: 2026-12-04 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "t0005"
down_revision = "t0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draft_claim", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("draft_described", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index("uq_calls_incident_code", ["incident_code"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("uq_calls_incident_code")
        batch_op.drop_column("draft_described")
        batch_op.drop_column("draft_claim")
