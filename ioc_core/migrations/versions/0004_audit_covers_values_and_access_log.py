"""the audit chain covers incidents' and reporters' values, and the access log

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:00:00

Timeline rows get the digests of the incident's and its reporters' values (NULL on rows
written before: they verify as before). The access log gets its own hash chain; the rows it
already holds are chained here, in id order, so the whole log is covered from now on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ioc_core.db
from ioc_core.incidents.audit import ACCESS_LOG, GENESIS, access_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timeline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incident_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reporters_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_access_log_seq"), ["seq"])
    heads = op.create_table(
        "audit_heads",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_heads")),
    )
    log = sa.table(
        "access_log",
        sa.column("id", sa.BigInteger()),
        sa.column("at", ioc_core.db.UTCDateTime()),
        sa.column("principal", sa.String()),
        sa.column("role", sa.String()),
        sa.column("incident_id", sa.String()),
        sa.column("what", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    conn = op.get_bind()
    seq, prev = 0, GENESIS
    rows = conn.execute(
        sa.select(
            log.c.id, log.c.at, log.c.principal, log.c.role, log.c.incident_id, log.c.what
        ).order_by(log.c.id)
    ).all()
    for row in rows:
        seq += 1
        digest = access_hash(prev, dict(row._mapping))
        conn.execute(
            sa.update(log).where(log.c.id == row.id).values(seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
    op.bulk_insert(heads, [{"name": ACCESS_LOG, "seq": seq, "head": prev}])


def downgrade() -> None:
    op.drop_table("audit_heads")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_access_log_seq"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    with op.batch_alter_table("timeline", schema=None) as batch_op:
        batch_op.drop_column("reporters_sha256")
        batch_op.drop_column("incident_sha256")
