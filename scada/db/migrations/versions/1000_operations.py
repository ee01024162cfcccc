"""operations: jobs and their items, prepared accounts, reminders

Revision ID: 1000
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "1000"
down_revision = "0001"
branch_labels = ("operations",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("run_at", UtcDateTime(), nullable=True),
        sa.Column("repeat", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_role", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("approval", sa.String(16), nullable=False),
        sa.Column("approval_why", sa.Text, nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approved_at", UtcDateTime(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state", "run_at"])
    op.create_table(
        "job_items",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", BigId, sa.ForeignKey("jobs.id", name="fk_job_items_job_id_jobs"), nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(8), nullable=False),
        sa.Column("link", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("job_id", "run", "target", name="uq_job_items_job_run_target"),
    )
    op.create_index("ix_job_items_state", "job_items", ["job_id", "run", "state"])
    op.create_table(
        "prepared_accounts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", name="fk_prepared_accounts_room_id_rooms"), nullable=False),
        sa.Column("pending_room_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("customer", sa.String(200), nullable=False),
        sa.Column("contact_phone", sa.String(64), nullable=True),
        sa.Column("contact_email", sa.String(255), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("tariff_id", sa.String(64), nullable=False),
        sa.Column("water_tariff_id", sa.String(64), nullable=True),
        sa.Column("opening_minor", sa.BigInteger, nullable=False),
        sa.Column("credit_limit_minor", sa.BigInteger, nullable=True),
        sa.Column("thresholds", sa.JSON, nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("account_id", sa.BigInteger, nullable=True),
        sa.Column("opened_at", UtcDateTime(), nullable=True),
        sa.Column("opening_readings", sa.JSON, nullable=True),
        sa.UniqueConstraint("pending_room_id", name="uq_prepared_accounts_pending_room_id"),
    )
    op.create_index("ix_prepared_accounts_room_id", "prepared_accounts", ["room_id"])
    op.create_table(
        "message_reminders",
        sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("message_reminders")
    op.drop_table("prepared_accounts")
    op.drop_table("job_items")
    op.drop_table("jobs")
