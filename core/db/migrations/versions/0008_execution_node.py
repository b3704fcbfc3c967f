"""Which Ray node ran each execution (the task record's "node").

Revision ID: 0008
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("execution_metrics", sa.Column("node", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("execution_metrics", "node")
