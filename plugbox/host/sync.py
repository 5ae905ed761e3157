"""``SyncPluginHost``: a blocking facade over ``PluginHost`` for code that is not async.

A ``PluginHost`` lives on an event loop; ``SyncPluginHost`` runs one on a loop in a
dedicated thread and hands every method to it through an anyio ``BlockingPortal``::

    with SyncPluginHost(specs.AGENT) as host:
        host.add("plugbox.plugins.logging")
        outcome = host.call("before_model", request=request, context=context)

Everything the host does, it does in that thread: it starts the zygote there, and
the zygote's parent-death signal is tied to the thread that started it, so the thread
lives exactly as long as the host. The methods may be called from any number of
threads at once; calls from different threads run concurrently, as tasks on the loop.

The thread is a daemon thread, and a host that is still open when the interpreter
exits is closed then (an ``atexit`` hook), so a forgotten ``close()`` neither hangs
the exit nor leaves a worker behind.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ..limits import Limits, Sandbox
from ..reports import FailureCounts, FailureReport, Outcome
from ..specs import HookSet, OnFailure
from ..trust.lock import Lock
from .host import PluginHost
from .launchers import Launcher
from .registration import PluginInfo

T = TypeVar("T")

_open_hosts: weakref.WeakSet[SyncPluginHost] = weakref.WeakSet()


@atexit.register
def _close_open_hosts() -> None:  # pragma: no cover - runs at interpreter exit
    for host in list(_open_hosts):
        try:
            host.close()
        except Exception:
            pass


class SyncPluginHost:
    """A ``PluginHost`` for blocking code: the same methods, without ``await``.

    ``hooks``, ``launcher``, ``on_failure`` and ``max_reports`` are ``PluginHost``'s;
    ``backend`` (``"asyncio"`` or ``"trio"``) and ``backend_options`` choose the event
    loop the host runs on. Use it as a context manager, or call ``open()`` and
    ``close()``. Failures raise exactly what ``PluginHost`` raises (``PluginLoadError``,
    a ``PluginFailure`` subclass, ``TypeError``...).
    """

    def __init__(
        self,
        hooks: HookSet,
        *,
        launcher: str | Launcher = "zygote",
        on_failure: OnFailure | None = None,
        max_reports: int = 10_000,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        lock: Lock | str | os.PathLike[str] | None = None,
        audit_path: str | os.PathLike[str] | None = None,
        audit_args: bool = False,
    ) -> None:
        if not isinstance(hooks, HookSet):
            raise TypeError(
                f"SyncPluginHost needs a HookSet (e.g. plugbox.specs.AGENT), "
                f"not {type(hooks).__name__}"
            )
        self.hooks = hooks
        self._host_args: dict[str, Any] = {
            "launcher": launcher,
            "on_failure": on_failure,
            "max_reports": max_reports,
            "lock": lock,
            "audit_path": audit_path,
            "audit_args": audit_args,
        }
        self._backend = backend
        self._backend_options = backend_options
        self._lock = threading.Lock()
        self._state = "new"
        self._thread: threading.Thread | None = None
        self._portal: BlockingPortal | None = None
        self._host: PluginHost | None = None
        self._host_cm: AbstractContextManager[PluginHost] | None = None

    # ---------------------------------------------------------------- context
    def __enter__(self) -> SyncPluginHost:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> SyncPluginHost:
        """Start the event loop's thread and the host on it; returns ``self``."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError("a SyncPluginHost can be opened once")
            self._state = "opening"
            ready: Future[BlockingPortal] = Future()
            thread = threading.Thread(
                target=self._run_loop,
                args=(ready,),
                daemon=True,
                name=f"plugbox-host-{self.hooks.name}",
            )
            thread.start()
            self._thread = thread
            try:
                portal = ready.result()
                self._portal = portal
                host = portal.call(partial(PluginHost, self.hooks, **self._host_args))
                host_cm = portal.wrap_async_context_manager(host)
                host_cm.__enter__()
            except BaseException:
                self._state = "closed"
                self._stop_loop()
                raise
            self._host, self._host_cm = host, host_cm
            self._state = "open"
            _open_hosts.add(self)
        return self

    def close(self) -> None:
        """Close every plugin (in reverse order of adding), then stop the loop's thread.

        Waits for calls still in flight from other threads to end or fail. Safe to call
        twice; a host that was never opened is just marked closed.
        """
        with self._lock:
            state, self._state = self._state, "closed"
            _open_hosts.discard(self)
            if state != "open":
                return
            host_cm = self._host_cm
            self._host_cm = None
            try:
                if host_cm is not None:
                    host_cm.__exit__(None, None, None)
            finally:
                self._stop_loop()

    def _run_loop(self, ready: Future[BlockingPortal]) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend=self._backend, backend_options=self._backend_options)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:  # pragma: no cover - the loop ends only when stopped
                raise

    def _stop_loop(self) -> None:
        portal, thread = self._portal, self._thread
        self._portal, self._thread, self._host = None, None, None
        if portal is not None:
            try:
                portal.call(portal.stop)
            except RuntimeError:  # already stopped
                pass
        if thread is not None:
            thread.join()

    def _open(self) -> tuple[BlockingPortal, PluginHost]:
        portal, host = self._portal, self._host
        if self._state != "open" or portal is None or host is None:
            raise RuntimeError(
                "this SyncPluginHost is closed"
                if self._state == "closed"
                else "open the SyncPluginHost first: 'with SyncPluginHost(...) "
                "as host' or host.open()"
            )
        return portal, host

    def _run(self, func: Callable[[PluginHost], T]) -> T:
        """``func(host)`` on the loop's thread."""
        portal, host = self._open()
        return portal.call(partial(func, host))

    def _await(self, func: Callable[[PluginHost], Awaitable[T]]) -> T:
        """``await func(host)`` on the loop's thread."""
        portal, host = self._open()
        return portal.call(partial(func, host))

    # ---------------------------------------------------------------- plugins
    def add(
        self,
        ref: str,
        *,
        config: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        sandbox: Sandbox | None = None,
        on_failure: OnFailure | None = None,
        version: str | None = None,
        sha256: str | None = None,
        lock: Lock | str | os.PathLike[str] | None = None,
    ) -> PluginInfo:
        """Start a worker for the plugin at ``ref`` and register it (``PluginHost.add``)."""
        return self._await(
            partial(
                _add,
                ref=ref,
                config=config,
                limits=limits,
                sandbox=sandbox,
                on_failure=on_failure,
                version=version,
                sha256=sha256,
                lock=lock,
            )
        )

    def remove(self, name: str) -> None:
        """Close one plugin and forget it (``PluginHost.remove``)."""
        self._await(partial(_remove, name=name))

    def reset(self, name: str) -> None:
        """Lift a plugin's quarantine; its next call starts a fresh worker
        (``PluginHost.reset``)."""
        self._run(partial(_reset, name=name))

    def call(self, hook: str, /, **args: Any) -> Outcome:
        """Call ``hook`` on every plugin that implements it, per the hook's mode
        (``PluginHost.call``), and block until the outcome is there."""
        return self._await(partial(_call, hook=hook, args=args))

    @property
    def plugins(self) -> list[PluginInfo]:
        """The registered plugins, in the order they were added."""
        return self._run(_plugins)

    @property
    def reports(self) -> list[FailureReport]:
        """The FailureReports the host keeps, oldest first (``PluginHost.reports``)."""
        return self._run(_reports)

    def failure_counts(self, name: str) -> FailureCounts:
        """The running totals of a plugin's failures (``PluginHost.failure_counts``)."""
        return self._run(partial(_failure_counts, name=name))

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._state == "closed"


# What runs on the loop's thread, one function per method (typed, unlike lambdas).
async def _add(
    host: PluginHost,
    *,
    ref: str,
    config: Mapping[str, Any] | None,
    limits: Limits | None,
    sandbox: Sandbox | None,
    on_failure: OnFailure | None,
    version: str | None,
    sha256: str | None,
    lock: Lock | str | os.PathLike[str] | None,
) -> PluginInfo:
    return await host.add(
        ref,
        config=config,
        limits=limits,
        sandbox=sandbox,
        on_failure=on_failure,
        version=version,
        sha256=sha256,
        lock=lock,
    )


async def _remove(host: PluginHost, *, name: str) -> None:
    await host.remove(name)


def _reset(host: PluginHost, *, name: str) -> None:
    host.reset(name)


async def _call(host: PluginHost, *, hook: str, args: dict[str, Any]) -> Outcome:
    return await host.call(hook, **args)


def _plugins(host: PluginHost) -> list[PluginInfo]:
    return host.plugins


def _reports(host: PluginHost) -> list[FailureReport]:
    return host.reports


def _failure_counts(host: PluginHost, *, name: str) -> FailureCounts:
    return host.failure_counts(name)


__all__ = ["SyncPluginHost"]
