"""The host's channel on trio (``StreamChannel``): frames written while other calls are
in flight leave together, in order, in one send."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from plugbox.host.channel import StreamChannel

pytestmark = pytest.mark.anyio


class CountingSocket(socket.socket):
    """A socket that counts its sends."""

    def __init__(self, fileno: int) -> None:
        super().__init__(fileno=fileno)
        self.sends = 0

    def send(self, data: Any, flags: int = 0) -> int:
        self.sends += 1
        return super().send(data, flags)


async def test_frames_written_soon_in_one_turn_go_out_in_one_send() -> None:
    ours, theirs = socket.socketpair()
    sock = CountingSocket(ours.detach())
    sock.setblocking(False)
    channel = StreamChannel(sock)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.run, lambda data: None, lambda: None, lambda: None)
            await anyio.wait_all_tasks_blocked()
            channel.write_soon(b"one,")
            channel.write_soon(b"two,")
            channel.write(b"three")  # queued behind them, not ahead
            assert sock.sends == 0
            await anyio.wait_all_tasks_blocked()
            assert sock.sends == 1
            assert theirs.recv(100) == b"one,two,three"
            channel.write(b"alone")  # nothing queued: straight out
            assert sock.sends == 2 and theirs.recv(100) == b"alone"
            channel.close()
            theirs.close()  # the reader's EOF: run returns
    finally:
        sock.close()
        theirs.close()
