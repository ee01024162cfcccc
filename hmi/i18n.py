"""Message catalogs of the HMI (English and Simplified Chinese) and the choice of language.

Catalogs are flat JSON files in ``hmi/i18n/<language>.json`` mapping a message key to a text
with ``{name}`` placeholders. English is complete by definition; another catalog that misses a
key falls back to English (a test keeps the catalogs in step, so that does not happen in a
release). Keys starting with ``js.``, ``state.``, ``alarm.``, ``supply.``, ``comms.``, ``point.``,
``trend.``, ``ledger.``, ``receipt.``, ``channel.`` or ``report.`` are also sent to the pages' JavaScript.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

__all__ = ["Catalogs", "LANGUAGES", "Translator", "negotiate"]

log = logging.getLogger(__name__)

# language tag → its name written in that language (what the switch shows)
LANGUAGES: dict[str, str] = {"en": "English", "zh-CN": "简体中文"}
FALLBACK = "en"
_CLIENT_PREFIXES = (
    "js.",
    "state.",
    "alarm.",
    "supply.",
    "comms.",
    "point.",
    "trend.",
    "ledger.",
    "receipt.",
    "channel.",
    "report.",
)


class _Safe(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Translator:
    language: str
    messages: Mapping[str, str]
    fallback: Mapping[str, str]

    def __call__(self, key: str, /, **values: object) -> str:
        text = self.messages.get(key)
        if text is None:
            text = self.fallback.get(key, key)
        if values:
            # format_map with a forgiving mapping: a missing value shows as {name}, never raises
            return text.format_map(_Safe(values))
        return text

    def maybe(self, key: str) -> str | None:
        """The message, or None when no catalog has it (for open-ended names like points)."""
        return self.messages.get(key) or self.fallback.get(key)

    def client_messages(self) -> dict[str, str]:
        """The messages the pages' scripts need (state names, live texts)."""
        out = {k: v for k, v in self.fallback.items() if k.startswith(_CLIENT_PREFIXES)}
        out.update({k: v for k, v in self.messages.items() if k.startswith(_CLIENT_PREFIXES)})
        return out


class Catalogs:
    def __init__(self, catalogs: Mapping[str, Mapping[str, str]]) -> None:
        if FALLBACK not in catalogs:
            raise ValueError(f"the {FALLBACK!r} catalog is required")
        self.catalogs = dict(catalogs)

    @classmethod
    def load(cls) -> Catalogs:
        folder = resources.files("hmi").joinpath("i18n")
        catalogs: dict[str, dict[str, str]] = {}
        for language in LANGUAGES:
            text = folder.joinpath(f"{language}.json").read_text(encoding="utf-8")
            data = json.loads(text)
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError(f"hmi/i18n/{language}.json: expected an object of strings")
            catalogs[language] = data
        return cls(catalogs)

    @property
    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if lang in self.catalogs]

    def translator(self, language: str) -> Translator:
        if language not in self.catalogs:
            language = FALLBACK
        return Translator(language, self.catalogs[language], self.catalogs[FALLBACK])


def negotiate(accept_language: str, supported: list[str], default: str) -> str:
    """The best supported language for an ``Accept-Language`` header (``zh`` → ``zh-CN``)."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag:
            choices.append((-q, i, tag.strip()))
    for negq, _, tag in sorted(choices):
        if negq >= 0:
            break
        for lang in supported:
            if tag.lower() == lang.lower() or tag.lower().split("-")[0] == lang.lower().split("-")[0]:
                return lang
    return default
