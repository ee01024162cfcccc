"""The prepaid engine: tariffs, an exact ledger, real-time deduction, balance alarms, cutoff.

Modules: ``money`` (exact amounts and rounding), ``tariff`` (definitions), ``pricing`` (a
consumption delta → priced lines), ``models`` (tables), ``tariffs`` (the tariff store),
``ledger`` (posting entries), ``accounts`` (account operations), ``readings`` (plausibility of
register readings), ``deduction`` (billing readings exactly once), ``levels`` (balance alarm
levels), ``policy`` (cutoff and reconnect decisions), ``supply`` (carrying them out),
``engine`` (the runtime component), ``reconcile`` (the ledger check).
"""

__all__: list[str] = []
