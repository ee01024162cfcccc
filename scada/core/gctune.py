"""The garbage collector's settings for a long-running server process.

CPython's defaults (a young collection every 700 new containers, an older one every 10 of
those) suit short scripts. A server that moves thousands of tag changes, readings and rows a
second creates containers far faster, and with the defaults a quarter of the billing path's
time went to collections that found nothing to free (most of what it allocates dies young by
reference counting, not by the collector). :func:`tune_for_server` collects less often, and
:func:`freeze_startup` moves what start-up built (the site, the tag table, the address space,
SQLAlchemy's mappers: long-lived by design) out of every later collection's way. Cycles are
still collected, only less often. :func:`watch_slow_collections` logs a collection that holds
the event loop (the oldest generation's walks every object not frozen; a younger one every
object allocated since its last run, many at the server's rates): a stall of the loop with one
of these beside it in the log has its cause named.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SERVER_THRESHOLDS", "SLOW_COLLECTION_S", "freeze_startup", "tune_for_server", "watch_slow_collections"]

log = logging.getLogger(__name__)
SLOW_COLLECTION_S = 0.25

# (young, middle, old): a young collection every 50,000 new containers, one of the middle
# generation every third of those, the old one every 200 of those (and, as always, only when
# the old generation grew by a quarter since its last collection). The middle generation was
# collected every 20 young ones: at 50,000 meters it grew to hundreds of thousands of
# containers and each of its collections held the event loop 0.4-2.6 s; every third, 0.26-1.57 s
# in the same ten minutes. Each container is walked once in the middle generation either way.
SERVER_THRESHOLDS = (50_000, 2, 200)


def tune_for_server() -> None:
    """Collect less often (process-wide: for ``scada run``/``scada demo`` and the benchmarks
    that measure their parts in-process)."""
    gc.set_threshold(*SERVER_THRESHOLDS)


def freeze_startup() -> None:
    """Once start-up is done: collect once, then leave what survived out of later collections."""
    gc.collect()
    gc.freeze()


def watch_slow_collections(threshold_s: float = SLOW_COLLECTION_S) -> Callable[[], None]:
    """Log each collection that takes ``threshold_s`` or longer (its generation, what it freed).
    Returns a function that stops watching."""
    started: list[float] = []

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            took = time.perf_counter() - started.pop()
            if took >= threshold_s:
                # no collection can start while this runs: the collector does not re-enter
                log.warning(
                    "slow garbage collection",
                    extra={"generation": info.get("generation"), "ms": round(took * 1000), "collected": info.get("collected"),
                           "uncollectable": info.get("uncollectable")},
                )

    gc.callbacks.append(on_collection)

    def stop() -> None:
        if on_collection in gc.callbacks:
            gc.callbacks.remove(on_collection)

    return stop
