"""A host in its own process, for tests that must watch a host from outside.

``python host_scenario.py report PLUGIN LAUNCHER``: add the plugin, ask a worker what
it sees, make it crash, print one JSON line with the findings, exit.
``python host_scenario.py serve PLUGIN LAUNCHER``: add the plugin, print one JSON line
with the pids of the host, the worker and the zygote, then wait until killed.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from plugbox import PluginHost, specs
from plugbox.errors import PluginFailure


async def main(mode: str, plugin: str, launcher: str) -> None:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        info = await host.add(plugin)
        zygote = getattr(host._launcher, "pid", None)
        if mode == "serve":
            print(
                json.dumps({"host": os.getpid(), "worker": info.pid, "zygote": zygote}), flush=True
            )
            await anyio.sleep_forever()
        seen = (await host.call("process", input_data={"do": "info"})).value
        try:
            await host.call("process", input_data={"do": "segfault"})
            crash = None
        except PluginFailure as exc:
            crash = {"cause": exc.report.cause, "signal": exc.report.signal}
        again = (await host.call("process", input_data={"do": "pid"})).value
        print(
            json.dumps(
                {
                    "host_uid": os.geteuid(),
                    "worker_uid": seen["uid"],
                    "layers": info.layers,
                    "crash": crash,
                    "restarted": again != info.pid,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
