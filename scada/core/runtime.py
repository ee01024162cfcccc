"""Runtime wiring and lifecycle.

Components start in dependency order (a component starts after those providing the context
keys it requires) and stop in reverse. Each component owns a :class:`TaskOwner`: every task it
spawns has a name, is watched, and is cancelled when the component stops. A task that dies is
logged with its component and either restarted with exponential backoff or, by policy (or when
it keeps dying), stops the whole process with a non-zero exit code. Nothing dies silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from scada.core.context import Context, Key

__all__ = [
    "Component",
    "ComponentContext",
    "Restart",
    "Runtime",
    "RuntimeError_",
    "SupervisionPolicy",
    "TaskOwner",
    "UndeclaredKeyError",
    "database_locked",
    "watch_loop_lag",
]

T = TypeVar("T")

log = logging.getLogger(__name__)


class Restart(enum.Enum):
    ALWAYS = "always"  # restart with backoff whenever the task ends or fails
    ON_FAILURE = "on_failure"  # restart only when it raised
    FATAL = "fatal"  # a failure stops the process
    NEVER = "never"  # one-shot: failures are logged, the process goes on


@dataclass(frozen=True)
class SupervisionPolicy:
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    restart_limit: int = 10  # failures within the window after which a task becomes fatal
    window_s: float = 600.0


def database_locked(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is SQLite's "database is locked": another writer held
    the write lock past the busy timeout. It clears once that writer commits, so a start-up
    that met it may be tried again; nothing was written by the statement that got it."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.OperationalError) and "database is locked" in str(e):
            return True
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError keeps the driver's error here
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])
    return False


async def watch_loop_lag(
    threshold_s: float = 1.0, period_s: float = 0.25, doing: Callable[[], str] | None = None,
) -> None:
    """Log every time the event loop answered a timer ``threshold_s`` or more late: a stall of
    that length holds every other task (and a transaction that one of them has open, with its
    write lock) that long. ``doing`` says what the process was busy with (the component starting)."""
    loop = asyncio.get_running_loop()
    while True:
        t0 = loop.time()
        before = doing() if doing is not None else ""  # what ran when the stall began
        try:
            await asyncio.sleep(period_s)
        finally:
            # also when cancelled: the stop can overtake the timer that came due during a
            # stall, and a stall just before the stop (or the cause of it) must still be logged
            lag = loop.time() - t0 - period_s
            if lag >= threshold_s:
                extra: dict[str, Any] = {"lag_ms": round(lag * 1000)}
                if doing is not None:
                    extra["during"] = before
                log.warning("event loop stalled", extra=extra)


class RuntimeError_(Exception):
    """A component failed to start or a fatal task died."""


class Component:
    """A part of the server with one lifespan.

    Subclasses set ``name``, ``requires`` (keys it must have), ``optional`` (keys it reads
    when some component provides them) and ``provides`` (keys it sets), and override
    :meth:`lifespan`: an async context manager whose code before ``yield`` sets the
    component up (it must return once the component is serving; long-running work goes into
    tasks spawned with ``self.tasks.spawn``) and whose code after ``yield`` tears it down.
    The runtime cancels and awaits the component's tasks before it resumes the teardown, so
    the teardown runs alone. A setup that fails half-way cleans up what it opened (``try`` /
    ``finally`` around the ``yield``, or nested ``async with``), as in any context manager.
    The context a component gets holds only the keys it declared: reading another key
    raises :class:`UndeclaredKeyError`."""

    name: str = "component"
    requires: tuple[Key[Any], ...] = ()
    optional: tuple[Key[Any], ...] = ()
    provides: tuple[Key[Any], ...] = ()

    def __init__(self) -> None:
        self.tasks: TaskOwner = TaskOwner(self.name)

    def lifespan(self, ctx: Context) -> AbstractAsyncContextManager[None]:
        """Set up, ``yield`` while serving, tear down. The default does nothing."""
        return contextlib.nullcontext()


class UndeclaredKeyError(RuntimeError_):
    """A component read or set a context key it did not declare."""


class ComponentContext(Context):
    """One component's view of the runtime's context: the keys it declared, and no others.

    Reading an undeclared key (``ctx[key]``, ``ctx.get(key)``, ``key in ctx``) or setting a key
    the component does not provide raises :class:`UndeclaredKeyError` naming both, so a
    dependency the start-up order does not know of fails at start, not at some later read."""

    def __init__(self, ctx: Context, component: Component) -> None:
        super().__init__()
        self._ctx = ctx
        self._component = component.name
        self._readable = frozenset(component.requires) | frozenset(component.optional) | frozenset(component.provides)
        self._writable = frozenset(component.provides)

    def _check(self, key: Key[Any], allowed: frozenset[Key[Any]], verb: str) -> None:
        if key not in allowed:
            declare = "provides" if verb == "sets" else "requires or optional"
            raise UndeclaredKeyError(
                f"component {self._component!r} {verb} context key {key.name!r}, which it does not declare"
                f" (add it to {declare})"
            )

    def __setitem__(self, key: Key[T], value: T) -> None:
        self._check(key, self._writable, "sets")
        self._ctx[key] = value

    def __getitem__(self, key: Key[T]) -> T:
        self._check(key, self._readable, "reads")
        return self._ctx[key]

    def get(self, key: Key[T], default: Any = None) -> Any:
        self._check(key, self._readable, "reads")
        return self._ctx.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Key):
            self._check(key, self._readable, "reads")
        return key in self._ctx

    def discard(self, key: Key[Any]) -> None:
        self._check(key, self._writable, "sets")
        self._ctx.discard(key)


class TaskOwner:
    """Owns a component's tasks: names them, supervises them, cancels them on stop."""

    def __init__(self, component: str, policy: SupervisionPolicy | None = None) -> None:
        self.component = component
        self.policy = policy or SupervisionPolicy()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_fatal: Callable[[str], None] | None = None
        self._stopping = False
        self._started: asyncio.Event | None = None
        self._feeders: set[asyncio.Task[Any]] = set()  # spawned with after_start

    def bind(self, on_fatal: Callable[[str], None], policy: SupervisionPolicy, started: asyncio.Event | None = None) -> None:
        self._on_fatal = on_fatal
        self.policy = policy
        self._started = started

    def spawn(
        self,
        factory: Callable[[], Awaitable[Any]],
        name: str,
        restart: Restart = Restart.ON_FAILURE,
        *,
        after_start: bool = False,
    ) -> asyncio.Task[Any]:
        """Run ``factory()`` in a supervised task. ``factory`` is called again on restart.

        ``after_start``: the task begins only once every component has started (a task that
        feeds the others, such as polling, whose data would otherwise flow through components
        still starting, and make them contend for the event loop and the database's write lock)."""
        if self._stopping:
            raise RuntimeError_(f"{self.component}: cannot spawn {name!r} while stopping")
        started = self._started
        if after_start and started is not None and not started.is_set():
            inner = factory

            async def gated() -> Any:
                await started.wait()
                return await inner()

            factory = gated
        task = asyncio.get_running_loop().create_task(
            self._supervise(factory, name, restart), name=f"{self.component}:{name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if after_start:
            self._feeders.add(task)
            task.add_done_callback(self._feeders.discard)
        return task

    async def _supervise(self, factory: Callable[[], Awaitable[Any]], name: str, restart: Restart) -> None:
        failures: list[float] = []
        backoff = self.policy.initial_backoff_s
        while True:
            started = time.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ctx = {"component": self.component, "task": name}
                if restart in (Restart.NEVER,):
                    log.exception("task failed", extra=ctx)
                    return
                if restart is Restart.FATAL:
                    log.critical("task failed; stopping the process", exc_info=exc, extra=ctx)
                    self._fatal(f"{self.component}:{name} failed: {exc!r}")
                    return
                now = time.monotonic()
                failures = [t for t in failures if now - t < self.policy.window_s] + [now]
                if len(failures) > self.policy.restart_limit:
                    log.critical(
                        "task keeps failing; stopping the process",
                        exc_info=exc,
                        extra={**ctx, "failures": len(failures)},
                    )
                    self._fatal(f"{self.component}:{name} failed {len(failures)} times")
                    return
                if now - started > backoff * 4:
                    backoff = self.policy.initial_backoff_s  # it ran a while: start over
                log.error(
                    "task failed; restarting",
                    exc_info=exc,
                    extra={**ctx, "retry_in_s": round(backoff, 2)},
                )
            else:
                if restart is not Restart.ALWAYS:
                    return
                log.warning("task ended; restarting", extra={"component": self.component, "task": name})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.policy.max_backoff_s)

    def _fatal(self, reason: str) -> None:
        if self._on_fatal is not None:
            self._on_fatal(reason)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def reopen(self) -> None:
        """Accept spawns again after :meth:`cancel_all` (a component's start tried again)."""
        self._stopping = False

    async def cancel_feeders(self, timeout: float = 5.0) -> None:
        """Cancel and await the tasks spawned with ``after_start`` (the runtime does this for every
        component before it stops the first one: no new data flows into components stopping)."""
        await self._cancel(self._feeders, timeout)

    async def cancel_all(self, timeout: float = 5.0) -> None:
        self._stopping = True
        await self._cancel(self._tasks, timeout)
        self._tasks.clear()

    async def _cancel(self, tasks: set[asyncio.Task[Any]], timeout: float) -> None:
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                log.error("task did not stop in time", extra={"component": self.component, "task": task.get_name()})


