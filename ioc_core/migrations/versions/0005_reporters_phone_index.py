"""an index on reporters.phone for the switchboard's caller look-up

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every incoming call asks for the caller's earlier reports by number: without an index
    # that is a scan of all reporters, growing with every report the province ever took.
    with op.batch_alter_table("reporters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reporters_phone"), ["phone"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reporters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reporters_phone"))
