"""An async hook's coroutine as the task that answers its call runs it."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import Call


class AnswersCalls(Protocol):
    """The channel a continuation answers its call on (``serve.WorkerChannel``)."""

    def ended(
        self, msg: Call, args: dict[str, Any], before: dict[str, bytes] | None, exc: BaseException
    ) -> None: ...


#: Continuation.waiting_on: the coroutine has not run, or is the task's to run now
_NOT_STARTED: Any = object()
_RUNNING: Any = object()


class Continuation(collections.abc.Coroutine):  # type: ignore[type-arg]
    """An async hook's coroutine as its task steps it: from the start, or from where
    its first step stopped when ``WorkerChannel.start`` ran that step itself. What the
    hook returns or raises answers the call (``WorkerChannel.ended``). Being the task's
    own coroutine, it hands a cancellation that comes before the task's first step to
    the hook where it waits, so the hook's clean-up runs."""

    __slots__ = ("args", "before", "channel", "coro", "msg", "waiting_on")

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
        #: what the coroutine's first step, run before the task was made, waits on
        self.waiting_on: Any = _NOT_STARTED

    def send(self, value: Any) -> Any:
        waiting_on, self.waiting_on = self.waiting_on, _RUNNING
        if waiting_on is not _RUNNING and waiting_on is not _NOT_STARTED:
            return waiting_on  # the task's first step: wait on what the hook waits on
        return self._step(self.coro.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self.waiting_on = _RUNNING
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        return self._step(self.coro.throw, val)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        raise TypeError("a hook's continuation runs as a task, it is not awaited")

    def _step(self, step: Callable[[Any], Any], arg: Any) -> Any:
        try:
            return step(arg)
        except BaseException as exc:
            self.channel.ended(self.msg, self.args, self.before, exc)
        raise StopIteration  # the task is done; its call is answered
