"""Tenant self-service: tenants sign in to the tenant portal (``/tenant/``) with their account
number and PIN, or with their registered phone number and a one-time code sent by SMS, and see
only their own accounts.

Modules: ``config`` (``[tenants]``), ``models`` (PINs, sessions, one-time codes), ``service``
(PINs, codes, sessions, and which accounts a tenant may see), ``usage`` (balance, days of
credit left, today's and this month's consumption and cost, the 30-day series), ``component``.
"""

__all__: list[str] = []
