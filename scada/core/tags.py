"""The tag database as a component: the current value of every point, shared by all parts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from scada.core.context import Context, Key
from scada.core.runtime import Component
from tags import TagDB

__all__ = ["TAGDB", "TagComponent"]

TAGDB: Key[TagDB] = Key("tagdb", TagDB)


class TagComponent(Component):
    """Provides the server's one :class:`tags.TagDB`."""

    name = "tags"
    provides = (TAGDB,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        ctx[TAGDB] = TagDB()
        yield
