"""Task inputs and outputs stored as `json` (the text as sent), not `jsonb`: a valid JSON string may hold
`\\u0000`, which `jsonb` refuses, and a result that cannot be stored must never leave its task queued.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE tasks ALTER COLUMN input TYPE json USING input::json,"
               " ALTER COLUMN output TYPE json USING output::json")


def downgrade() -> None:
    op.execute("ALTER TABLE tasks ALTER COLUMN input TYPE jsonb USING input::jsonb,"
               " ALTER COLUMN output TYPE jsonb USING output::jsonb")
