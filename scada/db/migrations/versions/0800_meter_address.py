"""comms: a meter's protocol address (DL/T 645 address, MQTT device id)

Revision ID: 0800
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0800"
down_revision = "0001"
branch_labels = ("comms",)
depends_on = "0001"


def upgrade() -> None:
    # batch mode: SQLite cannot add a column inside a constrained table any other way that
    # Alembic autogenerate compares equal; a nullable column keeps every existing row as it is
    with op.batch_alter_table("meters") as batch:
        batch.add_column(sa.Column("address", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("address")
