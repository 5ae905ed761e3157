"""Serving hook calls: one asyncio event loop reading the channel and answering.

Sync hooks run inline as their Call is decoded, with no running loop (as in a plain
script); an async hook runs as an asyncio Task of the worker's loop whose first step
runs at once, so many calls can be in flight. Every reply is a Result or an Error with
the call's id; a value that cannot cross the boundary is an Error naming the hook.
Mutable arguments the plugin changed in place are sent back (only those).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..protocol import (
    EXIT_CHANNEL_LOST,
    EXIT_MEMORY,
    HOST_TO_WORKER,
    MAX_VALUE_DEPTH,
    WORKER_TO_HOST,
    Call,
    Cancel,
    ChannelState,
    Error,
    FrameDecoder,
    FrameLimits,
    HostPhase,
    LocalProtocolError,
    Message,
    ProtocolError,
    Shutdown,
    WorkerPhase,
    encode,
    encode_result,
    pack,
)
from .continuation import Continuation, start_task
from .loader import LoadedPlugin
from .replies import error_reply
from .sandbox.process import Confinement, keep_refilling, renew_cpu_budget

del WORKER_TO_HOST  # the worker only decodes what the host sends


#: what a sync hook mostly returns: told from an awaitable at a glance
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, list, dict})
_get_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop


async def _awaited(future: asyncio.Future[Any]) -> Any:
    return await future


class WorkerChannel(asyncio.Protocol):
    """The worker's end of the channel: decodes calls, dispatches, replies."""

    def __init__(
        self,
        plugin: LoadedPlugin,
        mutable: dict[str, frozenset[str]],
        confinement: Confinement,
        limits: FrameLimits,
        done: asyncio.Future[int],
        order: ChannelState | None = None,
    ) -> None:
        self.plugin = plugin
        self.mutable = mutable
        self.confinement = confinement
        self.decoder = FrameDecoder(peer="host", accept=HOST_TO_WORKER, limits=limits)
        self.max_frame = limits.max_frame_bytes
        self.done = done
        self.tasks: dict[int, asyncio.Task[None]] = {}
        #: calls cancelled whose hooks have yet to see their CancelledError
        self.cancelling: set[asyncio.Task[None]] = set()
        self.transport: asyncio.Transport | _EarlyWriter | None = None
        self.loop = done.get_loop()
        #: address space to release for the error reply of a plugin that used up the
        #: rest (taken over: the confinement's reference would keep it mapped)
        self.reserve, confinement.reserve = confinement.reserve, None
        self.methods = {hook: getattr(plugin.instance, hook) for hook in plugin.hooks}
        #: hooks whose method only makes a coroutine: called with the loop running
        self.coroutine_hooks = frozenset(
            hook for hook, method in self.methods.items() if inspect.iscoroutinefunction(method)
        )
        #: the loop's queue of callbacks, where a new task's first step is taken from
        self.ready = getattr(self.loop, "_ready", None)
        #: the message order, past the Handshake: the host's calls are served
        self.order = order or ChannelState(
            "worker", host=HostPhase.RUNNING, worker=WorkerPhase.SERVING
        )
        assert self.order.host is HostPhase.RUNNING  # (where Call is always in order)

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        early, self.transport = self.transport, transport
        if isinstance(early, _EarlyWriter):  # what it could not send, in order
            for frame in early.queued:
                transport.write(frame)

    def data_received(self, data: bytes) -> None:
        try:
            self.decoder.feed(data, time.monotonic())
            while (msg := self.decoder.next_message()) is not None:
                self.handle(msg)
        except ProtocolError as exc:
            print(f"plugbox worker: {exc}", file=sys.stderr)
            self.finish(2)
        except MemoryError:
            self.exit_now(EXIT_MEMORY)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(EXIT_CHANNEL_LOST)  # no Shutdown came: nothing left to serve

    # -- dispatch
    def handle(self, msg: Message) -> None:
        if isinstance(msg, Call):  # in order for as long as the worker serves
            self.call(msg)
            return
        self.order.process("host", msg)  # refuses a Start or Resume
        if isinstance(msg, Cancel):
            self.cancel(msg.id)
        elif isinstance(msg, Shutdown):
            self.finish(0)

    def cancel(self, call_id: int) -> None:
        """Cancel the task of a call in flight, as the host asked (or is gone)."""
        task = self.tasks.get(call_id)
        if task is not None and task.cancel():
            self.cancelling.add(task)
            task.add_done_callback(self.cancelling.discard)

    def call(self, msg: Call) -> None:
        method = self.methods.get(msg.hook)
        if method is None:
            self.send_error(
                msg.id,
                LookupError(f"plugin {self.plugin.name!r} does not implement hook {msg.hook!r}"),
            )
            return
        args = msg.args
        watched = self.mutable.get(msg.hook)
        before = {name: pack(args[name]) for name in watched if name in args} if watched else None
        renew_cpu_budget(self.confinement)
        if msg.hook in self.coroutine_hooks:
            try:
                value = method(**args)  # a coroutine: none of the hook has run yet
            except BaseException as exc:
                self.failed(msg.id, exc)
                return
        else:
            # as in a plain script: asyncio.run() and new event loops work in a sync hook
            running = _get_running_loop()
            _set_running_loop(None)
            try:
                value = method(**args)
            except BaseException as exc:
                self.failed(msg.id, exc)
                return
            finally:
                _set_running_loop(running)
            if type(value) in _PLAIN or not (
                isinstance(value, asyncio.Future) or asyncio.iscoroutine(value)
            ):
                self.reply(msg, value, args, before)  # a sync hook's return
                return
            if isinstance(value, asyncio.Future):
                value = _awaited(value)
        # a task of its own from its first step, so the hook's cancellations and
        # timeouts reach no one else; run at once unless behind a cancelled call still
        # to see its CancelledError (the host, whose caller has gone on, expects it first)
        task = start_task(
            self.loop, Continuation(self, msg, value, args, before), self.ready, not self.cancelling
        )
        if not task.done():  # (one that ended in its first step has answered its call)
            self.tasks[msg.id] = task

    def ended(
        self, msg: Call, args: dict[str, Any], before: dict[str, bytes] | None, exc: BaseException
    ) -> None:
        """An async hook's coroutine ended with ``exc`` (StopIteration: it returned):
        answer its call. A CancelledError is answered as the plugin's error unless the
        host cancelled the call (then it is raised on: the task ends cancelled); any
        other exception, a KeyboardInterrupt too, is the plugin's error."""
        self.tasks.pop(msg.id, None)
        if isinstance(exc, StopIteration):
            self.reply(msg, exc.value, args, before)
        elif isinstance(exc, asyncio.CancelledError) and asyncio.current_task() in self.cancelling:
            raise exc  # the host gave up on this call and expects no reply
        else:
            self.failed(msg.id, exc)

    def reply(
        self, msg: Call, value: Any, args: dict[str, Any], before: dict[str, bytes] | None
    ) -> None:
        changed: dict[str, Any] = {}
        try:
            if before:
                for name, packed in before.items():
                    if pack(args[name]) != packed:
                        changed[name] = args[name]
            # one level under the frame cap: a returned value nests no deeper than an
            # argument may, so a chain can pass it on to the next plugin as one
            frame = encode_result(
                msg.id,
                value,
                changed,
                max_frame_bytes=self.max_frame,
                max_depth=MAX_VALUE_DEPTH + 1,
            )
        except (LocalProtocolError, TypeError, ValueError) as exc:
            what = (
                f"hook {msg.hook!r} returned a value of type {type(value).__name__} "
                f"that cannot cross the process boundary"
            )
            if changed:
                what = f"hook {msg.hook!r} left an argument that cannot cross the boundary"
            why = exc.__cause__ or exc
            reason = why.reason if isinstance(why, LocalProtocolError) else str(why)
            # the exception's traceback holds this frame, and this frame the value: a
            # cycle that would keep an oversize value alive until a collection
            del why, value, args, changed
            self.send_error(msg.id, TypeError(f"{what}: {reason}"))
            return
        except MemoryError as exc:
            self.out_of_memory(msg.id, exc)
            return
        self.write(frame)

    def failed(self, call_id: int, exc: BaseException) -> None:
        """The hook raised: exit for SystemExit, else an Error reply (for any other
        BaseException too: a KeyboardInterrupt in a hook is the plugin's raise)."""
        if isinstance(exc, SystemExit):
            self.exit_now(exc.code if isinstance(exc.code, int) else 1)
        elif isinstance(exc, MemoryError):
            self.out_of_memory(call_id, exc)
        else:
            self.send_error(call_id, exc)

    def send_error(self, call_id: int, exc: BaseException) -> None:
        try:
            self.write(encode(error_reply(call_id, exc), side="worker"))
        except MemoryError:
            # no room left for the traceback (threads filled the address space, say):
            # release the reserve and send the bare facts, marked as out of memory
            self.reserve = None
            try:
                self.write(
                    encode(
                        Error(
                            id=call_id,
                            exc_type=type(exc).__qualname__,
                            message=str(exc)[:200],
                            chain=["MemoryError"],
                        ),
                        side="worker",
                    )
                )
            except MemoryError:
                self.exit_now(EXIT_MEMORY)

    def out_of_memory(self, call_id: int, exc: MemoryError) -> None:
        self.reserve = None  # give the reply room to be built
        try:
            self.send_error(call_id, exc)
        except MemoryError:
            self.exit_now(EXIT_MEMORY)

    def write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def exit_now(self, code: int) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)


