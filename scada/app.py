"""Wires the components of a server from its configuration."""

from __future__ import annotations

from collections.abc import Callable

from .alarms.component import AlarmComponent, ContactFileComponent, NotificationComponent
from .config import ScadaConfig
from .context import Context
from .foundation import CONFIG, DatabaseComponent, TagComponent
from .history import HistorianComponent
from .prepaid.engine import PrepaidComponent
from .runtime import Component, Runtime, SupervisionPolicy

__all__ = ["build_runtime"]


def _alarm_components(config: ScadaConfig) -> list[Component]:
    if not config.alarms.enabled:
        return []
    out: list[Component] = [AlarmComponent()]
    notifications = config.alarms.notifications
    if notifications.enabled:
        out.append(NotificationComponent())
        if notifications.contacts_file:
            out.append(ContactFileComponent())
    return out


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

    from .commands import CommandsComponent
    from .opcua import OpcUaComponent
    from .polling import ModbusComponent
    from .simulation import SimulatorComponent

    components: list[Component] = [
        DatabaseComponent(reset_admin=demo, announce=announce),
        TagComponent(),
    ]
    if config.simulator.enabled:
        components.append(SimulatorComponent())  # before the poller, so its first connect succeeds
    if config.historian.enabled:
        # before the poller: it takes the first readings, and stops after the poller (reverse order)
        components.append(HistorianComponent())
    components += [ModbusComponent(), CommandsComponent()]
    if config.prepaid.enabled:
        components.append(PrepaidComponent(demo=demo, provide_contacts=not config.alarms.notifications.contacts_file))
    components += _alarm_components(config)
    if config.opcua is not None:
        components.append(OpcUaComponent())  # after the producers of tags: it publishes their points
    components.append(HmiComponent())  # last: it serves what the others provide
    rt = config.runtime
    policy = SupervisionPolicy(
        initial_backoff_s=rt.restart_initial_s,
        max_backoff_s=rt.restart_max_s,
        restart_limit=rt.restart_limit,
        window_s=rt.restart_window_s,
    )
    return Runtime(components, ctx=ctx, stop_timeout_s=rt.stop_timeout_s, policy=policy)
