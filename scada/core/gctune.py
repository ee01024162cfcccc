"""The garbage collector's settings for a long-running server process.

CPython's defaults (a young collection every 700 new containers, an older one every 10 of
those) suit short scripts. A server that moves thousands of tag changes, readings and rows a
second creates containers far faster, and with the defaults a quarter of the billing path's
time went to collections that found nothing to free (most of what it allocates dies young by
reference counting, not by the collector). :func:`tune_for_server` collects less often, and
:func:`freeze_startup` moves what start-up built (the site, the tag table, the address space,
SQLAlchemy's mappers: long-lived by design) out of every later collection's way. Cycles are
still collected, only less often.
"""

from __future__ import annotations

import gc

__all__ = ["SERVER_THRESHOLDS", "freeze_startup", "tune_for_server"]

# (young, middle, old): a young collection every 50,000 new containers, one of the middle
# generation every 20 of those, the old one every 20 of those (and, as always, only when the
# old generation grew by a quarter since its last collection)
SERVER_THRESHOLDS = (50_000, 20, 20)


def tune_for_server() -> None:
    """Collect less often (process-wide: for ``scada run``/``scada demo`` and the benchmarks
    that measure their parts in-process)."""
    gc.set_threshold(*SERVER_THRESHOLDS)


def freeze_startup() -> None:
    """Once start-up is done: collect once, then leave what survived out of later collections."""
    gc.collect()
    gc.freeze()
