"""A standby worker's rehearsal of a load, on a stand-in plugin of its own.

A worker forked from the zygote shares the zygote's pages until it first writes to one,
and the first write to each page costs a fault and a copy. A standby worker waits for
Resume with time on its hands; it spends it running, once, the code that every load
and first call run after Resume (checking a plugin's hooks, encoding a Handshake,
setting up the channel on the event loop, one call and its reply through the worker's
channel) on a stand-in plugin made here, over a socketpair of its own. None of the
plugin's code runs: it is not even imported yet. What the rehearsal touched is then
the standby's own, and the restart that resumes it pays for the plugin's part alone.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ..protocol import (
    PROTOCOL_VERSION,
    Call,
    FrameLimits,
    Handshake,
    Shutdown,
    encode,
)
from . import loader
from .confine import Confinement
from .serve import serve


def rehearse(loop: asyncio.AbstractEventLoop, hooks: dict[str, Any],
             layers: dict[str, bool], pid: int) -> bool:
    """Rehearse a load and a call of the first of ``hooks`` on ``loop``; whether it
    went through (a rehearsal that fails costs the restart nothing but its time)."""
    try:
        return _rehearse(loop, hooks, layers, pid)
    except Exception:
        return False


class _Stand:
    """The stand-in's base: its hook is added by ``_stand_in``."""


def _stand_in(hook: str, asynchronous: bool) -> Any:
    def answer(self: _Stand, **kwargs: Any) -> Any:
        return kwargs

    async def answer_async(self: _Stand, **kwargs: Any) -> Any:
        return kwargs

    return type("RehearsalPlugin", (_Stand,), {hook: answer_async if asynchronous
                                               else answer})()


def _rehearse(loop: asyncio.AbstractEventLoop, hooks: dict[str, Any],
              layers: dict[str, bool], pid: int) -> bool:
    if not hooks:
        return False
    hook, spec = next(iter(hooks.items()))
    if not isinstance(spec, dict):
        return False
    plugin = loader.check(_stand_in(hook, spec.get("kind") == "async"), hooks)
    encode(Handshake(protocol=PROTOCOL_VERSION, plugin=plugin.name, version=plugin.version,
                     hooks=plugin.hooks, pid=pid, problems=plugin.problems, layers=layers),
           side="worker")
    args = {name: None for name in spec.get("args", ())}
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        theirs.setblocking(False)

        async def host_side() -> int:
            serving = loop.create_task(serve(ours, plugin, {}, Confinement(), FrameLimits(),
                                             lambda send: None))
            await loop.sock_sendall(theirs, encode(Call(id=1, hook=hook, args=args),
                                                   side="host"))
            await loop.sock_recv(theirs, 1 << 16)  # the reply
            await loop.sock_sendall(theirs, encode(Shutdown(), side="host"))
            return await serving

        return loop.run_until_complete(asyncio.wait_for(host_side(), 5.0)) == 0
    finally:
        ours.close()
        theirs.close()
