"""Completion destinations: one row per delivered (or abandoned) task completion, so that a delivery cut
short by a restart is found and sent again (at least once).

Revision ID: 0007
Revises: 0006 (written while 0006 was being written elsewhere: the coordinator sets down_revision to 0006)
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destination_deliveries",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2100), nullable=False),
        sa.Column("webhook_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("target_task_id", sa.String(36)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("destination_deliveries")
