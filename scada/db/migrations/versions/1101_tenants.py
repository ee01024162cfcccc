"""tenants: PINs, portal sessions, one-time codes

Revision ID: 1101
Revises: 1100
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "1101"
down_revision = "1100"
branch_labels = None
depends_on = "0200"


def upgrade() -> None:
    op.create_table(
        "tenant_pins",
        sa.Column("account_id", BigId, sa.ForeignKey("prepaid_accounts.id", name="fk_tenant_pins_account_id_prepaid_accounts"),
                  primary_key=True),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("set_at", UtcDateTime(), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "tenant_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
    )
    op.create_index("ix_tenant_sessions_subject", "tenant_sessions", ["subject"])
    op.create_table(
        "tenant_codes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("ix_tenant_codes_phone", "tenant_codes", ["phone", "created_at"])


def downgrade() -> None:
    op.drop_table("tenant_codes")
    op.drop_table("tenant_sessions")
    op.drop_table("tenant_pins")
