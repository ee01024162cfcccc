"""prepaid: tariffs and versions, accounts, ledger, meter billing state, segments, tier usage

Revision ID: 0200
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import ExactDecimal, UtcDateTime

revision = "0200"
down_revision = "0001"
branch_labels = ("prepaid",)
depends_on = None

Reading = ExactDecimal(24, 8)
Exact = ExactDecimal(40, 20)


def upgrade() -> None:
    op.create_table(
        "prepaid_tariffs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("commodity", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "prepaid_tariff_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tariff_id", sa.String(64), sa.ForeignKey("prepaid_tariffs.id", name="fk_prepaid_tariff_versions_tariff_id_prepaid_tariffs"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("effective_from", UtcDateTime(), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("tariff_id", "version", name="uq_prepaid_tariff_versions_tariff_version"),
    )
    op.create_index("ix_prepaid_tariff_versions_tariff_id", "prepaid_tariff_versions", ["tariff_id"])
    op.create_table(
        "prepaid_accounts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", name="fk_prepaid_accounts_room_id_rooms"), nullable=False),
        sa.Column("open_room_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", UtcDateTime(), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("closed_at", UtcDateTime(), nullable=True),
        sa.Column("electricity_tariff_id", sa.String(64), sa.ForeignKey("prepaid_tariffs.id", name="fk_prepaid_accounts_electricity_tariff_id_prepaid_tariffs"), nullable=True),
        sa.Column("water_tariff_id", sa.String(64), sa.ForeignKey("prepaid_tariffs.id", name="fk_prepaid_accounts_water_tariff_id_prepaid_tariffs"), nullable=True),
        sa.Column("contact_name", sa.String(200), nullable=False),
        sa.Column("contact_phone", sa.String(64), nullable=True),
        sa.Column("contact_email", sa.String(255), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("credit_limit_minor", sa.BigInteger, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("friendly_credit", sa.Boolean, nullable=False),
        sa.Column("auto_reconnect", sa.Boolean, nullable=False),
        sa.Column("emergency_credit_minor", sa.BigInteger, nullable=False),
        sa.Column("emergency_taken_at", UtcDateTime(), nullable=True),
        sa.Column("capacity_kva", ExactDecimal(12, 3), nullable=True),
        sa.Column("demand_kw", ExactDecimal(12, 3), nullable=True),
        sa.Column("charges_through", sa.Date, nullable=True),
        sa.Column("balance_minor", sa.BigInteger, nullable=False),
        sa.Column("remainder", Exact, nullable=False),
        sa.Column("alarm_level", sa.Integer, nullable=False),
        sa.Column("supply_state", sa.String(16), nullable=False),
        sa.Column("reconnect_pending", sa.Boolean, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("open_room_id", name="uq_prepaid_accounts_open_room_id"),
    )
    op.create_index("ix_prepaid_accounts_room_id", "prepaid_accounts", ["room_id"])
    op.create_table(
        "prepaid_ledger",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_prepaid_ledger_account_id_prepaid_accounts"), nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("balance_after_minor", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("reference", sa.String(128), nullable=True),
        sa.Column("idem_key", sa.String(255), nullable=True),
        sa.Column("reverses_id", BigId, sa.ForeignKey("prepaid_ledger.id", name="fk_prepaid_ledger_reverses_id_prepaid_ledger"), nullable=True),
        sa.Column("meter_id", sa.String(64), nullable=True),
        sa.Column("segment", sa.Integer, nullable=True),
        sa.Column("reading_from", Reading, nullable=True),
        sa.Column("reading_to", Reading, nullable=True),
        sa.Column("from_ts", UtcDateTime(), nullable=True),
        sa.Column("reading_ts", UtcDateTime(), nullable=True),
        sa.Column("quantity", Exact, nullable=True),
        sa.Column("cost", Exact, nullable=True),
        sa.Column("tariff_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.UniqueConstraint("idem_key", name="uq_prepaid_ledger_idem_key"),
        sa.UniqueConstraint("reverses_id", name="uq_prepaid_ledger_reverses_id"),
    )
    op.create_index("ix_prepaid_ledger_account_id", "prepaid_ledger", ["account_id"])
    op.create_index("ix_prepaid_ledger_meter", "prepaid_ledger", ["meter_id", "segment"])
    op.create_table(
        "prepaid_meter_state",
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.id", name="fk_prepaid_meter_state_meter_id_meters"), primary_key=True),
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_prepaid_meter_state_account_id_prepaid_accounts"), nullable=True),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("last_reading", Reading, nullable=True),
        sa.Column("last_ts", UtcDateTime(), nullable=True),
        sa.Column("last_registers", sa.JSON, nullable=True),
        sa.Column("hold_kind", sa.String(16), nullable=True),
        sa.Column("hold_detail", sa.Text, nullable=False),
        sa.Column("hold_reading", Reading, nullable=True),
        sa.Column("hold_ts", UtcDateTime(), nullable=True),
        sa.Column("hold_registers", sa.JSON, nullable=True),
        sa.Column("hold_since", UtcDateTime(), nullable=True),
        sa.Column("retired", sa.Boolean, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_prepaid_meter_state_account_id", "prepaid_meter_state", ["account_id"])
    op.create_table(
        "prepaid_meter_segments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_prepaid_meter_segments_account_id_prepaid_accounts"), nullable=False),
        sa.Column("baseline", Reading, nullable=True),
        sa.Column("baseline_ts", UtcDateTime(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("final_reading", Reading, nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("meter_id", "segment", name="uq_prepaid_meter_segments_meter_segment"),
    )
    op.create_index("ix_prepaid_meter_segments_account_id", "prepaid_meter_segments", ["account_id"])
    op.create_table(
        "prepaid_cycle_usage",
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_prepaid_cycle_usage_account_id_prepaid_accounts"), primary_key=True),
        sa.Column("commodity", sa.String(16), primary_key=True),
        sa.Column("cycle", sa.String(32), primary_key=True),
        sa.Column("quantity", Exact, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "prepaid_cycle_usage", "prepaid_meter_segments", "prepaid_meter_state", "prepaid_ledger",
        "prepaid_accounts", "prepaid_tariff_versions", "prepaid_tariffs",
    ):
        op.drop_table(table)
