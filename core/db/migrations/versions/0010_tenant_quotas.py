"""Per-tenant quota overrides (a NULL quota is the CLOUDFN_QUOTA_* default).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_quotas",
        sa.Column("namespace", sa.String(63), sa.ForeignKey("tenants.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("concurrency", sa.Integer, nullable=True),
        sa.Column("queued_tasks", sa.Integer, nullable=True),
        sa.Column("functions", sa.Integer, nullable=True),
        sa.Column("bundle_bytes", sa.BigInteger, nullable=True),
        sa.Column("invocations_per_s", sa.Integer, nullable=True),
        sa.Column("burst", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_by", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("tenant_quotas")
