"""A host that audits to a file and calls forever, for the kill test in test_audit.py.

``python audit_host.py PLUGIN AUDIT_PATH BACKEND``: add the plugin, then call it in a
loop, printing ``called N`` after the N-th call has returned, until killed.
"""

from __future__ import annotations

import sys

import anyio

from plugbox import HookSet, HookSpec, PluginHost

HOOKS = HookSet(
    "audit-test",
    [
        HookSpec(
            name="ask", args=("query", "state"), mode="first_result", mutable=frozenset({"state"})
        )
    ],
)


async def main(plugin: str, audit_path: str) -> None:
    async with PluginHost(HOOKS, audit_path=audit_path) as host:
        await host.add(plugin, config={"answer": "yes"})
        n = 0
        while True:
            await host.call("ask", query=f"q{n}", state={"n": n})
            n += 1
            print(f"called {n}", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
