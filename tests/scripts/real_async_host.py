"""A host in its own process, run by an ordinary user, for the real async plugins test
(tests/scenarios/test_real_async.py): it runs each of tests/plugins/real_async_*.py on
an asyncio and then a trio host and prints one JSON line with what they returned.

``python real_async_host.py``
"""

from __future__ import annotations

import json
import logging
import os
import site
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginCrashed, PluginFailure
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).parents[1] / "plugins"
HOOKS = HookSet(
    "real-async",
    [
        HookSpec(name="ask", args=("request",), mode="first_result"),
        HookSpec(name="ask_sync", args=("request",), mode="first_result"),
        HookSpec(name="check", args=("request",), mode="first_result"),
    ],
)
FAST = Limits(backoff_initial=0.0)
#: where the libraries the plugins import come from: when that is not the interpreter's
#: own site-packages but a directory on PYTHONPATH (a venv's, for a host run as nobody
#: with the system's python), the plugins are granted it, as docs/sandbox.md says
LIBS = str(Path(anyio.__file__).parents[1])
GRANT = () if LIBS in site.getsitepackages() else (LIBS,)


def plugin(name: str) -> str:
    return str(PLUGINS / f"real_async_{name}.py")


class Numbers(BaseHTTPRequestHandler):
    """GET /sum?a=..&b=.. answers {"sum": a + b, "path": "/sum"} as JSON."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: int(values[0]) for key, values in parse_qs(url.query).items()}
        body = json.dumps({"sum": sum(query.values()), "path": url.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def ask(host: PluginHost, request: Any, hook: str = "ask") -> Any:
    return (await host.call(hook, request=request)).value


def failure(exc: PluginFailure) -> list[str | None]:
    report = exc.report
    return [report.cause, report.exc_type if report.cause == "raised" else report.detail]


async def crash(host: PluginHost) -> None:
    try:
        await ask(host, "crash")
    except PluginCrashed:
        return
    raise AssertionError("the crash call returned")


async def resumed(host: PluginHost) -> dict[str, Any]:
    """The timeout plugin crashed twice: its second restart resumes the standby, whose
    first call's asyncio.timeout expires; then more calls."""
    await host.add(plugin("timeout"), limits=FAST, sandbox=Sandbox(read_only=GRANT))
    await crash(host)
    await ask(host, {"n": 1})  # a fresh worker; a standby is made behind it
    (supervised,) = host._plugins
    if supervised.standby.launching is not None:
        await supervised.standby.launching.wait()
    spare = supervised.standby.worker
    assert spare is not None and await spare.wait_confined()
    await crash(host)
    expire = await ask(host, {"expire": True})
    return {
        "expire": expire,
        "resumed_standby": supervised.worker is spare,
        "after": [(await ask(host, {"n": n}))["square"] for n in range(3)],
        "reports": [[r.cause, r.exit_code] for r in host.reports],
    }


async def run(url: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("anyio"), sandbox=Sandbox(read_only=GRANT))
        found["anyio"] = await ask(host, {"numbers": list(range(1, 11))})
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("timeout"), sandbox=Sandbox(read_only=GRANT))
        found["timeout"] = await ask(host, {"expire": True})
    async with PluginHost(HOOKS) as host:
        found["resumed"] = await resumed(host)
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("httpx"), sandbox=Sandbox(network=True, read_only=GRANT))
        found["httpx"] = await ask(host, {"url": f"{url}/sum", "params": {"a": 2, "b": 40}})
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("openai"), config={}, sandbox=Sandbox(read_only=GRANT))
        found["openai"] = await ask(host, "hi there")
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("loops"), sandbox=Sandbox(read_only=GRANT))
        found["loops"] = await ask(host, [1, 2, 3])
        found["loops_check"] = await ask(host, "x", hook="check")
    interrupt: dict[str, Any] = {}
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("interrupt"), limits=FAST, sandbox=Sandbox(read_only=GRANT))
        for hook, how in (("ask", "raise"), ("ask_sync", "signal"), ("ask", "wake")):
            try:
                await ask(host, how, hook)
            except PluginFailure as exc:
                interrupt[hook if how != "wake" else "wake"] = failure(exc)
        interrupt["served_after"] = (await ask(host, "ping"))["echo"] == "ping"
    found["interrupt"] = interrupt
    return found


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Numbers)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    found: dict[str, Any] = {"uid": os.geteuid()}
    try:
        for backend in ("asyncio", "trio"):
            found[backend] = anyio.run(run, url, backend=backend)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
