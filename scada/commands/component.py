"""The command path as a runtime component (``ctx[COMMANDS]``), driving the supply driver."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from scada.commands.service import COMMANDS, PARAMETER_DRIVER, SUPPLY_DRIVER, CommandService
from scada.config import CONFIG
from scada.core.context import Context
from scada.core.runtime import Component
from scada.core.tags import TAGDB
from scada.db.component import DATABASE
from scada.site.component import ASSETS
from scada.users.component import AUDIT

__all__ = ["CommandsComponent"]


class CommandsComponent(Component):
    """Provides :class:`CommandService`: relay and valve commands, queued, audited and confirmed."""

    name = "commands"
    requires = (CONFIG, DATABASE, AUDIT, ASSETS, TAGDB, SUPPLY_DRIVER)
    optional = (PARAMETER_DRIVER,)  # parameter blocks, where the driver has them
    provides = (COMMANDS,)

    @contextlib.asynccontextmanager
    async def lifespan(self, ctx: Context) -> AsyncIterator[None]:
        service = CommandService(
            ctx[DATABASE], ctx[AUDIT], ctx[ASSETS], ctx[TAGDB], ctx[SUPPLY_DRIVER], ctx[CONFIG].commands, self.tasks,
            params=ctx.get(PARAMETER_DRIVER), tz=ctx[CONFIG].site.tz,
        )
        await service.start()
        try:
            ctx[COMMANDS] = service
            yield
        finally:
            await service.stop()
