"""Who to tell about a room: the account contact.

The prepaid engine knows each account's holder and implements :class:`ContactDirectory`; a
site without it (or one that keeps contacts elsewhere) can list them in a TOML file read by
:class:`StaticContactDirectory`::

    [[contacts]]
    room = "B1-R101"
    name = "Li Lei"
    phone = "+8613800000000"   # E.164: +, country code, number
    email = "li.lei@example.com"
    language = "zh-CN"      # en | zh-CN

Whichever is used is provided to the runtime under the context key :data:`CONTACTS`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import Field, ValidationError

from scada.alarms.notify.config import Language
from scada.core.configbase import ConfigError, ConfigModel, format_validation_error
from scada.core.context import Key
from scada.core.inputs import Phone

__all__ = ["CONTACTS", "Contact", "ContactDirectory", "StaticContactDirectory"]


@dataclass(frozen=True, slots=True)
class Contact:
    """Who to tell about a room, in which language and on which addresses."""
    name: str
    phone: str | None
    email: str | None
    language: str = "en"  # en | zh-CN


@runtime_checkable
class ContactDirectory(Protocol):
    """Looks up a room's contact (the prepaid accounts, or a contacts file)."""
    async def room_contact(self, room_id: str) -> Contact | None:
        """The contact of the room's open account, or None (no account, or no contact)."""
        ...


CONTACTS: Key[ContactDirectory] = Key("contacts", ContactDirectory)


class _ContactEntry(ConfigModel):
    room: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None  # E.164 (spaces and hyphens between the digits are dropped)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    language: Language = "en"


class _ContactFile(ConfigModel):
    contacts: list[_ContactEntry] = []


class StaticContactDirectory:
    """Contacts from a fixed table (a TOML file, or given directly)."""

    def __init__(self, contacts: dict[str, Contact]) -> None:
        self._contacts = dict(contacts)

    @classmethod
    def load(cls, path: str | Path) -> StaticContactDirectory:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
        try:
            parsed = _ContactFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(str(path), format_validation_error(exc, _ContactFile)) from None
        contacts: dict[str, Contact] = {}
        for i, entry in enumerate(parsed.contacts):
            if entry.room in contacts:
                raise ConfigError(str(path), [f"contacts[{i}].room: room {entry.room!r} is listed twice"])
            if entry.phone is None and entry.email is None:
                raise ConfigError(str(path), [f"contacts[{i}]: give 'phone' or 'email'"])
            contacts[entry.room] = Contact(entry.name, entry.phone, entry.email, entry.language)
        return cls(contacts)

    async def room_contact(self, room_id: str) -> Contact | None:
        return self._contacts.get(room_id)

    def __len__(self) -> int:
        return len(self._contacts)
