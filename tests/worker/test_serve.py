"""The worker's serving of hook calls, in this process: ``serve.WorkerChannel`` fed
frames as the host sends them, its replies read back as the host reads them.

Async hooks run as tasks whose first step runs as the Call is decoded (eager tasks):
one that finishes without waiting is answered at once, its task done; one that waits
goes on in its task, in the same context, and a Cancel reaches it where it waits.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from plugbox.protocol import (
    WORKER_TO_HOST,
    Call,
    Cancel,
    Error,
    FrameDecoder,
    FrameLimits,
    Message,
    Result,
    encode,
)
from plugbox.worker import loader
from plugbox.worker.sandbox.process import Confinement
from plugbox.worker.serve import WorkerChannel

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("SEEN", default="unset")


class Plugin:
    name = "served"
    version = "1.0"

    def __init__(self) -> None:
        self.gate: asyncio.Future[str] | None = None
        self.cleaned_up = 0

    async def at_once(self, value: Any) -> Any:
        return {"got": value}

    async def waits(self, value: Any) -> Any:
        SEEN.set(f"set by call {value}")
        assert self.gate is not None
        try:
            opened = await self.gate
        except asyncio.CancelledError:
            self.cleaned_up += 1
            raise
        return [opened, SEEN.get()]

    async def fails_later(self, value: Any) -> Any:
        await asyncio.sleep(0)
        raise KeyError(value)

    async def fails_at_once(self, value: Any) -> Any:
        raise ValueError(value)

    async def cancels_itself(self, value: Any) -> Any:
        raise asyncio.CancelledError("the plugin's own")

    async def cancels_itself_later(self, value: Any) -> Any:
        await asyncio.sleep(0)
        raise asyncio.CancelledError("the plugin's own, later")

    async def context(self, value: Any) -> Any:
        return SEEN.get()

    async def cleanups(self, value: Any) -> Any:
        return self.cleaned_up


HOOKS = {
    name: {"args": ["value"], "kind": "async"}
    for name in (
        "at_once",
        "waits",
        "fails_later",
        "fails_at_once",
        "cancels_itself",
        "cancels_itself_later",
        "context",
        "cleanups",
    )
}


class Transport:
    """What the channel writes, decoded as the host decodes it."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(peer="worker", accept=WORKER_TO_HOST)
        self.replies: list[Message] = []

    def write(self, frame: bytes) -> None:
        self.decoder.feed(frame, 0.0)
        while (msg := self.decoder.next_message()) is not None:
            self.replies.append(msg)

    def is_closing(self) -> bool:
        return False


def channel_for(plugin: Plugin, loop: asyncio.AbstractEventLoop) -> tuple[WorkerChannel, Transport]:
    loaded = loader.check(plugin, HOOKS)
    channel = WorkerChannel(loaded, {}, Confinement(), FrameLimits(), loop.create_future())
    transport = Transport()
    channel.transport = transport  # type: ignore[assignment]
    return channel, transport


def gated() -> tuple[Plugin, WorkerChannel, Transport]:
    """A plugin whose ``waits`` hook waits on a gate never opened unless a test does,
    and its channel, on the running loop."""
    loop = asyncio.get_running_loop()
    plugin = Plugin()
    plugin.gate = loop.create_future()
    return (plugin, *channel_for(plugin, loop))


def call(channel: WorkerChannel, call_id: int, hook: str, value: Any) -> None:
    channel.data_received(encode(Call(id=call_id, hook=hook, args={"value": value}), side="host"))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_an_async_hook_that_does_not_wait_is_answered_as_its_call_is_read() -> None:
    async def main() -> None:
        channel, transport = channel_for(Plugin(), asyncio.get_running_loop())
        call(channel, 1, "at_once", "x")
        # no turn of the loop has passed: the answer was made inside data_received
        assert transport.replies == [Result(id=1, value={"got": "x"}, changed={})]
        assert channel.tasks == {}

    asyncio.run(main())


def test_a_waiting_hook_goes_on_in_a_task_and_answers_when_its_wait_ends() -> None:
    async def main() -> None:
        plugin, channel, transport = gated()
        call(channel, 7, "waits", 7)
        call(channel, 8, "at_once", "meanwhile")  # served while 7 waits
        assert transport.replies == [Result(id=8, value={"got": "meanwhile"}, changed={})]
        assert set(channel.tasks) == {7}
        await settle()
        assert len(transport.replies) == 1
        plugin.gate.set_result("opened")
        await settle()
        # the context the first step set is the one the rest of the hook sees
        assert transport.replies[1] == Result(id=7, value=["opened", "set by call 7"], changed={})
        assert channel.tasks == {}

    asyncio.run(main())


def test_each_call_runs_in_a_context_of_its_own() -> None:
    async def main() -> None:
        _, channel, transport = gated()
        call(channel, 1, "waits", 1)  # sets SEEN before it waits
        call(channel, 2, "context", None)
        assert transport.replies == [Result(id=2, value="unset", changed={})]
        assert SEEN.get() == "unset"  # nor did it leak into the channel's own context
        channel.tasks[1].cancel()
        await settle()

    asyncio.run(main())


def test_a_cancel_reaches_the_hook_where_it_waits_and_no_answer_is_sent() -> None:
    async def main() -> None:
        plugin, channel, transport = gated()
        call(channel, 3, "waits", 3)
        await settle()
        channel.data_received(encode(Cancel(id=3), side="host"))
        await settle()
        assert plugin.cleaned_up == 1
        assert transport.replies == []
        assert channel.tasks == {}
        call(channel, 4, "at_once", "after")  # the channel serves on
        assert transport.replies == [Result(id=4, value={"got": "after"}, changed={})]

    asyncio.run(main())


