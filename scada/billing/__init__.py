"""The back office above the prepaid engine: customers, custom charges, postpaid bills,
payments, statements, retroactive price adjustments, arrears, dunning and late fees.

Modules: ``config`` (``[billing]``), ``models`` (tables), ``periods`` (billing periods and pro
rata), ``customers`` (customers and their accounts), ``charges`` (charge rules and their
postings), ``bills`` (billing runs, bills, payments, credit notes), ``statements`` (an
account's ledger over any range), ``adjustments`` (re-pricing billed consumption under a
tariff version), ``arrears`` (aging), ``dunning`` (overdue bills, dunning levels, late fees),
``service`` (the one object the API talks to), ``component`` (its runtime component),
``demo`` (the demo's back office), ``errors``.
"""

__all__: list[str] = []
