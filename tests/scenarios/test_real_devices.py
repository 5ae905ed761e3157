"""Devices, subprocesses and multiprocessing, as plugin authors use them, and what a
hostile plugin still cannot do with them.

Authors' side (tests/plugins/real_devices.py): under the default sandbox a plugin writes
to /dev/null and reads and writes /dev/zero; with ``Sandbox(processes=True)`` it runs
commands and the interpreter itself, and uses a multiprocessing pool, a process pool
executor, a lock, a shared value and a queue (their semaphores and shared memory live
in the worker's private /dev/shm). Attacker's side (tests/plugins/real_devices_attacks.py,
beside a bystander that must keep serving): no other device is writable, the host's
/dev/shm is out of reach, the private one is bounded by ``scratch_mb`` and counted as
memory, nothing but the interpreter is newly runnable and only with ``processes=True``,
signals reach the plugin's own processes only, and nothing is left once its worker is
killed. The host runs as root here (workers as nobody) and, in one batched script, as
an ordinary user.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import signal
import stat
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import attempt, in_child, wait_gone
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, PluginInfo, Sandbox
from plugbox.errors import PluginCrashed, PluginMemoryExceeded, PluginRaised
from plugbox.specs import HookSet, HookSpec
from plugbox.worker.sandbox import bpf, landlock
from plugbox.worker.sandbox.layers import WRITABLE_DEVICES as DEVICES
from plugbox.worker.sandbox.seccomp import build_policy
from plugbox.worker.sandbox.seccomp_template import policy_template
from plugbox.worker.sandbox.syscalls import ARCHES

PLUGINS = Path(__file__).parents[1] / "plugins"
AUTHORS = PLUGINS / "real_devices.py"
ATTACKER = f"{PLUGINS / 'real_devices_attacks.py'}:DeviceAttacker"
BYSTANDER = f"{PLUGINS / 'real_devices_attacks.py'}:Bystander"
HOST_SCRIPT = Path(__file__).parents[1] / "scripts" / "real_devices_host.py"
SPECS = HookSet(
    "devices",
    [
        HookSpec(name=name, args=args, mode="first_result")
        for name, args in (
            ("discard", ("text",)),
            ("zeros", ("size",)),
            ("commands", ()),
            ("interpreter", ("expression",)),
            ("pool", ("n",)),
            ("executor", ("n",)),
            ("shared", ("times",)),
            ("attack", ("what", "params")),
            ("ping", ()),
        )
    ],
)
PROCESSES = Sandbox(processes=True)
#: the seccomp tests' BPF interpreter (tests/worker is not on the import path here)
_spec = importlib.util.spec_from_file_location(
    "seccomp_tests", Path(__file__).parents[1] / "worker" / "test_seccomp.py"
)
assert _spec and _spec.loader
seccomp_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seccomp_tests)
#: a deadline no attack reaches when the memory watch works (a stopped plugin waits)
SLOW = 60.0
NO_MOUNT_NAMESPACE = "needs a mount namespace for the worker (unprivileged user namespaces)"

pytestmark = pytest.mark.anyio


async def call(host: PluginHost, hook: str, **args: Any) -> Any:
    return (await host.call(hook, **args)).value


# --- authors' side -----------------------------------------------------------------------------


async def test_a_plugin_writes_to_dev_null_and_dev_zero_under_the_default_sandbox() -> None:
    async with PluginHost(SPECS) as host:
        await host.add(f"{AUTHORS}:Quiet")
        assert await call(host, "discard", text="chatter nobody reads") == 20 * 1001
        assert await call(host, "zeros", size=1 << 16) == {
            "read": 1 << 16,
            "nonzero": 0,
            "written": 1 << 16,
        }
        assert host.reports == []


async def test_commands_run_with_processes() -> None:
    async with PluginHost(SPECS) as host:
        await host.add(f"{AUTHORS}:Workers", sandbox=PROCESSES)
        assert await call(host, "commands") == {"echo": "hello", "shell": 42, "quiet": 0}
        assert host.reports == []


async def test_the_interpreter_runs_with_processes() -> None:
    async with PluginHost(SPECS) as host:
        await host.add(f"{AUTHORS}:Workers", sandbox=PROCESSES)
        assert await call(host, "interpreter", expression="6 * 7") == 42
        assert host.reports == []


async def test_multiprocessing_works_with_processes() -> None:
    async with PluginHost(SPECS) as host:
        info = await host.add(f"{AUTHORS}:Workers", sandbox=PROCESSES)
        if not info.layers.get("mount_namespace"):
            pytest.skip(f"multiprocessing {NO_MOUNT_NAMESPACE} (its /dev/shm)")
        squares = [i * i for i in range(20)]
        assert await call(host, "pool", n=20) == squares
        assert await call(host, "executor", n=20) == squares
        assert await call(host, "shared", times=500) == {
            "total": 1000,
            "children": 2,
            "exit_codes": [0, 0],
        }
        assert host.reports == []


# --- attacker's side ---------------------------------------------------------------------------


@dataclass
class Arena:
    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo
    first_ping: int

    async def attack(self, what: str, **params: Any) -> Any:
        return await call(self.host, "attack", what=what, params=params)

    async def refused(self, what: str, **params: Any) -> PluginRaised:
        """The attack's own error: the plugin raised it and its worker lives on."""
        with pytest.raises(PluginRaised) as caught:
            value = await self.attack(what, **params)
            pytest.fail(f"{what} got through: {value}")
        assert caught.value.report.plugin == "device-attacker"
        assert caught.value.report.pid == self.attacker.pid
        return caught.value

    async def unharmed(self) -> None:
        """The bystander answers from its first worker; every failure is the attacker's."""
        assert await call(self.host, "ping") == self.first_ping
        assert all(r.plugin == "device-attacker" for r in self.host.reports), self.host.reports


