"""alarms: occurrences, transitions, out-of-service objects, notification delivery log

Revision ID: 0300
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "0300"
down_revision = "0001"
branch_labels = ("alarms",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("alarm_class", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(128), nullable=False),
        sa.Column("meter_id", sa.String(64), nullable=True),
        sa.Column("room_id", sa.String(64), nullable=True),
        sa.Column("link", sa.String(64), nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("condition_active", sa.Boolean, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("raised_at", UtcDateTime(), nullable=False),
        sa.Column("last_active_at", UtcDateTime(), nullable=False),
        sa.Column("cleared_at", UtcDateTime(), nullable=True),
        sa.Column("acked_at", UtcDateTime(), nullable=True),
        sa.Column("acked_by", sa.String(64), nullable=True),
        sa.Column("ack_reason", sa.Text, nullable=True),
        sa.Column("shelved_at", UtcDateTime(), nullable=True),
        sa.Column("shelved_until", UtcDateTime(), nullable=True),
        sa.Column("shelved_by", sa.String(64), nullable=True),
        sa.Column("shelve_reason", sa.Text, nullable=True),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("activations", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_alarms_key", "alarms", ["key"])
    op.create_index("ix_alarms_closed_at", "alarms", ["closed_at"])
    op.create_index("ix_alarms_raised_at", "alarms", ["raised_at"])
    op.create_index("ix_alarms_room_id", "alarms", ["room_id"])
    op.create_table(
        "alarm_transitions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "alarm_id", BigId, sa.ForeignKey("alarms.id", name="fk_alarm_transitions_alarm_id_alarms"), nullable=False
        ),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_index("ix_alarm_transitions_alarm_id", "alarm_transitions", ["alarm_id"])
    op.create_table(
        "alarm_out_of_service",
        sa.Column("object_type", sa.String(16), primary_key=True),
        sa.Column("object_id", sa.String(128), primary_key=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("alarm_id", sa.BigInteger, nullable=True),
        sa.Column("alarm_key", sa.String(200), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("dedup_key", sa.String(400), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_notification_deliveries_alarm_id", "notification_deliveries", ["alarm_id"])
    op.create_index("ix_notification_deliveries_dedup", "notification_deliveries", ["dedup_key", "created_at"])
    op.create_index("ix_notification_deliveries_recipient", "notification_deliveries", ["recipient", "created_at"])
    op.create_index("ix_notification_deliveries_status", "notification_deliveries", ["status"])
    op.create_table(
        "notification_attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id", BigId,
            sa.ForeignKey("notification_deliveries.id", name="fk_notification_attempts_delivery_id_notification_deliveries"),
            nullable=False,
        ),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
    )
    op.create_index("ix_notification_attempts_delivery_id", "notification_attempts", ["delivery_id"])


def downgrade() -> None:
    for table in ("notification_attempts", "notification_deliveries", "alarm_out_of_service", "alarm_transitions", "alarms"):
        op.drop_table(table)
