"""payments: orders, notification nonces, the sandbox provider's book, reconciliations

Revision ID: 1100
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "1100"
down_revision = "0001"
branch_labels = ("payments",)
depends_on = "0200"


def upgrade() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_payment_orders_account_id_prepaid_accounts"),
                  nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("return_url", sa.Text, nullable=False),
        sa.Column("provider_order_id", sa.String(128), nullable=True),
        sa.Column("pay_url", sa.Text, nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=True),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("credited_at", UtcDateTime(), nullable=True),
        sa.Column("entry_id", sa.BigInteger, nullable=True),
        sa.Column("refunded_at", UtcDateTime(), nullable=True),
        sa.Column("refund_entry_id", sa.BigInteger, nullable=True),
        sa.Column("refund_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("provider", "transaction_id", name="uq_payment_orders_provider_transaction"),
    )
    op.create_index("ix_payment_orders_account_id", "payment_orders", ["account_id"])
    op.create_index("ix_payment_orders_state", "payment_orders", ["state"])
    op.create_index("ix_payment_orders_paid", "payment_orders", ["provider", "paid_at"])
    op.create_table(
        "payment_nonces",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_payment_nonces_seen_at", "payment_nonces", ["seen_at"])
    op.create_table(
        "payment_sandbox",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_no", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(40), nullable=True),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("notify_url", sa.Text, nullable=False),
        sa.Column("return_url", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_at", UtcDateTime(), nullable=True),
        sa.Column("refund_no", sa.String(64), nullable=True),
        sa.UniqueConstraint("order_no", name="uq_payment_sandbox_order_no"),
        sa.UniqueConstraint("transaction_id", name="uq_payment_sandbox_transaction_id"),
    )
    op.create_index("ix_payment_sandbox_paid_at", "payment_sandbox", ["paid_at"])
    op.create_index("ix_payment_sandbox_refunded_at", "payment_sandbox", ["refunded_at"])
    op.create_table(
        "payment_reconciliations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("ran_at", UtcDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
    )
    op.create_index("ix_payment_reconciliations_day", "payment_reconciliations", ["provider", "day"])


def downgrade() -> None:
    op.drop_table("payment_reconciliations")
    op.drop_table("payment_sandbox")
    op.drop_table("payment_nonces")
    op.drop_table("payment_orders")
