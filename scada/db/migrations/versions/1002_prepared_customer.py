"""operations: a prepared account names the back office's customer it is opened for

Revision ID: 1002
Revises: 1001
Depends on: 0601 (billing_customers)

Accounts prepared before this revision name no customer (NULL): they open as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "1002"
down_revision = "1001"
branch_labels = None
depends_on = "0601"


def upgrade() -> None:
    # nothing refers to prepared_accounts, so a batch copy on SQLite is safe
    with op.batch_alter_table("prepared_accounts") as batch:
        batch.add_column(sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=True))
        batch.create_foreign_key(
            "fk_prepared_accounts_customer_id_billing_customers", "billing_customers", ["customer_id"], ["id"],
        )
        batch.create_index("ix_prepared_accounts_customer_id", ["customer_id"])


def downgrade() -> None:
    with op.batch_alter_table("prepared_accounts") as batch:
        batch.drop_index("ix_prepared_accounts_customer_id")
        batch.drop_constraint("fk_prepared_accounts_customer_id_billing_customers", type_="foreignkey")
        batch.drop_column("customer_id")
