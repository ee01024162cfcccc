"""Tables of tenant self-service (Alembic branch ``payments``, revision ``1101``).

Only hashes are kept: a PIN's scrypt hash, a session's SHA-256 of its cookie token, a one-time
code's HMAC-SHA-256 with a per-code salt. A copy of the database lets nobody in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from scada.db.models import Base, BigId
from scada.db.types import UtcDateTime

__all__ = ["TenantCode", "TenantPin", "TenantSession"]


class TenantPin(Base):
    """The PIN of an account, set when it is opened (or later by a cashier)."""

    __tablename__ = "tenant_pins"
    account_id: Mapped[int] = mapped_column(ForeignKey("prepaid_accounts.id"), primary_key=True)
    pin_hash: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())
    set_by: Mapped[str] = mapped_column(String(64))


class TenantSession(Base):
    """A tenant's signed-in browser: which tenant (an account, or a phone number), until when."""

    __tablename__ = "tenant_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    kind: Mapped[str] = mapped_column(String(8))  # pin | code
    subject: Mapped[str] = mapped_column(String(64), index=True)  # account:<id> | phone:<E.164>
    csrf_token: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    address: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(200))


class TenantCode(Base):
    """A one-time code sent to a phone number: expires, is used at most once, and is void after
    too many wrong entries."""

    __tablename__ = "tenant_codes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    address: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_tenant_codes_phone", "phone", "created_at"),)
