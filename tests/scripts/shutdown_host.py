"""A host in its own process, mid-call, for the shutdown tests to end from outside.

``python shutdown_host.py async LAUNCHER BACKEND``: a ``PluginHost`` on ``BACKEND``
(asyncio or trio) with four plugins (tests/plugins/shutdown_plugin.py): ``forker``
has started a child and a double-forked daemon, ``waiter`` is awaiting in an async
hook and ``sleeper`` blocked in a sync one (two calls in flight), and ``stubborn``
ignores SIGTERM and hangs in ``close``. Once both calls are running in their workers
it prints the ``ready`` line, then waits. SIGUSR1 makes it cancel the task that owns
the host, as an application's shutdown would: the host closes, it prints ``closed``
and exits 0. SIGINT (Ctrl-C) raises KeyboardInterrupt: the host closes, it prints
``closed`` and re-raises it. SIGTERM and SIGKILL end it as they end any Python program
(plugbox installs no signal handler). A call in flight that fails because the host
closed its worker before the call's task was cancelled prints ``call_failed``.

``python shutdown_host.py sync LAUNCHER``: the same plugins (without ``waiter``) under
a ``SyncPluginHost``, used as a plain script would: the main thread blocks in
``host.call`` on the sleeper; nothing is caught.

Every line on stdout is one JSON object with an ``event``. ``ready`` carries the pids
to watch, as the host's pid namespace sees them: ``host``, ``workers`` (by plugin),
``descendants`` (every process under the host: zygote, workers and what they
started), and the forker's ``child`` and ``daemon``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil

from plugbox import Limits, PluginHost, Sandbox, SyncPluginHost, specs
from plugbox.errors import PluginFailure

PLUGIN = str(Path(__file__).parent.parent / "plugins" / "shutdown_plugin.py")
#: long enough that only the shutdown ends a call; short enough that closing a worker
#: stuck in a hook (or in ``close``) is quick
LIMITS = Limits(call_timeout=3600, close_timeout=0.3)
MID_CALL = ("sleeper", "waiter")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Started(logging.Handler):
    """Notes the plugins that wrote ``started <name>`` (their stdout is logged)."""

    def __init__(self, on_start: Any) -> None:
        super().__init__(logging.INFO)
        self.on_start = on_start

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("started "):
            self.on_start(text.split()[1])


def watch_plugin_output(on_start: Any) -> None:
    logger = logging.getLogger("plugbox.plugin")
    logger.setLevel(logging.INFO)
    logger.addHandler(Started(on_start))
    logger.propagate = False  # the failures and output of closing stay off stderr


def _status_field(pid: int, name: str) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{name}:"):
                return [int(x) for x in line.split()[1:]]
    return []


def host_pid_of(inner_pid: int, beside: int) -> int | None:
    """The pid, in this namespace, of the process that ``beside``'s pid namespace
    calls ``inner_pid`` (the same number where the worker has no pid namespace)."""
    ns = os.readlink(f"/proc/{beside}/ns/pid")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns and _status_field(pid, "NSpid")[-1:] == [
                inner_pid
            ]:
                return pid
        except (OSError, IndexError):
            continue
    return None


def pids(workers: dict[str, int | None], forked: dict[str, int]) -> dict[str, Any]:
    forker = workers["forker"]
    assert forker is not None
    return {
        "host": os.getpid(),
        "workers": workers,
        "descendants": sorted(p.pid for p in psutil.Process().children(recursive=True)),
        "child": host_pid_of(forked["child"], forker),
        "daemon": host_pid_of(forked["daemon"], forker),
    }


async def add_plugins(host: PluginHost, names: tuple[str, ...]) -> None:
    for name in names:
        sandbox = Sandbox(processes=True) if name == "forker" else None
        await host.add(f"{PLUGIN}:{name.capitalize()}Plugin", limits=LIMITS, sandbox=sandbox)


# ---------------------------------------------------------------------- async
async def in_flight(host: PluginHost, name: str) -> None:
    """A call that only the shutdown ends: cancelled with its task, or failed because
    the host closed its worker first (said on stdout)."""
    try:
        await host.call("process", input_data={"to": name})
    except PluginFailure as exc:
        emit("call_failed", plugin=name, cause=exc.report.cause, detail=exc.report.detail)


async def run_async(launcher: str) -> None:
    started: dict[str, anyio.Event] = {name: anyio.Event() for name in MID_CALL}
    watch_plugin_output(lambda name: started[name].set() if name in started else None)
    with anyio.open_signal_receiver(signal.SIGUSR1) as cancel_signals:
        async with anyio.create_task_group() as tg:

            async def cancel_on_signal() -> None:
                async for _ in cancel_signals:
                    emit("cancelling")
                    tg.cancel_scope.cancel()

            async def serve() -> None:
                async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
                    await add_plugins(host, ("forker", "waiter", "sleeper", "stubborn"))
                    forked = (await host.call("process", input_data={"to": "forker"})).value
                    for name in MID_CALL:
                        tg.start_soon(in_flight, host, name)
                    for event in started.values():
                        await event.wait()
                    workers = {p.name: p.pid for p in host.plugins}
                    emit("ready", **pids(workers, forked))
                    await anyio.sleep_forever()

            tg.start_soon(cancel_on_signal)
            tg.start_soon(serve)
    emit("closed")


# ---------------------------------------------------------------------- sync
def run_sync(launcher: str) -> None:
    state: dict[str, Any] = {}

    def on_start(name: str) -> None:  # on the host's loop thread, main blocked in call
        if name == "sleeper":
            emit("ready", **pids(state["workers"], state["forked"]))

    watch_plugin_output(on_start)
    with SyncPluginHost(specs.PIPELINE, launcher=launcher) as host:
        for name in ("forker", "sleeper", "stubborn"):
            sandbox = Sandbox(processes=True) if name == "forker" else None
            host.add(f"{PLUGIN}:{name.capitalize()}Plugin", limits=LIMITS, sandbox=sandbox)
        state["forked"] = host.call("process", input_data={"to": "forker"}).value
        state["workers"] = {p.name: p.pid for p in host.plugins}
        host.call("process", input_data={"to": "sleeper"})


if __name__ == "__main__":
    mode, launcher = sys.argv[1], sys.argv[2]
    if mode == "sync":
        run_sync(launcher)
    else:
        try:
            anyio.run(run_async, launcher, backend=sys.argv[3])
        except KeyboardInterrupt:
            pass
        except BaseExceptionGroup as group:  # trio: the interrupted nursery's group
            if group.split(KeyboardInterrupt)[1] is not None:
                raise
        else:
            sys.exit(0)
        emit("closed")  # the host's `async with` has exited
        raise KeyboardInterrupt  # and exit as Python does on Ctrl-C
