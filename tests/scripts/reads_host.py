"""A host in its own process, run by an ordinary user, for the read-scope attacks
(tests/scenarios/test_hostile_reads.py): its workers keep its uid, so only the sandbox
stands between a plugin and the user's files.

The test copies this file into a home directory as ``app.py`` and runs
``python -m app PLAN`` from there, as ``python -m`` puts the working directory (the
home) on the import path. PLAN is a JSON list of runs, each ``{"run": name,
"attacker": ref, "sandbox": {Sandbox keyword arguments}, "attacks": [[label, what,
target], ...]}``. One JSON line is printed per attack, then ``{"done": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import psutil

from plugbox import PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

SPECS = HookSet(
    "hostile-reads",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)


def printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {str(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


async def run(spec: dict[str, Any], bystander: str) -> None:
    async with PluginHost(SPECS) as host:
        await host.add(bystander)
        await host.add(spec["attacker"], sandbox=Sandbox(**spec["sandbox"]))
        for label, what, target in spec["attacks"]:
            line: dict[str, Any] = {"run": spec["run"], "label": label}
            try:
                out = await host.call("attack", what=what, target=target)
                line.update(outcome="returned", value=printable(out.value))
            except PluginFailure as exc:
                r = exc.report
                line.update(outcome=r.cause, exc_type=r.exc_type, exc_message=r.exc_message)
            line["healthy"] = (await host.call("ping")).value == ["pong"]
            print(json.dumps(line), flush=True)


async def main(plan: list[dict[str, Any]], bystander: str) -> None:
    rss = psutil.Process().memory_info().rss
    for spec in plan:
        await run(spec, bystander)
    grown = psutil.Process().memory_info().rss - rss
    print(json.dumps({"done": True, "uid": os.geteuid(), "rss_growth": grown}), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]), sys.argv[2])
