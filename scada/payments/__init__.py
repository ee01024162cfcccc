"""Online payment: payment providers behind one interface, orders, signed notifications,
crediting exactly once, refunds, the daily reconciliation against a provider's statement, and
the built-in sandbox provider.

Modules: ``config`` (``[payments]``), ``models`` (tables), ``provider`` (the interface every
provider implements and the values it exchanges), ``sandbox`` (the built-in provider: its own
key pair, pay page, signed notifications, statement), ``orders`` (the order service: create,
notify, credit, expire, refund, recover), ``reconcile`` (orders against a provider's
statement), ``messages`` (the payment-success message to the tenant), ``component`` (its
runtime component), ``cli`` (``scada payments``), ``errors``.
"""

__all__: list[str] = []