class Runtime:
    def __init__(
        self,
        components: Sequence[Component],
        *,
        ctx: Context | None = None,
        stop_timeout_s: float = 10.0,
        policy: SupervisionPolicy | None = None,
        start_retries: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 15.0),
        lag_threshold_s: float | None = 1.0,
    ) -> None:
        self.ctx = ctx or Context()
        self.components = _dependency_order(components, self.ctx)
        self.stop_timeout_s = stop_timeout_s
        self.policy = policy or SupervisionPolicy()
        # waits before each new try of a component start that failed on a locked database
        self.start_retries = tuple(start_retries)
        self.lag_threshold_s = lag_threshold_s
        self._starting = ""
        self.all_started = asyncio.Event()  # set once every component has started
        self._stop_event: asyncio.Event | None = None
        self._started: list[tuple[Component, AbstractAsyncContextManager[None]]] = []
        self.exit_code = 0
        self.stop_reason = ""

    def request_stop(self, reason: str = "requested", exit_code: int = 0) -> None:
        if self._stop_event is None or self._stop_event.is_set():
            return
        log.info("stopping", extra={"reason": reason})
        self.stop_reason = reason
        self.exit_code = max(self.exit_code, exit_code)
        self._stop_event.set()

    def _fatal(self, reason: str) -> None:
        self.request_stop(reason, exit_code=1)

    async def start(self) -> None:
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        for component in self.components:
            if self._stop_event.is_set():  # a signal arrived while starting: start no more
                return
            component.tasks.bind(self._fatal, self.policy, self.all_started)
            t0 = time.monotonic()
            self._starting = component.name
            try:
                lifespan = await self._start_one(component)
            finally:
                self._starting = ""
            if lifespan is None:  # stopped while waiting to try again
                return
            self._started.append((component, lifespan))
            missing = [key.name for key in component.provides if key not in self.ctx]
            if missing:
                await self.stop()
                raise RuntimeError_(f"{component.name} did not provide {', '.join(map(repr, missing))}")
            log.info("started", extra={"component": component.name, "ms": round((time.monotonic() - t0) * 1000)})
        self.all_started.set()

    async def _start_one(self, component: Component) -> AbstractAsyncContextManager[None] | None:
        """Enter the component's lifespan. A start that failed because another writer held the
        database's write lock past the busy timeout (a transaction of a component already
        running, slowed by a busy machine) is tried again after each of ``start_retries``
        seconds: a failed setup has cleaned up after itself (the lifespan contract), its tasks
        are cancelled and its keys removed before the next try. Any other failure, or the last
        one, fails the start. Returns ``None`` when a stop was requested while waiting."""
        assert self._stop_event is not None
        waits = list(self.start_retries)
        attempt = 1
        while True:
            lifespan = component.lifespan(ComponentContext(self.ctx, component))
            try:
                await lifespan.__aenter__()
                return lifespan
            except Exception as exc:
                await component.tasks.cancel_all(timeout=self.stop_timeout_s)
                for key in component.provides:
                    self.ctx.discard(key)
                if waits and database_locked(exc):
                    wait = waits.pop(0)
                    log.warning(
                        "component start met a locked database; trying again",
                        extra={"component": component.name, "attempt": attempt, "retry_in_s": wait, "error": str(exc).splitlines()[0]},
                    )
                    component.tasks.reopen()
                    attempt += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._stop_event.wait()
                    if self._stop_event.is_set():
                        return None
                    continue
                log.critical("component failed to start", exc_info=exc, extra={"component": component.name, "attempt": attempt})
                await self.stop()
                raise RuntimeError_(f"{component.name} failed to start: {exc}") from exc

    async def stop(self) -> None:
        """Stop what started, in reverse: each component's tasks are cancelled and awaited, then its
        lifespan's teardown runs (bounded by ``stop_timeout_s``), then its keys leave the context.
        Before any of that, the tasks spawned with ``after_start`` (the poller's) are cancelled: at
        20,000 meters the poller went on feeding readings into every component while they stopped
        one by one, and the stop took 40 s on a loaded machine."""
        for component, _ in reversed(self._started):
            await component.tasks.cancel_feeders(timeout=self.stop_timeout_s)
        while self._started:
            component, lifespan = self._started.pop()
            t0 = time.monotonic()
            await component.tasks.cancel_all(timeout=self.stop_timeout_s)
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    await lifespan.__aexit__(None, None, None)
            except TimeoutError:
                log.error("component did not stop in time", extra={"component": component.name})
                self.exit_code = max(self.exit_code, 1)
            except Exception:
                log.exception("component failed to stop", extra={"component": component.name})
                self.exit_code = max(self.exit_code, 1)
            for key in component.provides:
                self.ctx.discard(key)
            log.info("stopped", extra={"component": component.name, "ms": round((time.monotonic() - t0) * 1000)})

    async def run(self, *, install_signals: bool = True, ready: Callable[[], None] | None = None) -> int:
        """Start, wait for SIGINT/SIGTERM or a fatal failure, stop. Returns the exit code.

        Signal handlers are installed before starting, so a SIGTERM during a slow start
        (migrations, a site import) still ends in an orderly stop of what has started."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        if install_signals:
            for sig in signals:
                loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        lag: asyncio.Task[None] | None = None
        if self.lag_threshold_s is not None:
            lag = loop.create_task(
                watch_loop_lag(self.lag_threshold_s, doing=lambda: f"starting {self._starting}" if self._starting else "serving"),
                name="runtime:loop-lag",
            )
        try:
            try:
                await self.start()
            except RuntimeError_:
                return 1
            if not self._stop_event.is_set() and ready is not None:
                ready()
            await self._stop_event.wait()
            await self.stop()
            return self.exit_code
        finally:
            if lag is not None:
                lag.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lag
            if install_signals:
                for sig in signals:
                    with contextlib.suppress(Exception):
                        loop.remove_signal_handler(sig)
            if self._started:  # cancelled from outside: still stop in order
                await self.stop()


def _dependency_order(components: Sequence[Component], ctx: Context) -> list[Component]:
    """Each component after the providers of the keys it requires or optionally reads.

    The order comes from those declarations alone, not from the list's order: the components
    are visited by name, so any permutation of one list starts in the same order."""
    providers: dict[Key[Any], Component] = {}
    for c in components:
        for key in c.provides:
            if key in providers:
                raise RuntimeError_(f"{key.name!r} is provided by both {providers[key].name} and {c.name}")
            providers[key] = c
    ordered: list[Component] = []
    state: dict[int, str] = {}

    def visit(c: Component, chain: tuple[str, ...]) -> None:
        mark = state.get(id(c))
        if mark == "done":
            return
        if mark == "visiting":
            raise RuntimeError_(f"dependency cycle: {' -> '.join(chain + (c.name,))}")
        state[id(c)] = "visiting"
        for key in c.requires:
            provider = providers.get(key)
            if provider is None:
                if key in ctx:
                    continue
                raise RuntimeError_(f"{c.name} requires {key.name!r}, which no component provides")
            visit(provider, chain + (c.name,))
        for key in c.optional:
            provider = providers.get(key)
            if provider is not None:
                visit(provider, chain + (c.name,))
        state[id(c)] = "done"
        ordered.append(c)

    for c in sorted(components, key=lambda c: c.name):
        visit(c, ())
    return ordered
