"""billing: account mode (prepaid | postpaid) and the dunning of postpaid accounts

Revision ID: 0600
Revises: 0001
Depends on: 0200 (prepaid_accounts)

Existing accounts become prepaid accounts with no dunning: nothing about them changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0600"
down_revision = "0001"
branch_labels = ("billing",)
depends_on = "0200"


def upgrade() -> None:
    # plain ADD COLUMN (with a default, so NOT NULL holds for the rows there): on SQLite a batch
    # operation would copy and drop the table, which the ledger's foreign keys refuse
    op.add_column("prepaid_accounts", sa.Column("mode", sa.String(16), nullable=False, server_default="prepaid"))
    op.add_column("prepaid_accounts", sa.Column("dunning_level", sa.Integer, nullable=False, server_default="0"))
    op.add_column("prepaid_accounts", sa.Column("dunning_cut", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("prepaid_accounts") as batch:
        batch.drop_column("dunning_cut")
        batch.drop_column("dunning_level")
        batch.drop_column("mode")
