"""The child side of the socket baselines: ``python -I bench_echo_child.py MODE FD``.

``raw``: a blocking loop on the socket: msgpack objects in, the same objects out.
``asyncio``: an ``asyncio.Protocol`` on a plain asyncio loop: ``[id, payload]`` in,
``[id, payload]`` out, as many in flight as the host sends (a minimal RPC server:
the floor plugbox's worker is compared against).
``exit``: waits for one byte, sends its CLOCK_MONOTONIC time, then ``os._exit(3)``:
the floor of noticing a child's death through its socket's EOF.

Both decode and re-encode what they echo, as a plugin worker does. Only the standard
library and msgpack are imported, as in plugbox's worker. The child exits when the
host closes its end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import msgpack


def raw(sock: socket.socket) -> None:
    unpacker = msgpack.Unpacker(raw=False)
    packb = msgpack.packb
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return
        unpacker.feed(data)
        for obj in unpacker:
            sock.sendall(packb(obj, use_bin_type=True))


class EchoProtocol(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.unpacker = msgpack.Unpacker(raw=False)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        assert self.transport is not None
        write = self.transport.write
        for call_id, payload in self.unpacker:
            write(msgpack.packb([call_id, payload], use_bin_type=True))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def serve_asyncio(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    sock.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(lambda: EchoProtocol(done), sock)
    await done
    transport.close()


def exit_now(sock: socket.socket) -> None:
    sock.recv(1)
    sock.sendall(str(time.clock_gettime_ns(time.CLOCK_MONOTONIC)).encode())
    os._exit(3)


def main() -> None:
    mode, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)
    if mode == "raw":
        raw(sock)
    elif mode == "asyncio":
        asyncio.run(serve_asyncio(sock))
    elif mode == "exit":
        exit_now(sock)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
