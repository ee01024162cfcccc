"""The composition root: the one module that knows every component and the HMI.

:func:`build_runtime` picks the components a configuration asks for; the runtime orders them
from what each declares it requires and provides, so the list's order here carries no meaning.
Every feature's sub-commands are listed in :mod:`scada.cli.commands`, apart from this module, so
that a command process does not import the whole server.
"""

from __future__ import annotations

from collections.abc import Callable

from hmi.component import HmiComponent
from hmi.reports import labels_for as report_labels_for
from scada.alarms.component import (
    AlarmComponent,
    ContactFileComponent,
    NotificationComponent,
)
from scada.approvals.component import ApprovalsComponent
from scada.billing.component import BillingComponent
from scada.commands.component import CommandsComponent
from scada.config import CONFIG, ScadaConfig
from scada.core.context import Context
from scada.core.runtime import Component, Runtime, SupervisionPolicy
from scada.core.tags import TagComponent
from scada.db.component import DatabaseComponent
from scada.history.component import HistorianComponent
from scada.opcua.component import OpcUaComponent
from scada.operations.component import OperationsComponent
from scada.payments.component import PaymentsComponent
from scada.polling.component import ModbusComponent
from scada.prepaid.component import PrepaidComponent
from scada.reports.component import ReportsComponent
from scada.simulator.component import SimulatorComponent
from scada.site.component import SiteComponent
from scada.tenants.component import TenantsComponent
from scada.topology.component import TopologyComponent
from scada.users.component import UsersComponent

__all__ = ["build_components", "build_runtime"]


def build_components(
    config: ScadaConfig,
    *,
    demo: bool = False,
    announce: Callable[[str], None] | None = None,
) -> list[Component]:
    """The components the configuration enables."""
    components: list[Component] = [
        DatabaseComponent(),
        UsersComponent(reset_admin=demo, announce=announce),
        ApprovalsComponent(),
        SiteComponent(),
        TagComponent(),
        ModbusComponent(),
        CommandsComponent(),
        HmiComponent(),
    ]
    if config.simulator.enabled:
        components.append(SimulatorComponent(announce=announce if demo else None))
    if config.historian.enabled:
        components.append(HistorianComponent())
    if config.prepaid.enabled:
        components.append(PrepaidComponent(demo=demo, provide_contacts=not config.alarms.notifications.contacts_file))
        if config.billing.enabled:
            components.append(BillingComponent(demo=demo))
        if config.payments.enabled:
            components.append(PaymentsComponent())
        if config.tenants.enabled:
            components.append(TenantsComponent())
    if config.reports.enabled:
        components.append(ReportsComponent(labels=report_labels_for))
    if config.alarms.enabled:
        components.append(AlarmComponent())
        notifications = config.alarms.notifications
        if notifications.enabled:
            components.append(NotificationComponent())
            if notifications.contacts_file:
                components.append(ContactFileComponent())
    if config.topology.enabled:
        components.append(TopologyComponent(demo=demo))
    if config.opcua is not None:
        components.append(OpcUaComponent())
    if config.operations.enabled:
        components.append(OperationsComponent())
    return components


def build_runtime(
    config: ScadaConfig,
    *,
    demo: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Runtime:
    """A runtime for the server the configuration describes (``scada run`` / ``scada demo``)."""
    ctx = Context()
    ctx[CONFIG] = config
    rt = config.runtime
    policy = SupervisionPolicy(
        initial_backoff_s=rt.restart_initial_s,
        max_backoff_s=rt.restart_max_s,
        restart_limit=rt.restart_limit,
        window_s=rt.restart_window_s,
    )
    return Runtime(
        build_components(config, demo=demo, announce=announce), ctx=ctx, stop_timeout_s=rt.stop_timeout_s, policy=policy
    )
