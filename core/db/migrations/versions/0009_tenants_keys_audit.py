"""Tenants, API keys with roles and expiry, and the audit log of every change.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("created_by", sa.Integer, nullable=True),
    )
    # every namespace already in use is a tenant (the default one always)
    op.execute("INSERT INTO tenants (name) SELECT 'default' UNION SELECT namespace FROM api_keys"
               " UNION SELECT namespace FROM functions ON CONFLICT DO NOTHING")
    op.add_column("api_keys", sa.Column("role", sa.String(16), nullable=False, server_default="developer"))
    op.add_column("api_keys", sa.Column("expires_at", TS, nullable=True))
    op.add_column("api_keys", sa.Column("prefix", sa.String(16), nullable=True))
    op.add_column("api_keys", sa.Column("created_by", sa.Integer, nullable=True))
    op.execute("UPDATE api_keys SET role = 'admin' WHERE is_admin")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("actor_key_id", sa.Integer, nullable=True),
        sa.Column("actor_name", sa.String(100), nullable=False),
        sa.Column("actor_tenant", sa.String(63), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("ix_audit_ns_at", "audit_log", ["namespace", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_ns_at", table_name="audit_log")
    op.drop_table("audit_log")
    for col in ("created_by", "prefix", "expires_at", "role"):
        op.drop_column("api_keys", col)
    op.drop_table("tenants")
