"""A host in its own process, run by an ordinary user, for the refusal tests: it runs
tests/plugins/real_refusals.py's plugins against the default sandbox and limits (and
with the network and processes on), and the bypass plugin, and prints one JSON line
with what each caught and what each report said was refused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketStream

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginRaised

PLUGINS = Path(__file__).parents[1] / "plugins"
REAL = PLUGINS / "real_refusals.py"

#: plugin class, its name, its input, its limits: each is refused under them
REFUSED: list[tuple[str, str, dict[str, Any], Limits]] = [
    ("FetchPlugin", "fetch", {"url": "http://example.invalid/"}, Limits()),
    ("ShellPlugin", "shell", {"system": True}, Limits()),
    ("CachePlugin", "cache", {"where": "beside"}, Limits()),
    ("ManyFilesPlugin", "many-files", {"count": 40}, Limits(open_files=32)),
    ("ExportPlugin", "export", {"mb": 2}, Limits(file_size_mb=1)),
]


def libraries() -> Sandbox:
    """The default sandbox, reading the site-packages httpx is in: this host may have
    it only on PYTHONPATH, which a worker does not inherit."""
    spec = importlib.util.find_spec("httpx")  # found, not imported
    assert spec is not None and spec.origin is not None
    return Sandbox(read_only=(str(Path(spec.origin).parents[1]),))


async def refused(cls: str, data: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """What the plugin caught, and what the report of the same call uncaught said."""
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{REAL}:{cls}", limits=limits, sandbox=libraries())
        caught = (await host.call("process", input_data={**data, "catch": True})).value
        try:
            await host.call("process", input_data=data)
        except PluginRaised as exc:
            return {"caught": caught["message"], "refused": exc.report.refused}
    return {"caught": caught, "refused": "(not raised)"}


async def answer(stream: SocketStream) -> None:
    async with stream:
        await stream.receive()
        await stream.send(b"pong\n")


async def main() -> None:
    found: dict[str, Any] = {"uid": os.geteuid()}
    for cls, name, data, limits in REFUSED:
        found[name] = await refused(cls, data, limits)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with tempfile.TemporaryDirectory() as outside:
        os.chmod(outside, 0o777)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, answer)
            async with PluginHost(specs.PIPELINE) as host:
                await host.add(f"{PLUGINS / 'real_refusals_bypass.py'}:BypassPlugin")
                got = await host.call(
                    "process", input_data={"port": port, "outside": f"{outside}/x"}
                )
                found["bypass"] = got.value
            async with PluginHost(specs.PIPELINE) as host:
                await host.add(f"{REAL}:EchoClientPlugin", sandbox=Sandbox(network=True))
                found["network_on"] = (await host.call("process", input_data={"port": port})).value
            tg.cancel_scope.cancel()
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{REAL}:ShellPlugin", sandbox=Sandbox(processes=True))
        found["processes_on"] = (await host.call("process", input_data={})).value
    print(json.dumps(found))


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
