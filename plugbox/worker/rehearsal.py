"""A standby worker's rehearsal of a load, on a stand-in plugin of its own.

A worker forked from the zygote shares the zygote's pages until it first writes to one,
and the first write to each page costs a fault and a copy. A standby worker waits for
Resume with time on its hands; it spends it running, once, the code that every load
and first call run after Resume (a plugin file's module made and its code run, its
class found, instantiated and initialized, its hooks checked, a Handshake encoded, the
channel set up on the event loop, one call and its reply through the worker's channel)
on stand-ins made here: a module text of its own, in the plugin's directory, and a
socketpair. None of the plugin's code runs: it is not even imported yet. What the
rehearsal touched is then the standby's own, and the restart that resumes it pays for
the plugin's part alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

from ..protocol import PROTOCOL_VERSION, Call, FrameLimits, Handshake, Shutdown, encode
from . import loader
from .sandbox.process import Confinement
from .serve import serve


def rehearse(
    loop: asyncio.AbstractEventLoop,
    hooks: dict[str, Any],
    layers: dict[str, bool],
    pid: int,
    plugin: loader.Source | None = None,
) -> bool:
    """Rehearse a load and a call of the first of ``hooks`` on ``loop``; whether it
    went through (a rehearsal that fails costs the restart nothing but its time).
    ``plugin`` is the plugin's source: a file plugin's stand-in module is made as if it
    sat beside it."""
    try:
        _rehearse_import(plugin)
        return _rehearse(loop, hooks, layers, pid)
    except Exception:
        return False


#: the stand-in module's text: what a small plugin file does as it is imported
_STAND_IN_MODULE = b"""
import logging
import os
import sys
import time


class RehearsalPlugin:
    name = "rehearsal"
    version = "0"

    def initialize(self, config):
        self.config = config

    def hook(self, value=None):
        return value

    async def hook_async(self, value=None):
        return value
"""
_STAND_IN_SPEC = {
    "hook": {"args": ["value"], "kind": "sync"},
    "hook_async": {"args": ["value"], "kind": "async"},
}
#: the stand-in's file name and the name its module is imported under
_STAND_IN_FILE = "plugbox_rehearsal.py"
_STAND_IN_NAME = loader.file_module_name(_STAND_IN_FILE)


def _rehearse_import(plugin: loader.Source | None) -> None:
    """A load's first half, on a module text of our own: the module made and its code
    run, its class found, instantiated, initialized and checked. (The log handler is
    set up for real before the standby waits: none of it is left for after Resume.)
    Only the stand-in's text is compiled; it is given a path beside a file plugin's
    (nothing is read from it), and what its import leaves behind, its module, is taken
    back."""
    path = plugin.path if plugin is not None else None
    directory = os.path.dirname(path) if path else "/nonexistent"
    source = loader.Source(
        ref="rehearsal",
        path=os.path.join(directory, _STAND_IN_FILE),
        text=_STAND_IN_MODULE,
    )
    loader.precompile(source)
    try:
        instance = loader.instantiate(source)
        instance.initialize({})
        loader.check(instance, _STAND_IN_SPEC)
    finally:
        sys.modules.pop(_STAND_IN_NAME, None)


class _Stand:
    """The stand-in's base: its hook is added by ``_stand_in``."""


def _stand_in(hook: str, asynchronous: bool) -> Any:
    def answer(self: _Stand, **kwargs: Any) -> Any:
        return kwargs

    async def answer_async(self: _Stand, **kwargs: Any) -> Any:
        return kwargs

    return type("RehearsalPlugin", (_Stand,), {hook: answer_async if asynchronous else answer})()


def _rehearse(
    loop: asyncio.AbstractEventLoop, hooks: dict[str, Any], layers: dict[str, bool], pid: int
) -> bool:
    if not hooks:
        return False
    hook, spec = next(iter(hooks.items()))
    if not isinstance(spec, dict):
        return False
    plugin = loader.check(_stand_in(hook, spec.get("kind") == "async"), hooks)
    encode(
        Handshake(
            protocol=PROTOCOL_VERSION,
            plugin=plugin.name,
            version=plugin.version,
            hooks=plugin.hooks,
            pid=pid,
            problems=plugin.problems,
            layers=layers,
        ),
        side="worker",
    )
    args = {name: None for name in spec.get("args", ())}
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        theirs.setblocking(False)

        async def host_side() -> int:
            serving = loop.create_task(
                serve(ours, plugin, {}, Confinement(), FrameLimits(), lambda send: None)
            )
            await loop.sock_sendall(theirs, encode(Call(id=1, hook=hook, args=args), side="host"))
            await loop.sock_recv(theirs, 1 << 16)  # the reply
            await loop.sock_sendall(theirs, encode(Shutdown(), side="host"))
            return await serving

        return loop.run_until_complete(asyncio.wait_for(host_side(), 5.0)) == 0
    finally:
        ours.close()
        theirs.close()
