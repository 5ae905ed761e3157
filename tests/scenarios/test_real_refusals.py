"""Every refusal names its setting: plugins written as their authors write them (httpx,
socket, subprocess, os.system, open) meet the default sandbox and limits, and what
they catch, or the FailureReport of what they did not, names the Sandbox or Limits
setting that allows it; with the setting on, the same plugin works. A plugin that goes
around the wording (ctypes) is still refused by the layers below.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginRaised
from plugbox.reports import FailureReport

PLUGINS = Path(__file__).parents[1] / "plugins"
REAL = PLUGINS / "real_refusals.py"
BYPASS = f"{PLUGINS / 'real_refusals_bypass.py'}:BypassPlugin"
USER_HOST = str(Path(__file__).parents[1] / "scripts" / "refusals_host.py")
NUMBERS = [3, 5, 8, 13]

pytestmark = pytest.mark.anyio


def plugin(cls: str) -> str:
    return f"{REAL}:{cls}"


async def _answer(stream: SocketStream, respond: Callable[[bytes], bytes]) -> None:
    async with stream:
        data = b""
        while b"\n" not in data:
            chunk = await stream.receive()
            data += chunk
        if data.startswith(b"GET"):
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
        await stream.send(respond(data))


def http_json(_: bytes) -> bytes:
    body = json.dumps({"numbers": NUMBERS}).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\nConnection: close\r\n\r\n" + body


@asynccontextmanager
async def serving(respond: Callable[[bytes], bytes]) -> AsyncIterator[int]:
    """A loopback TCP service answering each request with ``respond``: its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:

        async def handle(stream: SocketStream) -> None:
            await _answer(stream, respond)

        tg.start_soon(listener.serve, handle)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def call(host: PluginHost, name: str, **data: Any) -> Any:
    return (await host.call("process", input_data=data)).value


async def raised(host: PluginHost, name: str, **data: Any) -> FailureReport:
    """The report of the call, which must fail with the plugin's own exception."""
    with pytest.raises(PluginRaised) as info:
        await host.call("process", input_data=data)
    report = info.value.report
    assert report.plugin == name and report.cause == "raised"
    return report


async def one(cls: str, run: Callable[[PluginHost], Awaitable[None]], **add: Any) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin(cls), **add)
        await run(host)


# --------------------------------------------------------------------------- network
async def test_a_fetch_without_the_network_says_which_setting_allows_it() -> None:
    async def run(host: PluginHost) -> None:
        caught = await call(host, "fetch", url="http://example.invalid/numbers", catch=True)
        assert caught["error"] == "ConnectError", caught
        assert (
            "network is off for plugin 'fetch': Sandbox(network=True) allows it"
            in (caught["message"])
        ), caught
        report = await raised(host, "fetch", url="http://example.invalid/numbers")
        assert report.exc_type == "ConnectError"
        assert report.refused == "Sandbox.network"
        assert "Sandbox(network=True) allows it" in report.detail

    await one("FetchPlugin", run)


async def test_a_socket_connection_without_the_network_says_which_setting_allows_it() -> None:
    async with serving(lambda _: b"pong\n") as port:

        async def run(host: PluginHost) -> None:
            caught = await call(host, "echo-client", port=port, catch=True)
            assert caught["error"] == "PermissionError", caught
            assert caught["message"].startswith(
                "[Errno 1] network is off for plugin 'echo-client': Sandbox(network=True) allows it"
            ), caught
            report = await raised(host, "echo-client", port=port)
            assert report.refused == "Sandbox.network"
            assert report.exc_type == "PermissionError"
            assert "Sandbox(network=True) allows it" in (report.exc_message or "")

        await one("EchoClientPlugin", run)


async def test_with_the_network_on_the_same_plugins_fetch_and_talk() -> None:
    network = Sandbox(network=True)
    async with serving(http_json) as http_port, serving(lambda _: b"pong\n") as echo_port:
        url = f"http://127.0.0.1:{http_port}/numbers"
        await one(
            "FetchPlugin",
            lambda host: _expect(host, "fetch", {"total": sum(NUMBERS)}, url=url),
            sandbox=network,
        )
        await one(
            "EchoClientPlugin",
            lambda host: _expect(host, "echo-client", {"reply": "pong"}, port=echo_port),
            sandbox=network,
        )


# --------------------------------------------------------------------------- processes
async def test_commands_without_processes_raise_naming_the_setting() -> None:
    async def run(host: PluginHost) -> None:
        for system in (False, True):  # os.system raises: it does not return 127
            caught = await call(host, "shell", system=system, catch=True)
            assert caught["error"] == "PermissionError", caught
            assert (
                "new processes are off for plugin 'shell': Sandbox(processes=True) allows them"
                in caught["message"]
            ), caught
        report = await raised(host, "shell", system=True)
        assert report.refused == "Sandbox.processes"
        assert "os.system('true')" in (report.exc_message or "")

    await one("ShellPlugin", run)


