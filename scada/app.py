"""Wires the components of a server from its configuration."""

from __future__ import annotations

from collections.abc import Callable

from .config import ScadaConfig
from .context import Context
from .foundation import CONFIG, DatabaseComponent, TagComponent
from .history import HistorianComponent
from .runtime import Component, Runtime, SupervisionPolicy

__all__ = ["build_runtime"]


def build_runtime(
    config: ScadaConfig,
    *,
    demo: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Runtime:
    ctx = Context()
    ctx[CONFIG] = config
    # the composition root is the one place in scada/ that knows the HMI exists
    from hmi.component import HmiComponent

    components: list[Component] = [
        DatabaseComponent(reset_admin=demo, announce=announce),
        TagComponent(),
    ]
    if config.historian.enabled:
        components.append(HistorianComponent())
    components.append(HmiComponent())  # last: it serves what the others provide
    rt = config.runtime
    policy = SupervisionPolicy(
        initial_backoff_s=rt.restart_initial_s,
        max_backoff_s=rt.restart_max_s,
        restart_limit=rt.restart_limit,
        window_s=rt.restart_window_s,
    )
    return Runtime(components, ctx=ctx, stop_timeout_s=rt.stop_timeout_s, policy=policy)
