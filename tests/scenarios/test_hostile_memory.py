"""Hostile plugins against ``memory_mb`` and the scratch directory.

``memory_mb`` counts what a worker holds, not its address space: memfds written but
never mapped, every process of the worker (``processes=True``), the private tmpfs of its
scratch directory. The scratch directory has a size (``scratch_mb``) and leaves nothing
on the host's disk, even when the host is killed or the plugin locks its files up. Each
attack runs beside a bystander that must keep answering from its first worker, with the
host as root (workers as nobody) and, where it differs, as an ordinary user in its own
process (workers of its own uid: the host must still read their /proc entries).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import reap, wait_gone
from ordinary_user import as_nobody, import_path

from plugbox import Limits, PluginHost, PluginInfo, Sandbox
from plugbox.errors import PluginMemoryExceeded, PluginRaised
from plugbox.specs import HookSet, HookSpec

PLUGINS = str(Path(__file__).parents[1] / "plugins" / "hostile_memory.py")
#: how the on-disk scratch directories of a host are named: PREFIX<host pid>-<random>
PREFIX = "plugbox-scratch-"
SCRIPT = Path(__file__).parents[1] / "scripts" / "memory_host.py"
SPECS = HookSet(
    "memory",
    [
        HookSpec(name="attack", args=("what", "params"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)
#: how much the host's own RSS may grow while a plugin hoards a gigabyte
HOST_GROWTH_KB = 64 * 1024
#: the RSS an ordinary user's host process (a fresh interpreter) stays under
HOST_RSS_KB = 128 * 1024
#: a deadline no attack reaches when the memory watch works (a stopped plugin waits)
SLOW = 60.0

pytestmark = pytest.mark.anyio


@dataclass
class Arena:
    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo
    first_ping: list[Any]

    async def attack(self, what: str, **params: Any) -> Any:
        return (await self.host.call("attack", what=what, params=params)).value

    async def unharmed(self) -> None:
        """The bystander answers from its first worker; every failure is the attacker's."""
        assert (await self.host.call("ping")).value == self.first_ping
        assert all(r.plugin == "memory-attacker" for r in self.host.reports), self.host.reports


@asynccontextmanager
async def arena(limits: Limits, sandbox: Sandbox | None = None) -> AsyncIterator[Arena]:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(f"{PLUGINS}:Bystander")
        attacker = await host.add(f"{PLUGINS}:MemoryAttacker", limits=limits, sandbox=sandbox)
        yield Arena(host, bystander, attacker, (await host.call("ping")).value)


def host_rss_kb() -> int:
    return int(psutil.Process().memory_info().rss // 1024)


def own_scratch_dirs(pid: int) -> list[str]:
    """The on-disk scratch directories of the host ``pid``."""
    return glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}{pid}-*"))


def processes_in(detail: str) -> int:
    found = re.search(r"in (\d+) process", detail)
    assert found, detail
    return int(found.group(1))


# --- memory the address space does not see -------------------------------------------------


async def test_a_gigabyte_of_unmapped_memfds_is_memory_exceeded() -> None:
    before = host_rss_kb()
    async with arena(Limits(memory_mb=64, call_timeout=SLOW)) as a:
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("memfds", count=16, each_mb=64)  # 1 GB, then it waits
        report = caught.value.report
        assert (report.plugin, report.cause, report.killed) == ("memory-attacker", "memory", True)
        assert "memfds" in report.detail and "went over its cap of 64 MB" in report.detail
        assert "Limits(memory_mb=...)" in report.detail
        held = re.search(r"its memory of (\d+) MB", report.detail)
        assert held and int(held.group(1)) > 64, report.detail
        await a.unharmed()
        assert host_rss_kb() - before < HOST_GROWTH_KB


async def test_memfds_in_a_thread_with_its_own_fd_table_are_counted() -> None:
    # unshare(CLONE_FILES) needs seccomp off (seccomp denies unshare); a raw clone
    # without CLONE_FILES would do the same under it
    async with arena(Limits(memory_mb=64, call_timeout=SLOW), Sandbox(seccomp=False)) as a:
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("thread_memfds", count=16, each_mb=64)
        report = caught.value.report
        assert (report.plugin, report.cause, report.killed) == ("memory-attacker", "memory", True)
        assert "memfds" in report.detail and "went over its cap of 64 MB" in report.detail
        await a.unharmed()


@pytest.mark.parametrize("pid_namespace", [True, False], ids=["pid_namespace", "no_pid_namespace"])
async def test_children_holding_memory_are_counted_together(pid_namespace: bool) -> None:
    # 40 children of 8 MB: each under the address-space cap its fork inherits, not their sum
    before = host_rss_kb()
    sandbox = Sandbox(processes=True, pid_namespace=pid_namespace)
    async with arena(Limits(memory_mb=64, call_timeout=SLOW), sandbox) as a:
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("children", count=40, each_mb=8)
        report = caught.value.report
        assert (report.plugin, report.cause, report.killed) == ("memory-attacker", "memory", True)
        assert "went over its cap of 64 MB" in report.detail
        assert processes_in(report.detail) > 1, report.detail
        await a.unharmed()
        assert host_rss_kb() - before < HOST_GROWTH_KB
    # (the leak check: none of the children outlived the worker)


