"""A host in its own process for tests/scenarios/test_real_memory.py, run as an ordinary
user (its workers keep its uid): each library plugin at the default limits, then a
memory bomb, one JSON line each.

``python real_memory_host.py PLAN``: PLAN is a JSON list of ``[plugin file, class,
[[what, arg], ...]]``; each plugin is added with the default Limits and Sandbox, its
steps run in order, and a line ``{"plugin", "step", "outcome", "value" | "cause",
"detail"}`` printed per step; then ``{"uid": ...}``.

The libraries come from the test's virtual environment, on this host's PYTHONPATH
(user nobody may not run that environment's interpreter, so the host is the system's):
a worker does not inherit PYTHONPATH, so those directories are given as ``read_only``,
as a host names libraries that are not its interpreter's own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from plugbox import PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).parent.parent / "plugins"
LIBRARIES = tuple(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
SPECS = HookSet("real", [HookSpec(name="compute", args=("what", "arg"), mode="first_result")])


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main(plan: list[Any]) -> None:
    for file, cls, steps in plan:
        async with PluginHost(SPECS) as host:
            await host.add(f"{PLUGINS / file}:{cls}", sandbox=Sandbox(read_only=LIBRARIES))
            for what, arg in steps:
                line: dict[str, Any] = {"plugin": file, "step": what}
                try:
                    value = (await host.call("compute", what=what, arg=arg)).value
                    line.update(outcome="returned", value=value)
                except PluginFailure as exc:
                    line.update(outcome="failed", cause=exc.report.cause, detail=exc.report.detail)
                emit(line)
    emit({"uid": os.geteuid()})


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
