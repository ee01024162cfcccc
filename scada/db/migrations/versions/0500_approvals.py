"""approvals: four-eyes approval requests

Revision ID: 0500
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "0500"
down_revision = "0001"
branch_labels = ("approvals",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("rule", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_role", sa.String(32), nullable=False),
        sa.Column("requested_source", sa.String(16), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=False),
        sa.Column("executed_at", UtcDateTime(), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
    )
    op.create_index("ix_approval_requests_state", "approval_requests", ["state", "expires_at"])
    op.create_index("ix_approval_requests_target", "approval_requests", ["kind", "target"])


def downgrade() -> None:
    op.drop_table("approval_requests")
