"""foundation: asset registry, users, API tokens, audit log

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from scada.db.models import BigId
from scada.db.types import ExactDecimal, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = ("foundation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
    )
    op.create_table(
        "buildings",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_buildings_site_id_sites"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "floors",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("buildings.id", name="fk_floors_building_id_buildings"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
    )
    op.create_index("ix_floors_building_id", "floors", ["building_id"])
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("floor_id", sa.String(64), sa.ForeignKey("floors.id", name="fk_rooms_floor_id_floors"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("area_m2", ExactDecimal(12, 3), nullable=True),
    )
    op.create_index("ix_rooms_floor_id", "rooms", ["floor_id"])
    op.create_table(
        "meters",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("rooms.id", name="fk_meters_room_id_rooms"), nullable=True),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("buildings.id", name="fk_meters_building_id_buildings"), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("link", sa.String(64), nullable=False),
        sa.Column("unit_id", sa.Integer, nullable=False),
        sa.Column("circuit", sa.Integer, nullable=True),
        sa.Column("multiplier", ExactDecimal(12, 4), nullable=False),
        sa.Column("install_date", sa.Date, nullable=True),
        sa.Column("initial_reading", ExactDecimal(), nullable=False),
        sa.Column("max_power_kw", ExactDecimal(12, 3), nullable=True),
        sa.Column("replaced_by", sa.String(64), sa.ForeignKey("meters.id", name="fk_meters_replaced_by_meters"), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index("ix_meters_room_id", "meters", ["room_id"])
    op.create_index("ix_meters_building_id", "meters", ["building_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", name="fk_api_tokens_user_id_users"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ts", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id"])


def downgrade() -> None:
    for table in ("audit_log", "api_tokens", "users", "meters", "rooms", "floors", "buildings", "sites"):
        op.drop_table(table)