async def test_memory_a_plugin_does_not_touch_is_not_counted() -> None:
    # the control: the same plugin, holding little, lives on
    async with arena(Limits(memory_mb=64)) as a:
        assert (await a.attack("memfds", count=2, each_mb=4, block=False))["ok"]
        assert await a.attack("pid") == await a.attack("pid")
        await a.unharmed()
        assert a.host.reports == []


# --- the scratch directory ---------------------------------------------------------------------


NO_MOUNT_NAMESPACE = "needs a mount namespace for the worker (unprivileged user namespaces)"


def needs_private_scratch(info: PluginInfo) -> None:
    if not info.layers.get("mount_namespace"):
        pytest.skip(NO_MOUNT_NAMESPACE)
    assert info.layers.get("scratch_tmpfs"), info.layers


async def test_scratch_is_a_private_tmpfs_of_its_size() -> None:
    async with arena(Limits(scratch_mb=16)) as a:
        needs_private_scratch(a.attacker)
        where = await a.attack("where")
        assert where["cwd"] == where["home"] == where["tmpdir"]
        assert where["size_mb"] == 16
        # nothing of this host's scratch is on the disk while its workers live
        assert own_scratch_dirs(os.getpid()) == []


async def test_writes_past_the_scratch_size_fail_with_enospc() -> None:
    before = host_rss_kb()
    async with arena(Limits(scratch_mb=16, memory_mb=256)) as a:
        needs_private_scratch(a.attacker)
        pid = await a.attack("pid")
        with pytest.raises(PluginRaised) as caught:
            await a.attack("fill_scratch", limit_mb=4096)
        report = caught.value.report
        assert (report.plugin, report.exc_type) == ("memory-attacker", "OSError")
        assert (report.exc_message or "").startswith("[Errno 28] No space left on device")
        assert await a.attack("pid") == pid  # the plugin's own error: its worker lives on
        await a.unharmed()
        assert own_scratch_dirs(os.getpid()) == []
        assert host_rss_kb() - before < HOST_GROWTH_KB


async def test_what_is_in_the_scratch_tmpfs_counts_as_memory() -> None:
    async with arena(Limits(scratch_mb=256, memory_mb=64, call_timeout=SLOW)) as a:
        needs_private_scratch(a.attacker)
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("fill_and_block", mb=128)
        report = caught.value.report
        assert (report.plugin, report.cause) == ("memory-attacker", "memory")
        assert "scratch tmpfs" in report.detail and "over its cap of 64 MB" in report.detail
        await a.unharmed()


async def test_a_given_scratch_directory_keeps_its_meaning() -> None:
    # under /tmp, not the 0700 pytest tmp_path, which the user nobody cannot reach
    given = tempfile.mkdtemp(prefix="plugbox-given-")
    try:
        if os.geteuid() == 0:
            shutil.chown(given, "nobody")
        async with arena(Limits(), Sandbox(scratch=given)) as a:
            assert "scratch_tmpfs" not in a.attacker.layers
            assert await a.attack("write_files", count=2) == given
        assert sorted(os.listdir(given)) == ["file-0.txt", "file-1.txt"]
    finally:
        shutil.rmtree(given)


async def test_a_locked_up_scratch_directory_is_still_removed() -> None:
    async with arena(Limits(), Sandbox(namespaces=False)) as a:
        path = await a.attack("lock_up")
        assert path.startswith(os.path.join(tempfile.gettempdir(), PREFIX))
        assert os.path.isdir(path)
    assert not os.path.exists(path)
    assert os.path.isdir("/etc")  # the symlink out was not followed


# --- an ordinary user's host, and a killed host ------------------------------------------------


@pytest.fixture(scope="module")
def nobody_python() -> str:
    """An interpreter user nobody can run with plugbox importable."""
    python, _, _ = as_nobody()
    return python


def host_command(plan: dict[str, Any], python: str | None) -> tuple[list[str], dict[str, Any]]:
    """The command of a memory_host.py host, run as nobody when ``python`` is given
    (the test runs as root), else as this test's user."""
    command = [python or sys.executable, str(SCRIPT), json.dumps(plan)]
    if python is None:
        return command, {}
    if os.geteuid() != 0:
        pytest.skip("running a host as another user needs root")
    env = {"PYTHONPATH": import_path(), "PATH": "/usr/bin:/bin"}
    return command, {
        "env": env,
        "user": "nobody",
        "group": "nogroup",
        "extra_groups": [],
        "cwd": "/",
    }


