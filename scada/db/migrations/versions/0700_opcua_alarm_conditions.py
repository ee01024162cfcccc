"""opcua: alarm confirmation, comments and one-shot shelving (OPC UA Alarms & Conditions)

Revision ID: 0700
Revises:
Depends on: 0300
"""

import sqlalchemy as sa
from alembic import op

from scada.db.types import UtcDateTime

revision = "0700"
down_revision = None
branch_labels = ("opcua",)
depends_on = "0300"

_COLUMNS = ("confirmed_at", "confirmed_by", "comment", "comment_by", "comment_at", "shelve_one_shot")


def upgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("confirmed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("confirmed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("comment", sa.Text, nullable=True))
        batch.add_column(sa.Column("comment_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("comment_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("shelve_one_shot", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("alarms") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
