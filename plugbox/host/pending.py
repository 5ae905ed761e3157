"""A call waiting for its worker's reply, with its deadline: one flavour per event loop.

Neither flavour arms a timer or a cancel scope per call. A worker's calls share
``Deadlines``: buckets of ``GRAIN`` seconds, one wake-up each, so a call joins a set
when it is sent and leaves it when answered. A call expires at most ``GRAIN`` after its
timeout, and its wait returns ``EXPIRED``.

On asyncio a call waits on a future and each bucket is a loop timer. On trio a call
parks its task (``wait_task_rescheduled``) and one task per worker sleeps until the
earliest bucket is due. trio is imported only when it is the running loop.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import Error, Result
from .backend import on_asyncio

if TYPE_CHECKING:
    import trio

#: what ``wait`` returns for a call whose deadline passed
EXPIRED: Any = object()
GRAIN = 0.01

Reply = Result | Error | None
#: told (what the call was, its timeout) when a call's deadline passes unanswered
OnExpire = Callable[[str, float], None]


class Pending(Protocol):
    """One call in flight."""

    what: str
    timeout: float

    def resolve(self, reply: Reply) -> None:
        """Its reply (None: the worker died); later replies are ignored."""

    @property
    def done(self) -> bool:
        """Whether a reply (or the death of the worker) came; a cancelled wait is not."""

    def arm(self, timeout: float) -> None:
        """Start the call's deadline now (``wait`` starts it if this did not)."""

    def disarm(self) -> None:
        """Drop the call's deadline (a call given up on)."""

    async def wait(self, timeout: float) -> Reply:
        """The reply, or ``EXPIRED`` once ``timeout`` seconds have passed (counted from
        ``arm``, if it came first)."""


class Deadlines(Protocol):
    """A worker's calls' deadlines, and the calls it makes."""

    def pending(self, what: str = "") -> Pending:
        """A new call in flight (``what``: the call, for ``on_expire``)."""

    async def run(self) -> None:
        """What the deadlines need running (a task on trio) until ``stop``."""

    def stop(self) -> None:
        """The worker is gone: no deadline is needed any more."""


def deadlines_for_running_loop(on_expire: OnExpire | None = None) -> Deadlines:
    """The deadlines (and calls) for the event loop this runs in. ``on_expire`` is
    told of each call whose deadline passes unanswered, as it passes: whether or not
    anyone is waiting on the call yet."""
    if on_asyncio():
        return AsyncioDeadlines(asyncio.get_running_loop(), on_expire)
    return TrioDeadlines(on_expire)


class _Buckets:
    """A worker's deadlines in buckets of ``GRAIN`` seconds: what both flavours share.
    A flavour gives the clock (``_now``) and arms a wake-up for each new bucket
    (``_arm``), at which it calls ``_expire``."""

    __slots__ = ("_buckets", "_on_expire")

    def __init__(self, on_expire: OnExpire | None = None) -> None:
        self._buckets: dict[int, set[Any]] = {}
        self._on_expire = on_expire

    def add(self, pending: Any, timeout: float) -> set[Any]:
        """Expire ``pending`` ``timeout`` seconds from now unless it leaves its bucket
        (the set returned) first."""
        key = math.ceil((self._now() + timeout) / GRAIN)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = set()
            self._arm(key)
        bucket.add(pending)
        return bucket

    def _expire(self, key: int) -> None:
        for pending in list(self._buckets.pop(key, ())):  # (killing may end others)
            if pending.done:
                continue  # answered, its reply not read yet
            pending.resolve(EXPIRED)
            if self._on_expire is not None:
                self._on_expire(pending.what, pending.timeout)

    def _now(self) -> float:
        raise NotImplementedError

    def _arm(self, key: int) -> None:
        raise NotImplementedError


class _Deadline:
    """A call's place in its worker's buckets: what both flavours of call share (each
    sets these slots itself, ``_bucket`` None until armed)."""

    __slots__ = ("_bucket", "_deadlines", "timeout", "what")

    _bucket: set[Any] | None
    _deadlines: _Buckets
    timeout: float
    what: str

    def arm(self, timeout: float) -> None:
        if self._bucket is None:
            self.timeout = timeout
            self._bucket = self._deadlines.add(self, timeout)

    def disarm(self) -> None:
        if self._bucket is not None:
            self._bucket.discard(self)


