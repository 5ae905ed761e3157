"""A host in its own process, for the attacks aimed at the host itself
(tests/scenarios/test_attacks.py).

Two things need a host of its own. A secret in ``/proc/<host>/environ`` is the
environment the host was *started* with (``os.environ`` changes made later never reach
that file), so the test starts this host with the secret in its environment. And to show
that the sandbox, not the uid, stops an attack, the workers run with the host's own uid
(``Sandbox(user=None)``: the shape of a host that is not root), where the kernel's uid
checks let everything through and a failure of the sandbox kills this process, not the
test runner.

``python attack_host.py PLAN``: PLAN is a JSON list of runs, each
``{"run": name, "dumpable": bool, "sandbox": {Sandbox keyword arguments},
"attacks": [[label, what, target], ...]}``. The attacker's config holds ``host``,
``pgid``, ``secret_address`` and ``secret_length``: this process's pid, its process
group, and the address and length of a buffer holding the secret (a target names them
``"$host"`` and so on).
Each run is one PluginHost with a healthy plugin and the attacker. One JSON line is
printed per attack, as it is made (a line missing means this host died of it), then
``{"done": ...}`` with what the host saw of itself.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from plugbox import PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

sys.path.insert(0, str(Path(__file__).parent.parent))
from forking import whoami

ATTACKS = str(Path(__file__).parent.parent / "plugins" / "attacks.py")
SPECS = HookSet(
    "attacks",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)
SECRET = os.environ["PLUGBOX_ATTACK_SECRET"]
BUFFER = ctypes.create_string_buffer(SECRET.encode())


def printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


async def run(spec: dict[str, Any]) -> None:
    async with PluginHost(SPECS, dumpable=spec["dumpable"]) as host:
        healthy = await host.add(f"{ATTACKS}:HealthyPlugin")
        config = {
            "host": os.getpid(),
            "pgid": os.getpgid(0),
            "secret_address": ctypes.addressof(BUFFER),
            "secret_length": len(SECRET),
        }
        info = await host.add(
            f"{ATTACKS}:AttackPlugin", config=config, sandbox=Sandbox(**spec["sandbox"])
        )
        for label, what, target in spec["attacks"]:
            line: dict[str, Any] = {"run": spec["run"], "label": label, "layers": info.layers}
            try:
                out = await host.call("attack", what=what, target=target)
                line.update(outcome="returned", value=printable(out.value))
            except PluginFailure as exc:
                r = exc.report
                line.update(
                    outcome=r.cause, exc_type=r.exc_type, exc_message=r.exc_message, signal=r.signal
                )
            assert healthy.pid is not None
            line["healthy"] = (await host.call("ping")).value == [whoami(healthy.pid)]
            line["secret_intact"] = BUFFER.value == SECRET.encode()
            print(json.dumps(line), flush=True)


async def main(plan: list[dict[str, Any]]) -> None:
    for spec in plan:
        await run(spec)
    with open("/proc/self/environ", "rb") as f:
        environ = f.read()
    print(
        json.dumps(
            {
                "done": True,
                "host": os.getpid(),
                "uid": os.geteuid(),
                "secret_in_own_environ": SECRET.encode() in environ,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