def run_host(plan: dict[str, Any], python: str | None) -> list[dict[str, Any]]:
    command, kwargs = host_command(plan, python)
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, **kwargs)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(
    ("sandbox", "what", "params"),
    [
        ({}, "memfds", {"count": 16, "each_mb": 64}),
        ({"processes": True}, "children", {"count": 40, "each_mb": 8}),
        ({"processes": True, "pid_namespace": False}, "children", {"count": 40, "each_mb": 8}),
    ],
    ids=["memfds", "children", "children_no_pid_namespace"],
)
def test_an_ordinary_users_host_counts_its_workers_memory(
    nobody_python: str, sandbox: dict[str, Any], what: str, params: dict[str, Any]
) -> None:
    plan = {
        "sandbox": sandbox,
        "limits": {"memory_mb": 64, "call_timeout": SLOW},
        "steps": [[what, params]],
    }
    step, ready, _closed = run_host(plan, nobody_python)
    assert ready["uid"] != 0
    assert (step["outcome"], step["error"]) == ("memory", "PluginMemoryExceeded"), step
    assert "went over its cap of 64 MB" in step["detail"], step
    assert step["bystander_same"] and step["host_rss_kb"] < HOST_RSS_KB


def test_a_plugin_that_hides_from_an_ordinary_users_host_is_stopped(nobody_python: str) -> None:
    # non-dumpable, its /proc entries close to the host's uid: what it holds cannot be
    # counted, so it may not run on
    plan = {
        "limits": {"memory_mb": 64, "call_timeout": SLOW},
        "steps": [["undumpable_memfds", {"count": 16, "each_mb": 64}]],
    }
    step, ready, _closed = run_host(plan, nobody_python)
    assert ready["uid"] != 0
    assert (step["outcome"], step["error"]) == ("memory", "PluginMemoryExceeded"), step
    assert "cannot be counted" in step["detail"], step
    assert step["bystander_same"] and step["host_rss_kb"] < HOST_RSS_KB


def test_an_ordinary_users_host_removes_a_locked_up_scratch(nobody_python: str) -> None:
    plan = {"sandbox": {"namespaces": False}, "steps": [["lock_up", {}]], "then": "close"}
    step, ready, closed = run_host(plan, nobody_python)
    assert ready["uid"] != 0 and closed == {"closed": True}
    path = step["value"]
    assert path.startswith(os.path.join(tempfile.gettempdir(), PREFIX)), step
    assert not os.path.exists(path)


@pytest.fixture
def killed_hosts() -> Iterator[list[int]]:
    """Pids of hosts the test kills; their scratch directories are removed after."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for path in own_scratch_dirs(pid):
            shutil.rmtree(path, ignore_errors=True)


def kill_host(plan: dict[str, Any], python: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a host, let it run ``plan``'s steps, SIGKILL it; (its step, its ready line)
    once it and its workers are gone."""
    command, kwargs = host_command({**plan, "then": "wait"}, python)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = [json.loads(proc.stdout.readline()) for _ in plan["steps"]]
        ready_line = proc.stdout.readline()
        assert ready_line, proc.stderr.read().decode(errors="replace")
        ready = json.loads(ready_line)
        proc.kill()
        proc.wait()
        assert wait_gone(ready["workers"]) == []
    finally:
        reap(proc)
    return lines[-1], ready


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root", "nobody"])
def test_nothing_is_left_on_disk_when_the_host_is_killed(
    as_nobody: bool, request: pytest.FixtureRequest, killed_hosts: list[int]
) -> None:
    python = request.getfixturevalue("nobody_python") if as_nobody else None
    step, ready = kill_host({"steps": [["write_files", {"count": 8}]]}, python)
    killed_hosts.append(ready["host"])
    if not step["layers"].get("mount_namespace"):
        pytest.skip(NO_MOUNT_NAMESPACE)
    where = step["value"]  # the scratch directory the plugin wrote its files in
    assert not where.startswith(tempfile.gettempdir()), where
    assert not os.path.exists(os.path.join(where, "file-0.txt"))
    assert own_scratch_dirs(ready["host"]) == []


def test_a_killed_hosts_scratch_on_disk_is_swept_by_the_next_host(
    killed_hosts: list[int], tmp_path: Path
) -> None:
    # without a mount namespace the scratch directory is on disk: a killed host leaves
    # it, and the next host to start removes it, but never a live host's
    step, ready = kill_host(
        {"sandbox": {"namespaces": False}, "steps": [["lock_up", {}]]}, python=None
    )
    killed_hosts.append(ready["host"])
    left = step["value"]
    assert own_scratch_dirs(ready["host"]) == [left]
    live = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")  # this live process
    # a dead pid here, but locked: a live host in another pid namespace
    held = tempfile.mkdtemp(prefix=f"{PREFIX}{ready['host']}-")
    lock = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        run_host({"steps": [["pid", {}]], "then": "close"}, python=None)
        assert not os.path.exists(left)
        assert os.path.isdir(live) and os.path.isdir(held)
    finally:
        os.close(lock)
        os.rmdir(live)
        os.rmdir(held)