@asynccontextmanager
async def arena(
    sandbox: Sandbox | None = PROCESSES, limits: Limits | None = None
) -> AsyncIterator[Arena]:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(BYSTANDER)
        attacker = await host.add(ATTACKER, sandbox=sandbox, limits=limits)
        arena = Arena(host, bystander, attacker, await call(host, "ping"))
        yield arena
        await arena.unharmed()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that any user may enter (the uid must not be what stops
    the plugin there: the sandbox must)."""
    path = Path(tempfile.mkdtemp(prefix="plugbox-devices-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def needs_private_shm(info: PluginInfo) -> None:
    if not info.layers.get("mount_namespace"):
        pytest.skip(NO_MOUNT_NAMESPACE)
    assert info.layers.get("scratch_tmpfs"), info.layers


async def test_no_other_device_is_writable() -> None:
    async with arena() as a:
        if not a.attacker.layers.get("landlock_filesystem"):
            pytest.skip("without Landlock a device's own mode decides")
        seen = await a.attack("other_devices")
        assert "written" not in seen.values(), seen
        assert seen["/dev/urandom"] == seen["/dev/full"] == "EACCES", seen
        needs_private_shm(a.attacker)
        # nor can it make one where it may write: its tmpfs has no devices
        error = await a.refused("mknod", path="/dev/shm/null")
        assert error.report.exc_type == "PermissionError", error.report


async def test_the_hosts_dev_shm_is_out_of_reach() -> None:
    marker = f"plugbox-devices-{uuid.uuid4().hex}"
    async with arena() as a:
        needs_private_shm(a.attacker)
        # /dev/shm is the worker's own: what it writes there is not on the host's
        assert await a.attack("write", path=f"/dev/shm/{marker}") > 0
        assert not os.path.exists(f"/dev/shm/{marker}")
    async with arena(Sandbox(processes=True, namespaces=False)) as a:
        if not a.attacker.layers.get("landlock_filesystem"):
            pytest.skip("without Landlock the host's /dev/shm is as its mode makes it")
        # no namespace of its own: the host's /dev/shm, which stays closed to it
        error = await a.refused("write", path=f"/dev/shm/{marker}")
        assert error.report.exc_type == "PermissionError", error.report
        assert not os.path.exists(f"/dev/shm/{marker}")


async def test_the_private_dev_shm_is_bounded_by_scratch_mb() -> None:
    async with arena(limits=Limits(scratch_mb=8, memory_mb=256)) as a:
        needs_private_shm(a.attacker)
        error = await a.refused("fill", path="/dev/shm/fill", limit_mb=64)
        assert error.report.exc_type == "OSError"
        assert (error.report.exc_message or "").startswith("[Errno 28] No space left on device")


async def test_what_is_in_the_private_dev_shm_counts_as_memory() -> None:
    limits = Limits(scratch_mb=128, memory_mb=32, call_timeout=SLOW)
    async with arena(limits=limits) as a:
        needs_private_shm(a.attacker)
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("fill", path="/dev/shm/blob", limit_mb=60, block=True)
        report = caught.value.report
        assert (report.plugin, report.cause) == ("device-attacker", "memory")
        assert "scratch tmpfs" in report.detail and "over its cap of 32 MB" in report.detail


async def test_a_pools_workers_count_as_its_memory() -> None:
    async with arena(limits=Limits(memory_mb=64, call_timeout=SLOW)) as a:
        with pytest.raises(PluginMemoryExceeded) as caught:
            await a.attack("hoard_pool", mb=48)  # each of two pool workers: under the cap
        report = caught.value.report
        assert (report.plugin, report.cause) == ("device-attacker", "memory")
        assert "in 3 processes" in report.detail, report.detail


async def test_the_interpreter_is_not_runnable_without_processes() -> None:
    async with arena(Sandbox()) as a:
        if not a.attacker.layers.get("seccomp"):
            pytest.skip("without seccomp nothing stops a new process")
        for what, params in (
            ("run", {"argv": [sys.executable, "-c", "print(6 * 7)"]}),
            ("exec_interpreter", {}),
            ("run", {"argv": ["echo", "hello"]}),
        ):
            error = await a.refused(what, **params)
            assert error.report.exc_type == "PermissionError", (what, error.report)


async def test_processes_run_nothing_but_what_was_executable_and_the_interpreter(
    open_dir: Path,
) -> None:
    copy = open_dir / "true"
    shutil.copy("/bin/true", copy)
    copy.chmod(0o755)
    real = os.path.realpath(sys.executable)
    beside = [
        os.path.join(os.path.dirname(real), name)
        for name in sorted(os.listdir(os.path.dirname(real)))
        if name.startswith("pip")
    ]
    async with arena() as a:
        if not a.attacker.layers.get("landlock_filesystem"):
            pytest.skip("without Landlock the files' modes decide what runs")
        assert (await a.attack("run", argv=[sys.executable, "-c", "print(6 * 7)"]))["out"] == "42\n"
        error = await a.refused("run", argv=[str(copy)])
        assert error.report.exc_type == "PermissionError", error.report
        if not real.startswith(("/usr/", "/bin/")):  # an interpreter of its own prefix
            for path in beside:  # what else sits beside it is not runnable
                error = await a.refused("run", argv=[path, "--version"])
                assert error.report.exc_type == "PermissionError", (path, error.report)
            headers = os.path.join(sys.base_prefix, "include")
            for found in sorted(Path(headers).rglob("Python.h"))[:1]:
                error = await a.refused("read", path=str(found))
                assert error.report.exc_type == "PermissionError", error.report


@pytest.mark.parametrize("pid_namespace", [True, False], ids=["pid_namespace", "no_pid_namespace"])
async def test_signals_reach_only_the_plugins_own_processes(pid_namespace: bool) -> None:
    async with arena(Sandbox(processes=True, pid_namespace=pid_namespace)) as a:
        assert a.bystander.pid is not None
        targets = [os.getpid(), a.bystander.pid, -1]
        if pid_namespace:
            targets = [1, -1]  # its namespace's init; nothing else is nameable
        targets.append(await a.attack("parent"))
        for target in targets:
            error = await a.refused("kill", pid=target, sig=int(signal.SIGKILL))
            assert error.report.exc_type in ("PermissionError", "ProcessLookupError"), (
                target,
                error.report,
            )


@pytest.mark.parametrize("pid_namespace", [True, False], ids=["pid_namespace", "no_pid_namespace"])
async def test_nothing_is_left_when_the_worker_is_killed(pid_namespace: bool) -> None:
    marker = f"plugbox-devices-{uuid.uuid4().hex}"
    places = ["/dev/shm", "/tmp", "/var/tmp", tempfile.gettempdir()]
    async with arena(Sandbox(processes=True, pid_namespace=pid_namespace)) as a:
        left = await a.attack("leave_behind", marker=marker)
        assert len(left["pool"]) == 2 and left["made"], left
        assert a.attacker.pid is not None
        tree = [p.pid for p in psutil.Process(a.attacker.pid).children(recursive=True)]
        assert len(tree) >= 2, tree
        os.kill(a.attacker.pid, signal.SIGKILL)
        with pytest.raises(PluginCrashed) as caught:
            await a.attack("ping")  # the kill is reported, and a new worker starts
        assert caught.value.report.signal == "SIGKILL", caught.value.report
        assert wait_gone(tree) == [], "the pool outlived its worker"
        assert await a.attack("ping")
    for place in places:
        assert not os.path.exists(os.path.join(place, marker)), place
    # (the leak check: no process of the worker's is left either)


# --- the layers behind them, in forked children -------------------------------------------------


def test_landlock_lets_the_two_devices_be_written_and_nothing_else() -> None:
    if landlock.abi_version() < 1:
        pytest.skip("this kernel has no Landlock")

    def probe() -> dict[str, str]:
        landlock.restrict(["/dev/null", "/dev/zero", "/dev/urandom"], [], write_files=DEVICES)

        def write(path: str, mode: str = "wb") -> None:
            with open(path, mode) as f:
                f.write(b"x")

        return {
            "write /dev/null": attempt(lambda: write("/dev/null")),
            "append /dev/null": attempt(lambda: write("/dev/null", "ab")),
            "write /dev/zero": attempt(lambda: write("/dev/zero")),
            "read /dev/zero": attempt(lambda: open("/dev/zero", "rb").close()),
            "write /dev/urandom": attempt(lambda: write("/dev/urandom")),
            "create in /dev": attempt(lambda: write("/dev/plugbox-test")),
            "list /dev": attempt(lambda: os.listdir("/dev")),
        }

    assert in_child(probe) == {
        "write /dev/null": "ok",
        "append /dev/null": "ok",
        "write /dev/zero": "ok",
        "read /dev/zero": "ok",
        "write /dev/urandom": "EACCES",
        "create in /dev": "EACCES",
        "list /dev": "EACCES",
    }


def allowed(code: bytes, arch: Any, name: str, *args: int) -> bool:
    """Whether the seccomp program ``code`` lets ``name(*args)`` through."""
    action = seccomp_tests.simulate(code, arch.syscalls[name], args, arch.audit_arch)
    return bool(action == bpf.SECCOMP_RET_ALLOW)


@pytest.mark.parametrize("processes", [False, True])
def test_signals_leave_the_process_only_with_processes_and_never_to_a_group(
    processes: bool,
) -> None:
    me, other = 4242, 4343
    for arch in ARCHES.values():
        options: dict[str, Any] = {"allow_processes": processes, "signal_processes": processes}
        code = build_policy(me, arch=arch, **options)
        assert policy_template(arch=arch, **options).for_pid(me) == code
        for name in ("kill", "tgkill", "rt_sigqueueinfo"):
            assert allowed(code, arch, name, me, 9)
            assert allowed(code, arch, name, other, 9) == processes, (arch.name, name)
            for group in (0, -1, -me, 0xFFFFFFFF, 1 << 32):
                assert not allowed(code, arch, name, group, 9), (arch.name, name, group)
        # the other calls that name a process stay on this one
        assert not allowed(code, arch, "prlimit64", other, 0)


@pytest.fixture
def closed_tree() -> Iterator[Path]:
    """/tmp/<dir>/closed (0700, root's) holding tree/ (an interpreter's directory, open)
    and a secret beside it."""
    top = Path(tempfile.mkdtemp(prefix="plugbox-trees-", dir="/tmp"))
    top.chmod(0o755)
    tree = top / "closed" / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (top / "closed" / "secret.txt").write_text("the host's")
    for path in (tree, tree / "bin"):
        path.chmod(0o755)
    (top / "closed").chmod(0o700)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_a_directory_the_workers_user_cannot_reach_is_mounted_for_it(closed_tree: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root host's workers change user")
    tree = closed_tree / "closed" / "tree"

    def probe() -> dict[str, Any]:
        from plugbox.worker.sandbox import layers, pidns

        fds = sorted(os.listdir("/proc/self/fd"))
        trees = pidns.clone_trees([str(tree), "/usr"])  # /usr: open to all, not cloned
        cloned = [path for path, _fd in trees]
        user = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        before = attempt(lambda: os.listdir(tree))
        if not layers.enter_namespaces(network=True)["user_namespace"] or not pidns.unshare(
            pidns.CLONE_NEWNS
        ):
            pidns.mount_trees(trees, mount=False)
            return {"skip": "no user and mount namespace for nobody"}
        pidns.mount_private_proc(False)
        mounted = pidns.mount_trees(trees)
        return {
            "cloned": cloned,
            "mounted": mounted,
            "before": before,
            "listed": sorted(os.listdir(tree / "bin")),
            "beside": attempt(lambda: open(closed_tree / "closed" / "secret.txt").close()),
            "covered": sorted(os.listdir(closed_tree / "closed")),
            "write in tree": attempt(lambda: open(tree / "new", "w").close()),
            "write beside": attempt(lambda: open(closed_tree / "closed" / "new", "w").close()),
            "fds closed": sorted(os.listdir("/proc/self/fd")) == fds,
        }

    seen = in_child(probe)
    if "skip" in seen:
        pytest.skip(seen["skip"])
    assert seen["cloned"] == seen["mounted"] == [str(tree)]
    assert seen["before"] == "EACCES" and seen["listed"] == ["tool"]
    # the cover holds the way to the tree and nothing else, and takes no writes
    assert (seen["beside"], seen["covered"]) == ("ENOENT", ["tree"])
    assert seen["write in tree"] in ("EROFS", "EACCES") and seen["write beside"] == "EROFS"
    assert seen["fds closed"]  # the clones' fds


# --- an ordinary user's host -------------------------------------------------------------------


def test_an_ordinary_users_host_runs_them_too() -> None:
    marker = f"plugbox-devices-{uuid.uuid4().hex}"
    quiet, workers = f"{AUTHORS}:Quiet", f"{AUTHORS}:Workers"
    plan = [
        {
            "ref": quiet,
            "sandbox": {},
            "calls": [["discard", {"text": "x"}], ["zeros", {"size": 8}]],
        },
        {
            "ref": workers,
            "sandbox": {"processes": True},
            "calls": [
                ["commands", {}],
                ["interpreter", {"expression": "6 * 7"}],
                ["pool", {"n": 4}],
                ["executor", {"n": 4}],
                ["shared", {"times": 10}],
            ],
        },
        {
            "ref": ATTACKER,
            "sandbox": {"processes": True},
            "calls": [["attack", {"what": "write", "params": {"path": f"/dev/shm/{marker}"}}]],
        },
    ]
    done, _tmp, left = run_as_ordinary_user([str(HOST_SCRIPT), json.dumps(plan)], "plugbox-dev-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    results = {(line["ref"], line["hook"]): line for line in lines if "hook" in line}
    layers = next(
        line["layers"] for line in lines if line.get("ref") == workers and "layers" in line
    )

    def value(ref: str, hook: str) -> Any:
        line = results[(ref, hook)]
        assert line["outcome"] == "returned", line
        return line["value"]

    assert value(quiet, "discard") == 1001
    assert value(quiet, "zeros") == {"read": 8, "nonzero": 0, "written": 8}
    assert value(workers, "commands") == {"echo": "hello", "shell": 42, "quiet": 0}
    assert value(workers, "interpreter") == 42
    if layers.get("mount_namespace"):  # a /dev/shm of its own
        assert value(workers, "pool") == value(workers, "executor") == [0, 1, 4, 9]
        assert value(workers, "shared") == {"total": 20, "children": 2, "exit_codes": [0, 0]}
        assert value(ATTACKER, "attack") > 0  # into its own /dev/shm, not the host's
    assert not os.path.exists(f"/dev/shm/{marker}")
    assert left == []  # nothing in the host's TMPDIR
    assert stat.S_ISDIR(os.stat("/dev/shm").st_mode)
