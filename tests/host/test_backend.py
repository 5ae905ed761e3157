"""The one backend probe, asyncio or trio, and what the host picks from it: the
channel and the deadlines of a worker (uvloop, an asyncio loop: tests/host/test_uvloop.py)."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from plugbox.host.backend import on_asyncio
from plugbox.host.channel import AsyncioChannel, StreamChannel, open_channel
from plugbox.host.pending import AsyncioDeadlines, TrioDeadlines, deadlines_for_running_loop

BACKENDS = [
    ("asyncio", {}, True),
    ("trio", {}, False),
]


async def picked() -> tuple[bool, type, type]:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        channel = type(open_channel(a))
    finally:
        a.close()
        b.close()
    return on_asyncio(), channel, type(deadlines_for_running_loop())


@pytest.mark.parametrize(("backend", "options", "asyncio"), BACKENDS)
def test_one_probe_decides_the_channel_and_the_deadlines(
    backend: str, options: dict[str, Any], asyncio: bool
) -> None:
    probe, channel, deadlines = anyio.run(picked, backend=backend, backend_options=options)
    assert probe is asyncio
    assert channel is (AsyncioChannel if asyncio else StreamChannel)
    assert deadlines is (AsyncioDeadlines if asyncio else TrioDeadlines)
