"""hmi: server-side web sessions

Revision ID: 0400
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.types import UtcDateTime

revision = "0400"
down_revision = "0001"
branch_labels = ("hmi",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hmi_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", name="fk_hmi_sessions_user_id_users"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
    )
    op.create_index("ix_hmi_sessions_user_id", "hmi_sessions", ["user_id"])


def downgrade() -> None:
    op.drop_table("hmi_sessions")
