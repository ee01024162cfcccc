"""Shared pieces of the typed configuration: the strict base model, secrets, money and errors.

Every config section is a frozen pydantic model that forbids unknown keys and does not coerce
types (a port written as ``"8080"`` is an error, not a guess). Errors are reported as
``<file>: <key path>: expected …, found …`` lines, all of them at once.
"""

from __future__ import annotations

import os
import typing
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_validator,
)

from scada.core.inputs import BoundedDecimal

__all__ = [
    "ConfigError",
    "ConfigModel",
    "DecimalStr",
    "SecretRef",
    "SecretError",
    "format_validation_error",
    "key_path",
]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ConfigError(Exception):
    """A configuration file is invalid. ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class SecretError(Exception):
    pass


# TOML floats are binary: 0.1 would arrive as 0.1000000000000000055…; money and prices are
# written as strings ("0.56") or integers. A field with tighter bounds declares its own
# ``Annotated[Decimal, BoundedDecimal(...)]``.
DecimalStr = Annotated[Decimal, BoundedDecimal(28, 10, negative=True, what="decimal number")]


class SecretRef(ConfigModel):
    """Where a secret comes from: an environment variable or a file. Never the value itself."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a path)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def get(self, base_dir: Path | None = None) -> str | None:
        """The secret, or None when the variable is unset. A missing file is an error."""
        if self.env is not None:
            return os.environ.get(self.env)
        path = Path(self.file or "")
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from exc

    def require(self, base_dir: Path | None = None) -> str:
        value = self.get(base_dir)
        if not value:
            raise SecretError(f"secret not set: {self.describe()} is empty or unset")
        return value


def key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out or "(top level)"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "date_type": "a date (YYYY-MM-DD)",
    "datetime_type": "a date-time with offset",
    "decimal_type": "a decimal number as a string",
}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _drop_union_noise(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic puts the union member or validator name into loc for tagged/plain unions
    # (e.g. "function-after[...]" or "str"); they are not keys the user wrote
    # (e.g. "function-after[...]" or "str", and the links' tags "link:<protocol>"); they are
    # not keys the user wrote
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int") or p.startswith("link:"))))


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = _drop_union_noise(tuple(err["loc"]))
        path = key_path(loc)
        kind = err["type"]
        found = err.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, tuple(err["loc"])[:-1]) if model is not None else None
            hint = f" (allowed here: {', '.join(sorted(allowed))})" if allowed else ""
            problems.append(f"{path}: unknown key{hint}")
        elif kind == "missing":
            problems.append(f"{path}: missing required key")
        elif kind in _EXPECTED:
            problems.append(f"{path}: expected {_EXPECTED[kind]}, found {_describe(found)}")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            problems.append(f"{path}: expected one of {expected}, found {_describe(found)}")
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            ctx = err.get("ctx", {})
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
            bound = next(iter(ctx.values()), "?")
            if isinstance(bound, float):
                bound = f"{bound:g}"
            problems.append(f"{path}: expected a value {op} {bound}, found {_describe(found)}")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            problems.append(f"{path}: {msg}")
        else:
            msg = err["msg"]
            problems.append(f"{path}: {msg[0].lower() + msg[1:]}, found {_describe(found)}")
    return problems


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys allowed in the table at ``loc`` (walking fields, list items and dict values)."""
    annotation: Any = model
    for part in loc:
        if isinstance(part, str) and part.startswith("link:"):  # a tagged union's member
            tagged = _tagged(annotation, part)
            if tagged is not None:
                annotation = tagged
            continue
        if isinstance(part, str) and ("[" in part or part in ("str", "int")):
            continue
        target = _first_model(annotation) if isinstance(part, str) else None
        if isinstance(part, str) and target is not None and part in target.model_fields:
            annotation = target.model_fields[part].annotation
        else:
            args = typing.get_args(annotation)
            if not args:
                return None
            annotation = args[-1]  # list[X] -> X, dict[K, X] -> X
    target = _first_model(annotation)
    return list(target.model_fields) if target is not None else None


def _tagged(annotation: Any, tag: str) -> Any:
    """The member of a tagged union (at any depth of ``annotation``) whose Tag is ``tag``."""
    for meta in getattr(annotation, "__metadata__", ()):
        if getattr(meta, "tag", None) == tag:
            return annotation
    for arg in typing.get_args(annotation):
        found = _tagged(arg, tag)
        if found is not None:
            return found
    return None


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
