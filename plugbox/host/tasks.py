"""The host's own background tasks (channel readers, reapers, supervisors).

They run in the host's task group but each inside a shielded cancel scope: cancelling
the task that owns the host must not stop the readers and reapers that closing the
host depends on. ``cancel_all`` stops them once the host is closed.

On trio they are also protected from KeyboardInterrupt: trio raises it in whatever
code runs when SIGINT arrives, unless that code is protected, and a reader killed by
it mid-frame would leave the host unable to close its workers in order. Protected,
Ctrl-C reaches the application's own tasks (or trio's main task), whose ``async with
PluginHost`` then closes the host with these tasks still serving it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from .backend import on_asyncio


class HostTasks:
    """Starts background tasks that outer cancellation does not reach."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._scopes: set[anyio.CancelScope] = set()
        self._closed = False

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``func(*args)`` in the background until it returns or ``cancel_all``."""
        if self._closed:
            raise RuntimeError("the host's tasks are already stopped")
        start_protected(self._tg, self._guarded, func, args)

    async def _guarded(self, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        with anyio.CancelScope(shield=True) as scope:
            self._scopes.add(scope)
            try:
                await func(*args)
            finally:
                self._scopes.discard(scope)

    def cancel_all(self) -> None:
        """Stop every background task (after the host has closed its workers)."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()


async def _call(func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    await func(*args)


_protected_calls: list[
    Callable[[Callable[..., Awaitable[Any]], tuple[Any, ...]], Coroutine[Any, Any, None]]
] = []


def start_protected(
    tg: anyio.abc.TaskGroup, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any
) -> None:
    """``tg.start_soon(func, *args)``, on trio protected from KeyboardInterrupt (see
    above): host tasks, and tasks of the host's own nested in them (a channel's
    writer). Protection covers every frame the task runs beneath ``_call``."""
    if on_asyncio():
        tg.start_soon(func, *args)
        return
    if not _protected_calls:
        from trio.lowlevel import enable_ki_protection

        _protected_calls.append(enable_ki_protection(_call))
    tg.start_soon(_protected_calls[0], func, args)
