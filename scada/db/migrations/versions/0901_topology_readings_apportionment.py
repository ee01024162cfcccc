"""topology: manual readings, apportionment rules, runs and shares

Revision ID: 0901
Revises: 0900
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import ExactDecimal, UtcDateTime

revision = "0901"
down_revision = "0900"
branch_labels = None
depends_on = "0200"  # shares name prepaid accounts and ledger entries

ReadingValue = ExactDecimal(24, 8)
Quantity = ExactDecimal(40, 20)


def upgrade() -> None:
    op.create_table(
        "topology_readings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.id", name="fk_topology_readings_meter_id_meters"), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("value", ReadingValue, nullable=False),
        sa.Column("reset", sa.Boolean, nullable=False),
        sa.Column("final", ReadingValue, nullable=True),
        sa.Column("initial", ReadingValue, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("entered_at", UtcDateTime(), nullable=False),
        sa.Column("entered_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("meter_id", "ts", name="uq_topology_readings_meter_ts"),
    )
    op.create_index("ix_topology_readings_meter_id", "topology_readings", ["meter_id"])
    op.create_table(
        "topology_rules",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("weights", sa.JSON, nullable=True),
        sa.Column("pricing", sa.JSON, nullable=False),
        sa.Column("settle", sa.String(16), nullable=False),
        sa.Column("schedule", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("name", name="uq_topology_rules_name"),
    )
    op.create_table(
        "topology_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("rule_id", BigId, sa.ForeignKey("topology_rules.id", name="fk_topology_runs_rule_id_topology_rules"), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("start", UtcDateTime(), nullable=False),
        sa.Column("end", UtcDateTime(), nullable=False),
        sa.Column("quantity", Quantity, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("rule_id", "period", name="uq_topology_runs_rule_period"),
    )
    op.create_index("ix_topology_runs_rule_id", "topology_runs", ["rule_id"])
    op.create_table(
        "topology_shares",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", BigId, sa.ForeignKey("topology_runs.id", name="fk_topology_shares_run_id_topology_runs"), nullable=False),
        sa.Column("rule_id", BigId, sa.ForeignKey("topology_rules.id", name="fk_topology_shares_rule_id_topology_rules"), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", name="fk_topology_shares_room_id_rooms"), nullable=False),
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_topology_shares_account_id_prepaid_accounts"), nullable=False),
        sa.Column("quantity", Quantity, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("key", sa.JSON, nullable=False),
        sa.Column("days_open", sa.Integer, nullable=False),
        sa.Column("settle", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ledger_entry_id", BigId, sa.ForeignKey("prepaid_ledger.id", name="fk_topology_shares_ledger_entry_id_prepaid_ledger"), nullable=True),
        sa.Column("bill_ref", sa.String(128), nullable=True),
        sa.UniqueConstraint("rule_id", "period", "account_id", name="uq_topology_shares_rule_period_account"),
    )
    op.create_index("ix_topology_shares_run_id", "topology_shares", ["run_id"])
    op.create_index("ix_topology_shares_account_id", "topology_shares", ["account_id"])


def downgrade() -> None:
    op.drop_table("topology_shares")
    op.drop_table("topology_runs")
    op.drop_table("topology_rules")
    op.drop_table("topology_readings")
