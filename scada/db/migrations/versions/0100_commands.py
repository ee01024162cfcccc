"""commands: relay and valve commands with their outcome

Revision ID: 0100
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "0100"
down_revision = "0001"
branch_labels = ("commands",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("relay_fault", sa.Boolean, nullable=True),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_commands_meter", "commands", ["meter_id", "id"])
    op.create_index("ix_commands_status", "commands", ["status"])


def downgrade() -> None:
    op.drop_table("commands")