# --------------------------------------------------------------------- asyncio
class AsyncioPending(_Deadline):
    """A call waiting on a future."""

    __slots__ = ("_future",)

    def __init__(self, deadlines: AsyncioDeadlines, what: str) -> None:
        self._deadlines = deadlines
        self._future: asyncio.Future[Reply] = deadlines.loop.create_future()
        self._bucket = None
        self.what = what
        self.timeout = 0.0

    def resolve(self, reply: Reply) -> None:
        if not self._future.done():
            self._future.set_result(reply)

    @property
    def done(self) -> bool:
        return self._future.done() and not self._future.cancelled()

    async def wait(self, timeout: float) -> Reply:
        bucket = self._bucket
        if bucket is None:  # (arm, inline: every call waits)
            self.timeout = timeout
            bucket = self._bucket = self._deadlines.add(self, timeout)
        try:
            return await self._future
        finally:
            bucket.discard(self)


class AsyncioDeadlines(_Buckets):
    """Buckets of deadlines, each a loop timer."""

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expire: OnExpire | None = None) -> None:
        super().__init__(on_expire)
        self.loop = loop

    def pending(self, what: str = "") -> AsyncioPending:
        return AsyncioPending(self, what)

    def _now(self) -> float:
        return self.loop.time()

    def _arm(self, key: int) -> None:
        self.loop.call_at(key * GRAIN, self._expire, key)

    async def run(self) -> None:
        return  # the loop's timers need no task

    def stop(self) -> None:
        return


# --------------------------------------------------------------------- trio
def _trio() -> Any:
    return sys.modules["trio"]  # imported: it is the running loop


class TrioPending(_Deadline):
    """A call whose task is parked until its reply, its expiry or its cancellation."""

    __slots__ = ("_task", "done", "reply")

    def __init__(self, deadlines: TrioDeadlines, what: str) -> None:
        self._deadlines = deadlines
        self._task: trio.lowlevel.Task | None = None
        self._bucket = None
        self.done = False
        self.reply: Reply = None
        self.what = what
        self.timeout = 0.0

    def resolve(self, reply: Reply) -> None:
        if self.done:
            return
        self.done = True
        self.reply = reply
        task, self._task = self._task, None
        if task is not None:
            _trio().lowlevel.reschedule(task)

    def _abort(self, raise_cancel: Any) -> Any:
        self._task = None  # cancelled: a reply that comes now wakes nobody
        return _trio().lowlevel.Abort.SUCCEEDED

    async def wait(self, timeout: float) -> Reply:
        if self.done:
            self.disarm()
            return self.reply
        lowlevel = _trio().lowlevel
        self.arm(timeout)
        self._task = lowlevel.current_task()
        try:
            await lowlevel.wait_task_rescheduled(self._abort)
        finally:
            self.disarm()
        return self.reply


class TrioDeadlines(_Buckets):
    """Buckets of deadlines, and the task that expires them (``run``)."""

    __slots__ = ("_due", "_sleep", "_stopped")

    def __init__(self, on_expire: OnExpire | None = None) -> None:
        super().__init__(on_expire)
        self._due: list[int] = []  # the buckets' keys, a heap
        self._sleep: trio.CancelScope | None = None
        self._stopped = False

    def pending(self, what: str = "") -> TrioPending:
        return TrioPending(self, what)

    def _now(self) -> float:
        return float(_trio().current_time())

    def _arm(self, key: int) -> None:
        heapq.heappush(self._due, key)
        if self._due[0] == key and self._sleep is not None:
            self._sleep.deadline = key * GRAIN  # earlier than it slept for

    async def run(self) -> None:
        trio = _trio()
        while not self._stopped:
            with trio.CancelScope(
                deadline=self._due[0] * GRAIN if self._due else math.inf
            ) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            while self._due and self._due[0] * GRAIN <= now:
                self._expire(heapq.heappop(self._due))

    def stop(self) -> None:
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()
