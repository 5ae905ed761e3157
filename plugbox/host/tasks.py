"""The host's own background tasks (channel readers, reapers, supervisors).

They run in the host's task group but each inside a shielded cancel scope: cancelling
the task that owns the host must not stop the readers and reapers that closing the
host depends on. ``cancel_all`` stops them once the host is closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc


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
        self._tg.start_soon(self._guarded, func, args)

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
