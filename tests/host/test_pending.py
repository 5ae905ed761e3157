"""Calls in flight and their deadlines (``plugbox.host.pending``), on asyncio and trio:
no timer or cancel scope per call, yet each call ends with its reply, its expiry or its
cancellation, whichever comes first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from plugbox.host.pending import EXPIRED, Deadlines, OnExpire, deadlines_for_running_loop
from plugbox.protocol import Result

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running_deadlines(
    expired: list[tuple[str, float]] | None = None,
) -> AsyncIterator[Deadlines]:
    """Deadlines with their task running; ``expired`` hears (what, timeout) of each
    call that expires unanswered."""
    on_expire: OnExpire | None = None
    if expired is not None:
        on_expire = lambda what, timeout: expired.append((what, timeout))  # noqa: E731
    deadlines = deadlines_for_running_loop(on_expire)
    async with anyio.create_task_group() as tg:
        tg.start_soon(deadlines.run)
        try:
            yield deadlines
        finally:
            deadlines.stop()  # run returns: the task group can end


async def test_a_reply_ends_the_wait_and_later_ones_are_ignored() -> None:
    async with running_deadlines() as deadlines:
        call = deadlines.pending()
        got: list[Any] = []

        async def waiter() -> None:
            got.append(await call.wait(3600))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not call.done
            call.resolve(Result(id=1, value="first"))
            call.resolve(Result(id=1, value="second"))
        assert call.done and got == [Result(id=1, value="first")]
        # a reply that came before the wait is there at once
        early = deadlines.pending()
        early.resolve(None)
        assert await early.wait(3600) is None


async def test_a_later_and_shorter_deadline_expires_first() -> None:
    async with running_deadlines() as deadlines:
        long_call, short_call = deadlines.pending(), deadlines.pending()
        results: dict[str, Any] = {}

        async def wait(name: str, call: Any, timeout: float) -> None:
            results[name] = await call.wait(timeout)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, "long", long_call, 3600)
            await anyio.wait_all_tasks_blocked()
            # the deadlines' task sleeps until the hour is up; this must wake it sooner
            with anyio.fail_after(30):
                await wait("short", short_call, 0.05)
            assert results == {"short": EXPIRED} and short_call.done
            assert not long_call.done
            long_call.resolve(None)
        assert results == {"short": EXPIRED, "long": None}


async def test_a_cancelled_wait_is_not_done_and_a_late_reply_wakes_nobody() -> None:
    async with running_deadlines() as deadlines:
        call = deadlines.pending()
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                await call.wait(3600)
                raise AssertionError("the wait was cancelled")  # pragma: no cover

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert not call.done  # the host sends the worker a Cancel for such a call
        call.resolve(Result(id=1, value="late"))  # must not reschedule the gone wait
        await anyio.sleep(0)


async def test_stop_ends_the_deadlines_task_with_deadlines_still_pending() -> None:
    deadlines = deadlines_for_running_loop()
    call = deadlines.pending()
    with anyio.fail_after(30):  # a run that ignored stop would hang here
        async with anyio.create_task_group() as tg:
            tg.start_soon(deadlines.run)

            async def waiter() -> None:
                await call.wait(3600)

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            deadlines.stop()
            call.resolve(None)  # as a worker's death resolves its calls
    assert call.done


async def test_an_armed_deadline_runs_from_its_send_and_is_told_as_it_passes() -> None:
    # arm() starts the deadline when the call is sent: a wait that comes later (an
    # observe hook reads its plugins' replies in turn) does not start it again
    expired: list[tuple[str, float]] = []
    async with running_deadlines(expired) as deadlines:
        unanswered, answered = deadlines.pending("a"), deadlines.pending("b")
        unanswered.arm(0.05)
        answered.arm(0.05)
        answered.resolve(Result(id=2, value="in time"))  # answered, its reply not read yet
        with anyio.fail_after(30):  # a deadline started by the wait would be an hour
            assert await unanswered.wait(3600) is EXPIRED
        assert expired == [("a", 0.05)]  # told of the one that went unanswered only
        assert await answered.wait(3600) == Result(id=2, value="in time")


async def test_a_disarmed_call_does_not_expire() -> None:
    expired: list[tuple[str, float]] = []
    async with running_deadlines(expired) as deadlines:
        given_up, later = deadlines.pending("given up"), deadlines.pending("later")
        given_up.arm(0.05)
        given_up.disarm()
        with anyio.fail_after(30):
            assert await later.wait(0.2) is EXPIRED  # past the given-up call's deadline
        assert not given_up.done and expired == [("later", 0.2)]
