"""reports: the ledger's money per meter and local day, for the energy report

Revision ID: 1200
Revises: 0001
Branch: reports

New tables only; the server folds the existing ledger into them in the background after the
upgrade (a report is exact before that too: it reads the entries not yet folded from the ledger).
"""

import sqlalchemy as sa
from alembic import op

from scada.db.types import UtcDateTime

revision = "1200"
down_revision = "0001"
branch_labels = ("reports",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_ledger_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("charged_minor", sa.BigInteger(), nullable=False),
        sa.Column("sharp", sa.Text(), nullable=False),
        sa.Column("peak", sa.Text(), nullable=False),
        sa.Column("flat", sa.Text(), nullable=False),
        sa.Column("valley", sa.Text(), nullable=False),
        sa.Column("other", sa.Text(), nullable=False),
        *(sa.Column(f"{slot}_minor", sa.BigInteger(), nullable=False) for slot in ("sharp", "peak", "flat", "valley", "other")),
        sa.PrimaryKeyConstraint("day", "meter_id", name="pk_report_ledger_days"),
    )
    op.create_table(
        "report_ledger_rollup",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("through_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_ledger_rollup"),
    )


def downgrade() -> None:
    op.drop_table("report_ledger_rollup")
    op.drop_table("report_ledger_days")