async def test_with_processes_on_the_same_plugin_runs_its_commands() -> None:
    async def run(host: PluginHost) -> None:
        assert await call(host, "shell") == {"stdout": "hello\n"}
        assert await call(host, "shell", system=True) == {"status": 0}

    await one("ShellPlugin", run, sandbox=Sandbox(processes=True))


# --------------------------------------------------------------------------- writes
async def test_writes_outside_the_scratch_directory_name_it_and_the_setting() -> None:
    async def run(host: PluginHost) -> None:
        saved = await call(host, "cache", where="scratch")
        assert saved["saved"] == [1, 2, 3]
        scratch = os.path.dirname(saved["at"])
        for where, path in (
            ("beside", str(PLUGINS / "cache.json")),
            ("etc", "/etc/plugbox-cache.json"),
        ):
            caught = await call(host, "cache", where=where, catch=True)
            assert caught["error"] == "PermissionError", caught
            assert caught["message"] == (
                "[Errno 13] writes outside its scratch directory are off for plugin 'cache': "
                f"it may write in {scratch}, which Sandbox(scratch=...) sets "
                f"(refused: opening for writing): {path!r}"
            )
        report = await raised(host, "cache", where="beside")
        assert report.refused == "Sandbox.scratch"
        assert "Sandbox(scratch=...)" in report.detail
        assert not (PLUGINS / "cache.json").exists()

    await one("CachePlugin", run)


async def test_what_the_kernel_refuses_first_is_left_to_it() -> None:
    async def run(host: PluginHost) -> None:
        assert await call(host, "cache", where="kernel-first") == {
            "makedirs_existing": "ok",
            "remove_missing": "FileNotFoundError",
            "open_in_missing_dir": "FileNotFoundError",
            "exclusive_existing": "FileExistsError",
            "rename_missing": "FileNotFoundError",
        }

    await one("CachePlugin", run)


async def test_a_write_the_hook_cannot_judge_is_named_in_the_report() -> None:
    """A relative path after os.chdir: the plugin gets the kernel's bare EACCES, and
    the report of the call it ends names the setting."""
    with tempfile.TemporaryDirectory(prefix="plugbox-test-refusals-") as elsewhere:
        os.chmod(elsewhere, 0o777)  # only the sandbox stands in the way

        async def run(host: PluginHost) -> None:
            report = await raised(host, "cache", where="in", dir=elsewhere)
            assert report.refused == "Sandbox.scratch"
            assert report.exc_message == "[Errno 13] Permission denied: 'cache.json'"
            assert "which Sandbox(scratch=...) sets" in report.detail

        await one("CachePlugin", run)
        assert os.listdir(elsewhere) == []


async def test_a_scratch_directory_given_is_the_one_named() -> None:
    with tempfile.TemporaryDirectory(prefix="plugbox-test-refusals-") as scratch:
        os.chmod(scratch, 0o777)  # (a root host's worker runs as nobody)

        async def run(host: PluginHost) -> None:
            saved = await call(host, "cache", where="scratch")
            assert saved == {"saved": [1, 2, 3], "at": os.path.join(scratch, "cache.json")}
            caught = await call(host, "cache", where="etc", catch=True)
            assert f"it may write in {os.path.realpath(scratch)}, which" in caught["message"]

        await one("CachePlugin", run, sandbox=Sandbox(scratch=scratch))


# --------------------------------------------------------------------------- limits
async def test_too_many_open_files_names_limits_open_files() -> None:
    async def run(host: PluginHost) -> None:
        caught = await call(host, "many-files", count=40, catch=True)
        assert caught["error"] == "OSError", caught
        assert caught["message"].startswith(
            "[Errno 24] too many open files: Limits(open_files=32) allows 32 "
            "for plugin 'many-files'"
        ), caught
        report = await raised(host, "many-files", count=40)
        assert report.refused == "Limits.open_files"
        assert "Limits(open_files=32) allows 32" in report.detail

    await one("ManyFilesPlugin", run, limits=Limits(open_files=32))
    await one(
        "ManyFilesPlugin",
        lambda host: _expect(host, "many-files", {"open": 40}, count=40),
        limits=Limits(open_files=64),
    )


