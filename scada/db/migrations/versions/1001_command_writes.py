"""operations: the commands table keeps parameter writes (block, value, read-back) and who asked (reference)

Revision ID: 1001
Revises: 1000
Depends on: 0100 (the commands table)
"""

import sqlalchemy as sa
from alembic import op

revision = "1001"
down_revision = "1000"
branch_labels = None
depends_on = "0100"


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("block", sa.String(32), nullable=True))
        batch.add_column(sa.Column("value", sa.JSON, nullable=True))
        batch.add_column(sa.Column("readback", sa.JSON, nullable=True))
        batch.add_column(sa.Column("reference", sa.String(160), nullable=True))
    op.create_index("ix_commands_reference", "commands", ["reference"])


def downgrade() -> None:
    op.drop_index("ix_commands_reference", "commands")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("reference")
        batch.drop_column("readback")
        batch.drop_column("value")
        batch.drop_column("block")
