"""API replicas' leases and each open task's owning replica (several API replicas over one database).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_replicas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.add_column("tasks", sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_tasks_open_owner", "tasks", ["owner"],
                    postgresql_where=sa.text("status IN ('queued', 'running')"))


def downgrade() -> None:
    op.drop_index("ix_tasks_open_owner", table_name="tasks")
    op.drop_column("tasks", "owner")
    op.drop_table("api_replicas")
