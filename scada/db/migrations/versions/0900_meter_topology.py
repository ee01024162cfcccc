"""topology: meters may be read by hand (manual) or computed (virtual formula); effective-dated
meter parents

Revision ID: 0900
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import UtcDateTime

revision = "0900"
down_revision = "0001"
branch_labels = ("topology",)
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN on both engines: the meters table is referenced by other tables' foreign
    # keys, so it must not be rebuilt (SQLite's batch mode would copy and drop it)
    op.add_column("meters", sa.Column("manual", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("meters", sa.Column("formula", sa.String(1000), nullable=True))
    op.create_table(
        "meter_parents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.id", name="fk_meter_parents_meter_id_meters"), nullable=False),
        sa.Column("parent_id", sa.String(64), sa.ForeignKey("meters.id", name="fk_meter_parents_parent_id_meters"), nullable=True),
        sa.Column("valid_from", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("meter_id", "valid_from", name="uq_meter_parents_meter_valid_from"),
    )
    op.create_index("ix_meter_parents_meter_id", "meter_parents", ["meter_id"])
    op.create_index("ix_meter_parents_parent_id", "meter_parents", ["parent_id"])


def downgrade() -> None:
    op.drop_table("meter_parents")
    with op.batch_alter_table("meters") as batch:
        batch.drop_column("formula")
        batch.drop_column("manual")
