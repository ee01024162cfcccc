"""billing: customers, account billing settings, charge rules, runs, bills, payments, credit notes, adjustments

Revision ID: 0601
Revises: 0600
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import ExactDecimal, UtcDateTime

revision = "0601"
down_revision = "0600"
branch_labels = None
depends_on = "0200"

Rate = ExactDecimal(12, 8)


def _fk(table: str, column: str, target: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{target}.id", name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "billing_customers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("tax_id", sa.String(64), nullable=True),
        sa.Column("bill_per", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "billing_account_settings",
        sa.Column("account_id", BigId, _fk("billing_account_settings", "account_id", "prepaid_accounts"), primary_key=True),
        sa.Column("customer_id", BigId, _fk("billing_account_settings", "customer_id", "billing_customers"), nullable=True),
        sa.Column("grace_days", sa.Integer, nullable=True),
        sa.Column("cut_when_overdue", sa.Boolean, nullable=True),
        sa.Column("late_fee_rate", Rate, nullable=True),
        sa.Column("late_fee_cap_minor", sa.BigInteger, nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_billing_account_settings_customer_id", "billing_account_settings", ["customer_id"])
    op.create_table(
        "billing_charge_rules",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", ExactDecimal(20, 6), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("settle", sa.String(16), nullable=False),
        sa.Column("tax_rate", Rate, nullable=True),
        sa.Column("start", sa.Date, nullable=False),
        sa.Column("end", sa.Date, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=True),
    )
    op.create_table(
        "billing_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("ran_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("rooms", sa.JSON, nullable=True),
        sa.Column("bills", sa.Integer, nullable=False),
        sa.Column("posted", sa.Integer, nullable=False),
    )
    op.create_index("ix_billing_runs_period", "billing_runs", ["period"])
    op.create_table(
        "billing_bills",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("run_id", BigId, _fk("billing_bills", "run_id", "billing_runs"), nullable=False),
        sa.Column("customer_id", BigId, _fk("billing_bills", "customer_id", "billing_customers"), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("opening_minor", sa.BigInteger, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("closing_minor", sa.BigInteger, nullable=False),
        sa.Column("total_due_minor", sa.BigInteger, nullable=False),
        sa.Column("tax_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_minor", sa.BigInteger, nullable=False),
        sa.Column("credited_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("number", name="uq_billing_bills_number"),
    )
    op.create_index("ix_billing_bills_period", "billing_bills", ["period"])
    op.create_index("ix_billing_bills_run_id", "billing_bills", ["run_id"])
    op.create_index("ix_billing_bills_customer_id", "billing_bills", ["customer_id"])
    op.create_index("ix_billing_bills_status", "billing_bills", ["status"])
    op.create_table(
        "billing_bill_sections",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("bill_id", BigId, _fk("billing_bill_sections", "bill_id", "billing_bills"), nullable=False),
        sa.Column("account_id", BigId, _fk("billing_bill_sections", "account_id", "prepaid_accounts"), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("opening_minor", sa.BigInteger, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("closing_minor", sa.BigInteger, nullable=False),
        sa.Column("due_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_minor", sa.BigInteger, nullable=False),
        sa.Column("credited_minor", sa.BigInteger, nullable=False),
        sa.Column("late_fees_minor", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.UniqueConstraint("account_id", "period", name="uq_billing_bill_sections_account_period"),
    )
    op.create_index("ix_billing_bill_sections_bill_id", "billing_bill_sections", ["bill_id"])
    op.create_index("ix_billing_bill_sections_account_id", "billing_bill_sections", ["account_id"])
    op.create_index("ix_billing_bill_sections_room_id", "billing_bill_sections", ["room_id"])
    op.create_table(
        "billing_payments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("bill_id", BigId, _fk("billing_payments", "bill_id", "billing_bills"), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("allocations", sa.JSON, nullable=False),
        sa.UniqueConstraint("channel", "reference", name="uq_billing_payments_channel_reference"),
    )
    op.create_index("ix_billing_payments_bill_id", "billing_payments", ["bill_id"])
    op.create_table(
        "billing_credit_notes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("bill_id", BigId, _fk("billing_credit_notes", "bill_id", "billing_bills"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=False),
        sa.Column("allocations", sa.JSON, nullable=True),
    )
    op.create_index("ix_billing_credit_notes_bill_id", "billing_credit_notes", ["bill_id"])
    op.create_table(
        "billing_adjustments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tariff_id", sa.String(64), _fk("billing_adjustments", "tariff_id", "prepaid_tariffs"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_ts", UtcDateTime(), nullable=False),
        sa.Column("to_ts", UtcDateTime(), nullable=False),
        sa.Column("rooms", sa.JSON, nullable=True),
        sa.Column("apply", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("charged_minor", sa.BigInteger, nullable=False),
        sa.Column("repriced_minor", sa.BigInteger, nullable=False),
        sa.Column("difference_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=False),
    )
    op.create_index("ix_billing_adjustments_tariff_id", "billing_adjustments", ["tariff_id"])
    op.create_index("ix_billing_adjustments_state", "billing_adjustments", ["state"])
    op.create_table(
        "billing_adj_accounts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("adjustment_id", BigId, _fk("billing_adj_accounts", "adjustment_id", "billing_adjustments"), nullable=False),
        sa.Column("account_id", BigId, _fk("billing_adj_accounts", "account_id", "prepaid_accounts"), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("first_entry_id", sa.BigInteger, nullable=True),
        sa.Column("last_entry_id", sa.BigInteger, nullable=True),
        sa.Column("charged_minor", sa.BigInteger, nullable=False),
        sa.Column("repriced_minor", sa.BigInteger, nullable=False),
        sa.Column("difference_minor", sa.BigInteger, nullable=False),
        sa.Column("entry_id", BigId, _fk("billing_adj_accounts", "entry_id", "prepaid_ledger"), nullable=True),
        sa.Column("posted_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("adjustment_id", "account_id", name="uq_billing_adj_accounts_adjustment_account"),
    )
    op.create_index("ix_billing_adj_accounts_adjustment_id", "billing_adj_accounts", ["adjustment_id"])
    op.create_index("ix_billing_adj_accounts_account_id", "billing_adj_accounts", ["account_id"])


def downgrade() -> None:
    for table in ("billing_adj_accounts", "billing_adjustments", "billing_credit_notes", "billing_payments",
                  "billing_bill_sections", "billing_bills", "billing_runs", "billing_charge_rules",
                  "billing_account_settings", "billing_customers"):
        op.drop_table(table)
