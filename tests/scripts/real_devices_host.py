"""A host in its own process, run as an ordinary user, for
tests/scenarios/test_real_devices.py: its workers keep its uid.

PLAN (argv[1]) is a JSON list of runs, each ``{"ref": plugin, "sandbox": {Sandbox
keyword arguments}, "calls": [[hook, {arguments}], ...]}``. One JSON line is printed per
plugin added (its layers) and per call (what it returned, or its failure).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from plugbox import PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

HOOKS = {
    "discard": ("text",),
    "zeros": ("size",),
    "commands": (),
    "interpreter": ("expression",),
    "pool": ("n",),
    "executor": ("n",),
    "shared": ("times",),
    "attack": ("what", "params"),
}
SPECS = HookSet(
    "devices", [HookSpec(name=n, args=a, mode="first_result") for n, a in HOOKS.items()]
)


async def main(plan: list[dict[str, Any]]) -> None:
    for run in plan:
        async with PluginHost(SPECS) as host:
            info = await host.add(run["ref"], sandbox=Sandbox(**run["sandbox"]))
            print(json.dumps({"ref": run["ref"], "layers": info.layers}), flush=True)
            for hook, args in run["calls"]:
                line: dict[str, Any] = {"ref": run["ref"], "hook": hook}
                try:
                    line.update(outcome="returned", value=(await host.call(hook, **args)).value)
                except PluginFailure as exc:
                    r = exc.report
                    line.update(outcome=r.cause, exc_type=r.exc_type, message=r.exc_message)
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
