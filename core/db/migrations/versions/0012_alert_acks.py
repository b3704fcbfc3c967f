"""Who acknowledged a firing alert, and when.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("alerts", sa.Column("acknowledged_by", sa.String(100), nullable=True))
    op.add_column("alerts", sa.Column("acknowledged_at", TS, nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "acknowledged_at")
    op.drop_column("alerts", "acknowledged_by")
