"""Alerting outbox (one row per notice and channel, committed before sending) and tenant-scoped silences.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("dedup_id", sa.String(64), nullable=False, unique=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("channel", JSONB(), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", JSONB(), nullable=False),
        sa.Column("alert_ids", JSONB(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", TS),
        sa.Column("last_error", sa.Text()),
    )
    op.create_index("ix_alert_notifications_due", "alert_notifications", ["state", "next_attempt_at"])
    op.add_column("alert_deliveries", sa.Column("notification_id", sa.BigInteger(),
                                                sa.ForeignKey("alert_notifications.id"), nullable=True))
    op.create_index("ix_alert_deliveries_notification_id", "alert_deliveries", ["notification_id"])
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False, index=True),
        sa.Column("matchers", JSONB(), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("alert_silences")
    op.drop_index("ix_alert_deliveries_notification_id", "alert_deliveries")
    op.drop_column("alert_deliveries", "notification_id")
    op.drop_index("ix_alert_notifications_due", "alert_notifications")
    op.drop_table("alert_notifications")
