"""Moving bytes between the host and one worker's channel socket.

Two implementations of one small interface. On asyncio the channel is an
``asyncio.Protocol``: bytes are handed over in the callback that reads them, so a reply
wakes its caller in the next turn of the loop, and writes go through the transport's
buffer. Elsewhere (trio) a reader task waits for readability and a writer task drains
what the socket could not take at once. Neither takes a lock per call.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import anyio

from .backend import on_asyncio
from .tasks import start_protected

OnData = Callable[[bytes], None]
#: at most this many reads of 256 KiB by ``Channel.unread`` (a dead peer's socket
#: holds no more than its receive buffer)
UNREAD_READS = 16
Deadline = Callable[[], "float | None"]


class Channel:
    """The interface: ``write`` never blocks; ``run`` reads until EOF or close."""

    broken = False
    sock: socket.socket

    def write(self, frame: bytes) -> None:
        raise NotImplementedError

    def write_soon(self, frame: bytes) -> None:
        """Like ``write``, but frames written in the same turn of the event loop may go
        out together in one send (used when other calls are in flight)."""
        self.write(frame)

    def close(self) -> None:
        """Stop reading and writing; ``run`` returns."""
        raise NotImplementedError

    def pause(self, seconds: float) -> None:
        """Read nothing more for ``seconds`` (the peer floods: its writes wait)."""
        raise NotImplementedError

    def unread(self) -> bytes:
        """What the peer sent that the reader has not taken yet, read without waiting:
        the last frames of a worker whose exit was heard before they were read."""
        chunks: list[bytes] = []
        for _ in range(UNREAD_READS):
            try:
                data = self.sock.recv(1 << 18, socket.MSG_DONTWAIT)
            except OSError:  # (BlockingIOError: nothing more; or the socket is gone)
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    async def run(self, on_data: OnData, deadline: Deadline, on_late: Callable[[], None]) -> None:
        """Feed every chunk read to ``on_data`` until the peer closes; call ``on_late``
        once ``deadline()`` (a monotonic time, or None) passes with no bytes read."""
        raise NotImplementedError


def open_channel(sock: socket.socket) -> Channel:
    """The fastest channel for the running event loop."""
    return AsyncioChannel(sock) if on_asyncio() else StreamChannel(sock)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: AsyncioChannel) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner.received(data)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost()


class AsyncioChannel(Channel):
    """The channel as an asyncio transport and protocol."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        self._queued: list[bytes] = []
        self._on_data: OnData | None = None
        self._deadline: Deadline | None = None
        self._on_late: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done: asyncio.Future[None] | None = None
        self._batch: list[bytes] | None = None
        self._paused = False

    def write(self, frame: bytes) -> None:
        if self.broken:
            return
        if self.transport is None:
            self._queued.append(frame)
        elif not self.transport.is_closing():
            self.transport.write(frame)

    def write_soon(self, frame: bytes) -> None:
        if self._batch is not None:
            self._batch.append(frame)
            return
        self._batch = [frame]
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            self.write(b"".join(batch) if len(batch) > 1 else batch[0])

    async def run(self, on_data: OnData, deadline: Deadline, on_late: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._on_data, self._deadline, self._on_late = on_data, deadline, on_late
        self._done = loop.create_future()
        transport, _ = await loop.connect_accepted_socket(lambda: _Protocol(self), self.sock)
        self.transport = transport  # uvloop's transport is not an asyncio.Transport subclass
        for frame in self._queued:
            transport.write(frame)
        self._queued.clear()
        try:
            await self._done
        finally:
            self.broken = True
            if self._timer is not None:
                self._timer.cancel()
            transport.abort()

    def received(self, data: bytes) -> None:
        assert self._on_data is not None and self._deadline is not None
        self._on_data(data)
        if self._timer is None:
            due = self._deadline()
            if due is not None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_at(loop.time() + max(due - time.monotonic(), 0), self._late)

    def _late(self) -> None:
        self._timer = None
        assert self._on_late is not None and self._deadline is not None
        due = self._deadline()
        if due is not None and due <= time.monotonic():
            self._on_late()
        elif due is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + due - time.monotonic(), self._late)

    def pause(self, seconds: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self._paused:
            return
        self._paused = True
        transport.pause_reading()
        asyncio.get_running_loop().call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def lost(self) -> None:
        self.broken = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def close(self) -> None:
        """Stop reading now (the reader's ``run`` returns)."""
        if self.transport is not None:
            self.transport.abort()
        self.lost()


class StreamChannel(Channel):
    """The channel as a non-blocking socket read and written by two tasks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._outbuf = bytearray()
        self._want_write = anyio.Event()
        self._resume_at = 0.0
        self._closed = anyio.Event()

    def write(self, frame: bytes) -> None:
        if self.broken:
            return
        if self._outbuf:
            self._outbuf += frame
            return
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.broken = True
            return
        if sent < len(frame):
            self._outbuf += memoryview(frame)[sent:]
            self._want_write.set()

    def write_soon(self, frame: bytes) -> None:
        """Queue ``frame`` for the writer task: it runs after the tasks that are ready
        now, so the frames they write go out together in one send."""
        if self.broken:
            return
        self._outbuf += frame
        self._want_write.set()

    async def _drain(self) -> None:
        try:
            while not self.broken:
                await self._want_write.wait()
                self._want_write = anyio.Event()
                while self._outbuf and not self.broken:
                    try:
                        sent = self.sock.send(self._outbuf)
                    except BlockingIOError:
                        await anyio.wait_writable(self.sock)
                        continue
                    del self._outbuf[:sent]
        except (OSError, anyio.ClosedResourceError):
            self.broken = True

    async def run(self, on_data: OnData, deadline: Deadline, on_late: Callable[[], None]) -> None:
        sock = self.sock
        try:
            async with anyio.create_task_group() as tg:
                start_protected(tg, self._drain)  # Ctrl-C on trio: see tasks.py
                try:
                    while True:
                        if self._resume_at:  # paused (``pause``), until then or closed
                            wait, self._resume_at = self._resume_at - time.monotonic(), 0.0
                            with anyio.move_on_after(max(wait, 0)):
                                await self._closed.wait()
                            if self.broken:
                                break
                        due = deadline()
                        if due is None:
                            await anyio.wait_readable(sock)
                        else:
                            with anyio.move_on_after(max(due - time.monotonic(), 0)):
                                await anyio.wait_readable(sock)
                            if (due := deadline()) is not None and due <= time.monotonic():
                                on_late()
                                break
                        try:
                            data = sock.recv(1 << 18)
                        except BlockingIOError:
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            break
                        on_data(data)
                finally:
                    self.broken = True
                    self._want_write.set()
                    tg.cancel_scope.cancel()
        except anyio.ClosedResourceError:
            pass

    def pause(self, seconds: float) -> None:
        self._resume_at = self._resume_at or time.monotonic() + seconds

    def close(self) -> None:
        """Stop reading and writing."""
        self.broken = True
        self._want_write.set()
        self._closed.set()
