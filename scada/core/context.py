"""A typed context passed from the runtime to its components (no module-level singletons).

Keys are typed like aiohttp's ``AppKey``: ``ctx[TAGDB]`` is a ``TagDB`` to the type checker.
Each part declares the keys it provides next to the code that provides them.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

__all__ = ["Context", "Key", "MissingKeyError"]

T = TypeVar("T")
D = TypeVar("D")


class Key(Generic[T]):
    __slots__ = ("name", "type")

    def __init__(self, name: str, type_: type[T] | Any) -> None:
        self.name = name
        self.type = type_

    def __repr__(self) -> str:
        return f"<Key {self.name}>"


class MissingKeyError(KeyError):
    def __str__(self) -> str:
        key = self.args[0]
        return f"context has no {key.name!r}: the component that provides it did not start"


class Context:
    def __init__(self) -> None:
        self._values: dict[Key[Any], Any] = {}

    def __setitem__(self, key: Key[T], value: T) -> None:
        if key in self._values:
            raise KeyError(f"context key {key.name!r} is already set")
        self._values[key] = value

    def __getitem__(self, key: Key[T]) -> T:
        try:
            return self._values[key]  # type: ignore[no-any-return]
        except KeyError:
            raise MissingKeyError(key) from None

    @overload
    def get(self, key: Key[T]) -> T | None: ...
    @overload
    def get(self, key: Key[T], default: D) -> T | D: ...
    def get(self, key: Key[T], default: Any = None) -> Any:
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def discard(self, key: Key[Any]) -> None:
        self._values.pop(key, None)
