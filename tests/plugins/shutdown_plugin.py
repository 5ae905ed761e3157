"""Plugins for the shutdown tests (tests/scripts/shutdown_host.py): a worker that has
started processes, one blocked in a long sync hook, one awaiting in an async hook, and
one that ignores SIGTERM and hangs in ``close``.

Each hook takes ``input_data`` (``specs.PIPELINE``'s ``process``, ``chain`` mode): a
plugin acts only when ``input_data["to"]`` names it, else it passes the value on. A
plugin entering its long wait prints ``started <name>`` (the host logs its stdout).
"""

import asyncio
import os
import signal
import time


def _mine(plugin, input_data):
    return isinstance(input_data, dict) and input_data.get("to") == plugin.name


class ForkerPlugin:
    """``process({"to": "forker"})``: forks a child that sleeps, and a daemon that
    leaves the tree (fork, setsid, fork again, the middle process exits); returns both
    pids as this worker sees them. Needs ``Sandbox(processes=True)``."""

    name = "forker"
    version = "1.0"

    def process(self, input_data):
        if not _mine(self, input_data):
            return None
        child = os.fork()
        if child == 0:
            time.sleep(3600)
            os._exit(0)
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(w, str(os.getpid()).encode())
                time.sleep(3600)
            os._exit(0)
        os.waitpid(middle, 0)
        os.close(w)
        daemon = int(os.read(r, 64))
        os.close(r)
        return {"child": child, "daemon": daemon, "worker": os.getpid()}


class SleeperPlugin:
    """``process({"to": "sleeper"})``: blocks in ``time.sleep`` (a sync hook holds the
    worker: it cannot answer a Shutdown until the host kills it)."""

    name = "sleeper"
    version = "1.0"

    def process(self, input_data):
        if _mine(self, input_data):
            print("started sleeper", flush=True)
            time.sleep(3600)
        return None


class WaiterPlugin:
    """``process({"to": "waiter"})``: awaits forever in an async hook (cancellable)."""

    name = "waiter"
    version = "1.0"

    async def process(self, input_data):
        if _mine(self, input_data):
            print("started waiter", flush=True)
            await asyncio.Event().wait()
        return None


class StubbornPlugin:
    """Ignores SIGTERM, SIGINT and SIGHUP, and hangs in ``close``: only SIGKILL ends it."""

    name = "stubborn"
    version = "1.0"

    def initialize(self, config):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)

    def process(self, input_data):
        return None

    def close(self):
        time.sleep(3600)