class _EarlyWriter:
    """The channel's writer before the loop's transport exists: sends at once while
    the socket blocks, then queues what comes until the transport takes over. A send
    that fails (the plugin closed the channel's fd, say) ends the channel as the
    transport's failure would."""

    def __init__(self, sock: socket.socket, channel: WorkerChannel) -> None:
        self.sock = sock
        self.channel = channel
        self.queued: list[bytes] = []
        self.lost = False

    def write(self, frame: bytes) -> None:
        if self.lost:
            return
        if not self.sock.getblocking():
            self.queued.append(frame)
            return
        try:
            self.sock.sendall(frame)
        except OSError:
            self.lost = True
            self.channel.finish(EXIT_CHANNEL_LOST)

    def is_closing(self) -> bool:
        return self.lost


def waiting(sock: socket.socket) -> bytes:
    """What the host has already sent on ``sock`` (a call sent right behind Resume),
    read without waiting."""
    try:
        return sock.recv(1 << 18, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return b""


async def serve(
    sock: socket.socket,
    plugin: LoadedPlugin,
    mutable: dict[str, frozenset[str]],
    confinement: Confinement,
    limits: FrameLimits,
    install_log: Callable[[Callable[[bytes], None]], None],
    early: bytes = b"",
    order: ChannelState | None = None,
) -> int:
    """Serve calls on ``sock`` until the host shuts the worker down or goes away.

    ``early`` holds bytes already read from the (still blocking) socket: calls the host
    sent before the Handshake came. They are answered before the loop takes the socket
    over, which takes it a few turns. ``order`` is the message order as the worker
    has followed it so far."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    channel = WorkerChannel(plugin, mutable, confinement, limits, done, order)
    if early:
        channel.transport = _EarlyWriter(sock, channel)
        channel.data_received(early)
    transport = None
    if not done.done():  # (the early calls may have ended it: a Shutdown, a lost channel)
        transport, _ = await loop.connect_accepted_socket(lambda: channel, sock)
        install_log(channel.write)
        keep_refilling(loop, confinement, lambda: not channel.tasks)  # CPU between calls
    code = await done
    for call_id in list(channel.tasks):
        channel.cancel(call_id)
    await close_plugin(plugin)
    if transport is not None:
        transport.close()
    return code


async def close_plugin(plugin: LoadedPlugin) -> None:
    """Call the plugin's close(), sync or async, if it has one: as a hook runs (a sync
    one with no running loop, an async one as a task of its own), and what it raises
    left on stderr, where the host's log of the worker's output shows it."""
    close = getattr(plugin.instance, "close", None)
    if not callable(close):
        return
    loop = asyncio.get_running_loop()
    try:
        if inspect.iscoroutinefunction(close):
            result = close()
        else:
            _set_running_loop(None)
            try:
                result = close()
            finally:
                _set_running_loop(loop)
        if asyncio.iscoroutine(result):
            await loop.create_task(result)
    except BaseException:  # the worker ends anyway: its status is not the plugin's
        traceback.print_exc()
