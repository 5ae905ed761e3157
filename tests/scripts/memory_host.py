"""A host in its own process for tests/scenarios/test_hostile_memory.py: run as another
user (an ordinary user's host, where the worker keeps the host's uid), or killed with
SIGKILL to show what it leaves behind.

``python memory_host.py PLAN``: PLAN is a JSON object ``{"sandbox": {...}, "limits":
{...}, "steps": [[what, params], ...], "then": "close" | "wait"}``. The host adds the
bystander and the attacker, runs each attack and prints one JSON line per step (its
outcome), then a line ``{"ready": ...}`` with the pids, and either closes the host
(``close``: then ``{"closed": true}``) or waits to be killed (``wait``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import psutil

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

PLUGINS = str(Path(__file__).parent.parent / "plugins" / "hostile_memory.py")
SPECS = HookSet(
    "memory",
    [
        HookSpec(name="attack", args=("what", "params"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main(plan: dict[str, Any]) -> None:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(f"{PLUGINS}:Bystander")
        attacker = await host.add(
            f"{PLUGINS}:MemoryAttacker",
            sandbox=Sandbox(**plan.get("sandbox", {})),
            limits=Limits(**plan.get("limits", {})),
        )
        first = (await host.call("ping")).value
        for what, params in plan["steps"]:
            line: dict[str, Any] = {"step": what, "layers": attacker.layers}
            try:
                line.update(
                    outcome="returned",
                    value=(await host.call("attack", what=what, params=params)).value,
                )
            except PluginFailure as exc:
                r = exc.report
                line.update(
                    outcome=r.cause,
                    error=type(exc).__name__,
                    detail=r.detail,
                    exc_type=r.exc_type,
                    exc_message=r.exc_message,
                )
            line["bystander_same"] = (await host.call("ping")).value == first
            line["host_rss_kb"] = psutil.Process().memory_info().rss // 1024
            emit(line)
        pids = [p.pid for p in host.plugins]
        emit(
            {
                "ready": True,
                "host": os.getpid(),
                "uid": os.geteuid(),
                "workers": pids,
                "bystander": bystander.pid,
            }
        )
        if plan.get("then") == "wait":
            await anyio.sleep_forever()
    emit({"closed": True})


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
