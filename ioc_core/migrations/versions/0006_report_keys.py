"""report_keys: a client's idempotency key for a report

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ioc_core.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A chat update redelivered after the hub died between filing its report and marking the
    # update seen files the report again with the same key: this table makes that a repeat.
    op.create_table(
        "report_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", ioc_core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_report_keys_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_report_keys")),
    )
    with op.batch_alter_table("report_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_keys_incident_id"), ["incident_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("report_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_keys_incident_id"))
    op.drop_table("report_keys")
