"""Workers without ssl: asyncio is imported in the zygote (and in a fresh worker)
without ``ssl``, which maps OpenSSL (about 4 MB of resident pages in every worker,
``plugbox.worker.lean``); a worker whose sandbox allows the network gets asyncio's TLS
back before its plugin is imported. Either way a plugin can ``import ssl`` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plugbox import PluginHost, Sandbox, specs

pytestmark = pytest.mark.anyio

PROBE = str(Path(__file__).parents[1] / "plugins" / "tls_probe.py")


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
async def test_a_worker_without_the_network_has_no_ssl_loaded_for_it(launcher: str) -> None:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(PROBE)
        info = (await host.call("process", input_data=None)).value
    assert info["ssl_loaded_at_import"] is False  # nothing mapped OpenSSL before it
    assert info["openssl"].startswith("OpenSSL")  # and the plugin imports it as usual
    assert info["asyncio_has_ssl"] is False
    assert info["handshake"].startswith("RuntimeError")  # asyncio's TLS: left out


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
async def test_a_worker_with_the_network_gets_asyncio_tls_back(launcher: str) -> None:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(PROBE, sandbox=Sandbox(network=True))
        info = (await host.call("process", input_data=None)).value
    assert info["ssl_loaded_at_import"] is True
    assert info["asyncio_has_ssl"] is True
    # the handshake ran through asyncio's TLS code, and OpenSSL refused the garbage
    assert info["handshake"].startswith("SSLError"), info["handshake"]


#: what no worker needs before its plugin asks for it: each costs resident memory in
#: the zygote and every worker forked from it (or start time in a fresh one)
HEAVY = {
    "ssl",
    "_ssl",
    "difflib",
    "platform",
    "anyio",
    "psutil",
    "multiprocess",
    "dill",
    "trio",
    "json",
    "email",
    "http",
    "pydoc",
    "decimal",
    "xml",
    "sqlite3",
    "hashlib",
}


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
async def test_the_worker_side_imports_nothing_heavy(launcher: str) -> None:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(str(Path(__file__).parents[1] / "plugins" / "modules_probe.py"))
        loaded = set((await host.call("process", input_data=None)).value)
    assert "asyncio" in loaded and "plugbox.worker.serve" in loaded  # (it did report)
    assert not loaded & HEAVY
    ours = {name for name in loaded if name.startswith("plugbox.")}
    # besides its own and the wire's modules, only the small shared ones it reads its
    # limit values and integrity errors from
    shared = ("plugbox.limits", "plugbox.errors")
    assert all(
        name.startswith(("plugbox.protocol", "plugbox.worker")) or name in shared for name in ours
    ), ours