def test_a_cancel_read_with_its_call_still_reaches_the_hook_where_it_waits() -> None:
    # the hook's first step has run (it waits on the gate) but its task has not: the
    # cancellation must still be handed to the hook, not drop it unfinished
    async def main() -> None:
        plugin, channel, transport = gated()
        channel.data_received(
            encode(Call(id=3, hook="waits", args={"value": 3}), side="host")
            + encode(Cancel(id=3), side="host")
        )
        await settle()
        assert plugin.cleaned_up == 1
        assert transport.replies == [] and channel.tasks == {}

    asyncio.run(main())


def test_a_call_after_a_cancel_starts_once_the_cancelled_hook_has_seen_it() -> None:
    # the host's caller has gone on when it cancels: its next call must find the
    # cancelled hook's clean-up done, as a task queued behind it would
    async def main() -> None:
        _, channel, transport = gated()
        call(channel, 3, "waits", 3)
        await settle()
        channel.data_received(
            encode(Cancel(id=3), side="host")
            + encode(Call(id=4, hook="cleanups", args={"value": None}), side="host")
        )
        await settle()
        assert transport.replies == [Result(id=4, value=1, changed={})]
        assert channel.cancelling == set() and channel.tasks == {}
        call(channel, 5, "at_once", "eager again")
        assert transport.replies[-1] == Result(id=5, value={"got": "eager again"}, changed={})

    asyncio.run(main())


def test_errors_before_and_after_the_first_wait_are_error_replies() -> None:
    async def main() -> None:
        channel, transport = channel_for(Plugin(), asyncio.get_running_loop())
        call(channel, 1, "fails_at_once", "early")
        call(channel, 2, "fails_later", "late")
        call(channel, 3, "cancels_itself", None)
        call(channel, 4, "cancels_itself_later", None)
        await settle()
        errors = {r.id: r for r in transport.replies if isinstance(r, Error)}
        assert len(transport.replies) == 4 and set(errors) == {1, 2, 3, 4}
        assert (errors[1].exc_type, errors[1].message) == ("ValueError", "early")
        assert (errors[2].exc_type, errors[2].message) == ("KeyError", "'late'")
        # no Cancel came: a CancelledError the plugin raises itself is its error,
        # answered, rather than a call the host would wait out to its timeout
        assert (errors[3].exc_type, errors[3].message) == ("CancelledError", "the plugin's own")
        assert (errors[4].exc_type, errors[4].message) == (
            "CancelledError",
            "the plugin's own, later",
        )
        assert channel.tasks == {}

    asyncio.run(main())


def test_calls_read_before_the_loop_took_the_socket_are_answered_in_order() -> None:
    # calls the host sent right behind Resume are read while the socket still blocks
    # (the Handshake's send) and answered before the loop's transport exists: at once
    # while the socket blocks, and queued for the transport once the loop has made the
    # socket non-blocking (a call started behind a Cancel answers in its task's first
    # step, before the transport's connection_made)
    import socket

    from plugbox.worker.serve import serve, waiting

    ours, theirs = socket.socketpair()
    plugin = Plugin()
    frames = [
        Call(id=1, hook="at_once", args={"value": 1}),
        Call(id=2, hook="waits", args={"value": 2}),
        Cancel(id=2),
        Call(id=3, hook="at_once", args={"value": 3}),
    ]
    try:
        theirs.sendall(b"".join(encode(f, side="host") for f in frames))
        early = waiting(ours)
        assert early and waiting(ours) == b""

        async def main() -> int:
            loop = asyncio.get_running_loop()
            plugin.gate = loop.create_future()
            serving = loop.create_task(
                serve(
                    ours,
                    loader.check(plugin, HOOKS),
                    {},
                    Confinement(),
                    FrameLimits(),
                    lambda send: None,
                    early,
                )
            )
            await settle()
            await loop.sock_sendall(
                theirs, encode(Call(id=4, hook="at_once", args={"value": 4}), side="host")
            )
            got = Transport()
            while len(got.replies) < 3:
                got.write(await asyncio.wait_for(loop.sock_recv(theirs, 1 << 16), 10))
            assert [r.value for r in got.replies if isinstance(r, Result)] == [
                {"got": 1},
                {"got": 3},
                {"got": 4},
            ]
            assert plugin.cleaned_up == 1
            theirs.close()  # the host goes: serve ends
            return await serving

        theirs.setblocking(False)
        assert asyncio.run(main()) != 0
    finally:
        ours.close()
        theirs.close()


def test_a_plugin_closing_the_channel_in_a_call_read_early_ends_the_worker_as_lost() -> None:
    # the reply's send fails before the loop's transport exists: the worker ends as
    # one whose channel is gone (the host: "closed its channel and exited"), not as
    # one that failed in plugbox's own code
    import os
    import socket

    from plugbox.protocol import EXIT_CHANNEL_LOST
    from plugbox.worker.serve import serve, waiting

    class Closer:
        name = "closer"

        def close_channel(self, value: Any) -> Any:
            os.close(fd)
            return "nobody hears this"

    ours, theirs = socket.socketpair()
    fd = ours.fileno()
    try:
        theirs.sendall(encode(Call(id=1, hook="close_channel", args={"value": None}), side="host"))
        early = waiting(ours)
        plugin = loader.check(Closer(), {"close_channel": {"args": ["value"], "kind": "sync"}})

        async def main() -> int:
            return await serve(
                ours, plugin, {}, Confinement(), FrameLimits(), lambda send: None, early
            )

        assert asyncio.run(main()) == EXIT_CHANNEL_LOST
        assert theirs.recv(100) == b""  # no reply, and the channel is closed
    finally:
        ours.detach()  # its fd is the plugin's to have closed
        theirs.close()
