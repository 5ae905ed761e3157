"""A host in its own process for tests/scenarios/test_hostile_process.py: a host that the
test kills, or one run by an ordinary user. It adds the bystander and the attacker of
tests/plugins/hostile_process.py and prints one JSON line with what it saw.

``python hostile_process_host.py pdeathsig SANDBOX``: the attacker (with ``Sandbox(**
SANDBOX)``, JSON) tries to reset its parent-death signal; print the pids and the
outcome, then wait to be killed.
``python hostile_process_host.py oom``: print the worker's pid and layers, and the OOM
score adjustment of the worker and of this host as /proc shows them.
``python hostile_process_host.py inotify``: the attacker (allowed 256 fds) takes every
inotify instance it can; print how that went, and whether this host and the bystander
can still make one.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).parents[1] / "plugins" / "hostile_process.py"
SPECS = HookSet(
    "hostile_process",
    [
        HookSpec(name="ping", args=(), mode="first_result"),
        HookSpec(name="inotify", args=(), mode="first_result"),
        HookSpec(name="reset_pdeathsig", args=(), mode="first_result"),
        HookSpec(name="pdeathsig", args=(), mode="first_result"),
        HookSpec(name="inotify_bomb", args=("count",), mode="first_result"),
    ],
)


async def outcome(host: PluginHost, hook: str, **args: Any) -> dict[str, Any]:
    try:
        return {"value": (await host.call(hook, **args)).value}
    except PluginFailure as exc:
        r = exc.report
        return {"cause": r.cause, "exc_type": r.exc_type, "exc_message": r.exc_message}


def own_inotify() -> str:
    """Whether this host can still make an inotify instance: "ok" or the errno's name."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    os.close(fd)
    return "ok"


def adj(pid: int) -> str:
    with open(f"/proc/{pid}/oom_score_adj") as f:
        return f.read().strip()


async def main(mode: str, sandbox: str = "{}") -> None:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(f"{PLUGINS}:Bystander")
        limits = Limits(open_files=256) if mode == "inotify" else None
        attacker = await host.add(
            f"{PLUGINS}:ProcessAttacker", sandbox=Sandbox(**json.loads(sandbox)), limits=limits
        )
        found: dict[str, Any] = {"host": os.getpid(), "uid": os.geteuid()}
        found.update(worker=attacker.pid, layers=attacker.layers)
        if mode == "pdeathsig":
            found["reset"] = await outcome(host, "reset_pdeathsig")
            found["pdeathsig"] = await outcome(host, "pdeathsig")
        elif mode == "oom":
            assert attacker.pid is not None
            found.update(worker_adj=adj(attacker.pid), host_adj=adj(os.getpid()))
        elif mode == "inotify":
            found["bomb"] = await outcome(host, "inotify_bomb", count=200)
            found["host_inotify"] = own_inotify()
            found["bystander_inotify"] = await outcome(host, "inotify")
        found["bystander"] = await outcome(host, "ping")
        found["bystander_pid"] = bystander.pid
        found["host_maxrss_kb"] = peak_rss_kb()
        print(json.dumps(found), flush=True)
        if mode == "pdeathsig":
            await anyio.sleep_forever()


def peak_rss_kb() -> int:
    """This process's peak RSS since it started this program (VmHWM). Not ru_maxrss:
    that keeps the peak from before execve, the RSS of the test process it was forked
    from."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:3])