async def test_a_file_past_file_size_mb_names_limits_file_size_mb() -> None:
    async def run(host: PluginHost) -> None:
        report = await raised(host, "export", mb=2)
        assert report.detail == (
            "OSError: [Errno 27] File too large (file too large: Limits(file_size_mb=1) "
            "allows files up to 1 MB for plugin 'export')"
        )
        assert report.refused == "Limits.file_size_mb"
        assert (report.exc_type, report.exc_message) == ("OSError", "[Errno 27] File too large")

    await one("ExportPlugin", run, limits=Limits(file_size_mb=1))
    await one(
        "ExportPlugin",
        lambda host: _expect(host, "export", {"bytes": 2 << 20}, mb=2),
        limits=Limits(file_size_mb=4),
    )


async def _expect(host: PluginHost, name: str, value: Any, **data: Any) -> None:
    assert await call(host, name, **data) == value


# --------------------------------------------------------------------------- layers off
async def test_without_the_layers_nothing_is_refused_in_their_name() -> None:
    """The wording follows the layers in force: with none that refuses the network,
    a connection goes through; with seccomp off, processes run and a connection is
    still refused (network namespace, Landlock) and named."""
    bare = Sandbox(namespaces=False, landlock=False, seccomp=False)
    no_seccomp = Sandbox(seccomp=False)
    async with serving(lambda _: b"pong\n") as port:
        await one(
            "EchoClientPlugin",
            lambda host: _expect(host, "echo-client", {"reply": "pong"}, port=port),
            sandbox=bare,
        )

        async def refused(host: PluginHost) -> None:
            caught = await call(host, "echo-client", port=port, catch=True)
            assert "Sandbox(network=True) allows it" in caught["message"], caught

        await one("EchoClientPlugin", refused, sandbox=no_seccomp)
    await one(
        "ShellPlugin",
        lambda host: _expect(host, "shell", {"stdout": "hello\n"}),
        sandbox=no_seccomp,
    )
    if os.geteuid() == 0:  # the worker is nobody: its file permissions refuse, unnamed
        denied = {
            "error": "PermissionError",
            "message": "[Errno 13] Permission denied: '/etc/plugbox-cache.json'",
        }
        await one(
            "CachePlugin",
            lambda host: _expect(host, "cache", denied, where="etc", catch=True),
            sandbox=bare,
        )


# --------------------------------------------------------------------------- attacker
async def test_a_plugin_going_around_the_wording_is_still_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="plugbox-test-refusals-") as outside:
        os.chmod(outside, 0o777)  # only the sandbox stands in the way
        async with serving(lambda _: b"pong\n") as port, PluginHost(specs.PIPELINE) as host:
            await host.add(BYPASS)
            got = await host.call("process", input_data={"port": port, "outside": f"{outside}/x"})
        assert os.listdir(outside) == []
    assert got.value == {"connect": "socket: EPERM", "fork": "EPERM", "write": "EACCES"}


# --------------------------------------------------------------------------- the report
def test_the_worker_and_the_report_know_the_same_settings() -> None:
    from plugbox.host.failure_reports import refusal
    from plugbox.protocol import Error
    from plugbox.reports import REFUSALS
    from plugbox.worker import refusals

    assert set(refusals.SETTINGS) == set(REFUSALS)
    with pytest.raises(ValueError, match=r"unknown refusal 'Sandbox\.everything'"):
        FailureReport(
            plugin="p",
            version="1",
            hook="h",
            cause="raised",
            detail="",
            refused="Sandbox.everything",  # type: ignore[arg-type]
        )
    forged = Error(id=1, exc_type="E", message="m", details={"refused": "Sandbox.everything"})
    assert refusal(forged) == (None, "")
    long = Error(
        id=1,
        exc_type="E",
        message="m",
        details={"refused": "Sandbox.network", "refusal": "w" * 9000},
    )
    refused, words = refusal(long)
    assert refused == "Sandbox.network" and len(words.encode()) <= 1024


# --------------------------------------------------------------------------- as a user
def test_an_ordinary_users_host_gets_the_same_refusals() -> None:
    done, _, left = run_as_ordinary_user([USER_HOST], prefix="plugbox-test-refusals-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    found: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["uid"] != 0
    assert found["fetch"]["refused"] == "Sandbox.network", found
    assert "Sandbox(network=True) allows it" in found["fetch"]["caught"]
    assert found["shell"]["refused"] == "Sandbox.processes", found
    assert "Sandbox(processes=True) allows them" in found["shell"]["caught"]
    assert found["cache"]["refused"] == "Sandbox.scratch", found
    assert "which Sandbox(scratch=...) sets" in found["cache"]["caught"]
    assert found["many-files"]["refused"] == "Limits.open_files", found
    assert "Limits(open_files=32) allows 32" in found["many-files"]["caught"]
    assert found["export"]["refused"] == "Limits.file_size_mb", found
    assert found["bypass"] == {"connect": "socket: EPERM", "fork": "EPERM", "write": "EACCES"}
    assert found["network_on"] == {"reply": "pong"}
    assert found["processes_on"] == {"stdout": "hello\n"}
