"""The prepaid engine: tariffs, an exact ledger, real-time deduction, balance alarms, cutoff.

Modules: ``money`` (exact amounts and rounding), ``tariff_definition`` (definitions),
``pricing`` (a consumption delta → priced lines), ``models`` (tables), ``tariff_store``,
``ledger`` (posting entries, views), ``accounts`` (account operations), ``readings``
(plausibility of register readings), ``deduction`` (billing readings exactly once),
``review`` (held readings, meter replacement), ``charges`` (two-part periodic charges),
``levels`` (balance alarm levels), ``policy`` (cutoff and reconnect decisions, pure),
``supply`` (carrying them out through the command path), ``publisher`` (room tags),
``engine`` (the engine), ``component`` (its runtime component), ``reconcile`` and ``cli``
(``scada reconcile``),
``demo`` (the demo's accounts), ``config`` (``[prepaid]``), ``errors``.
"""

__all__: list[str] = []
