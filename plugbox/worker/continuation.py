"""An async hook's coroutine as the asyncio Task that answers its call, started eagerly."""

from __future__ import annotations

import asyncio
import collections.abc
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import Call

#: 3.12+ starts tasks eagerly itself; before, the step is run here, with these
_EAGER_START = sys.version_info >= (3, 12)
_current_tasks: dict[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})
_enter_task: Callable[[Any, Any], None] = asyncio.tasks._enter_task
_leave_task: Callable[[Any, Any], None] = asyncio.tasks._leave_task


class AnswersCalls(Protocol):
    """The channel a continuation answers its call on (``serve.WorkerChannel``)."""

    def ended(
        self, msg: Call, args: dict[str, Any], before: dict[str, bytes] | None, exc: BaseException
    ) -> None: ...


class Continuation(collections.abc.Coroutine):  # type: ignore[type-arg]
    """An async hook's coroutine as its task steps it. What the hook returns or raises
    answers the call (``WorkerChannel.ended``), so nothing the plugin raises, not even a
    KeyboardInterrupt, reaches the task or the loop. It shows the hook's coroutine state
    (``cr_*``) to libraries that look at their task's coroutine."""

    __slots__ = ("args", "before", "channel", "coro", "msg")

    def __init__(
        self,
        channel: AnswersCalls,
        msg: Call,
        coro: Any,
        args: dict[str, Any],
        before: dict[str, bytes] | None,
    ) -> None:
        self.channel = channel
        self.msg = msg
        self.coro = coro
        self.args = args
        self.before = before

    def send(self, value: Any) -> Any:
        try:
            return self.coro.send(value)
        except BaseException as exc:
            self.channel.ended(self.msg, self.args, self.before, exc)
        raise StopIteration  # the task is done; its call is answered

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        try:
            return self.coro.throw(val)
        except BaseException as exc:
            self.channel.ended(self.msg, self.args, self.before, exc)
        raise StopIteration

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        raise TypeError("a hook's continuation runs as a task, it is not awaited")

    @property
    def cr_running(self) -> Any:
        return getattr(self.coro, "cr_running", False)

    @property
    def cr_frame(self) -> Any:
        return getattr(self.coro, "cr_frame", None)

    @property
    def cr_await(self) -> Any:
        return getattr(self.coro, "cr_await", None)

    @property
    def cr_code(self) -> Any:
        return getattr(self.coro, "cr_code", None)

    @property
    def cr_suspended(self) -> Any:
        return getattr(self.coro, "cr_suspended", False)


def start_task(
    loop: asyncio.AbstractEventLoop,
    continuation: Continuation,
    ready: deque[Any] | None,
    eager: bool,
) -> asyncio.Task[None]:
    """A task of ``loop`` for ``continuation``, its first step run now when ``eager``
    (an eager task: a hook that ends without waiting is answered with no turn of the
    loop). Before 3.12 the step the new task scheduled is taken off ``ready`` (the
    loop's queue) and run here; a loop without one runs it at its turn."""
    if _EAGER_START:
        return asyncio.Task(continuation, loop=loop, eager_start=eager)  # type: ignore[call-arg]
    task: asyncio.Task[None] = asyncio.Task(continuation, loop=loop)
    if not eager or not ready:
        return task
    handle = ready[-1]  # what the task's __init__ just scheduled: its first step
    owner: object = getattr(handle._callback, "__self__", None)
    if owner is not task:
        return task
    ready.pop()
    outer = _current_tasks.get(loop)  # a task that reads calls (the worker's serve)
    if outer is None:
        handle._context.run(handle._callback)
        return task
    _leave_task(loop, outer)  # the hook's task is the current one while it runs
    try:
        handle._context.run(handle._callback)
    finally:
        _enter_task(loop, outer)
    return task
