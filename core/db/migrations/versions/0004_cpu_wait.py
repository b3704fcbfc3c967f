"""Each execution's run-queue wait (time runnable but without a CPU), so host contention is told apart.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("execution_metrics",
                  sa.Column("cpu_wait_ms", sa.Float(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    op.drop_column("execution_metrics", "cpu_wait_ms")
