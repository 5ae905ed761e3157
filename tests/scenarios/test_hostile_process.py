"""Hostile plugins against the bounds that hold for the whole worker process.

Each attack is a plugin written to attack (tests/plugins/hostile_process.py), run in a
host beside a healthy bystander that must keep serving from its first worker: CPU
burned in the background between calls (the call's budget would not see it), a thread
bomb and an inotify bomb (quotas the kernel keeps per uid, which the workers of one uid,
and an ordinary user's host, share), a plugin that resets its parent-death signal to
outlive a killed host, one that signals its own process group (its pid namespace's init
and outer process), and the OOM score of an ordinary user's workers. The host's own
memory is held to ``HOST_RSS_GROWTH_MB`` across each attack.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import ordinary_user
import psutil
import pytest
from forking import reap, whoami

from plugbox import Limits, PluginHost, PluginInfo, Sandbox
from plugbox.errors import FAILURE_TYPES, PluginCPUExceeded, PluginRaised
from plugbox.specs import HookSet, HookSpec
from plugbox.worker.sandbox import process as confine

PLUGINS = Path(__file__).parents[1] / "plugins" / "hostile_process.py"
ATTACKER, BYSTANDER = f"{PLUGINS}:ProcessAttacker", f"{PLUGINS}:Bystander"
HOST = Path(__file__).parents[1] / "scripts" / "hostile_process_host.py"
SPECS = HookSet(
    "hostile_process",
    [
        HookSpec(name=name, args=args, mode="first_result")
        for name, args in (
            ("ping", ()),
            ("threads", ("count",)),
            ("inotify", ()),
            ("pid", ()),
            ("spin_between_calls", ("evade",)),
            ("thread_bomb", ("count",)),
            ("tasks", ()),
            ("stop_threads", ()),
            ("inotify_bomb", ("count",)),
            ("raise_inotify_limit", ()),
            ("signal_own_group", ("how",)),
        )
    ],
)
#: how much the test process (the host) may grow across an attack
HOST_RSS_GROWTH_MB = 48
#: how much the host run in its own process may reach in all (its VmHWM)
SCRIPT_HOST_MAXRSS_MB = 160
#: the inotify instances a worker may hold (``quotas.INOTIFY``)
INOTIFY_INSTANCES = 8


def kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split(".")
    return (int(release[0]), int(release[1].split("-")[0])) >= (major, minor)


def needs_user_namespace(layers: dict[str, bool], what: str) -> None:
    """Skip unless the worker has its own user namespace (where the kernel keeps the
    quotas ``what`` needs per namespace)."""
    if not layers.get("user_namespace"):
        pytest.skip(f"{what} needs a user namespace of the worker's own; not in force here")


@dataclass
class Arena:
    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo

    async def call(self, hook: str, **args: Any) -> Any:
        return (await self.host.call(hook, **args)).value

    async def raised(self, hook: str, **args: Any) -> PluginRaised:
        """The attacker's own error for this call: its worker lives on."""
        with pytest.raises(PluginRaised) as caught:
            value = await self.call(hook, **args)
            pytest.fail(f"{hook} got through: {value}")
        report = caught.value.report
        assert (report.plugin, report.cause, report.pid) == (
            "attacker",
            "raised",
            self.attacker.pid,
        )
        assert await self.call("pid") == whoami(self.attacker.pid)
        return caught.value


@asynccontextmanager
async def arena(
    sandbox: Sandbox | None = None, limits: Limits | None = None
) -> AsyncIterator[Arena]:
    """A host with the bystander (added first) and the attacker; on the way out the
    bystander must still answer from its first worker, every report must be the
    attacker's, and the host must not have grown past ``HOST_RSS_GROWTH_MB``."""
    async with PluginHost(SPECS) as host:
        bystander = await host.add(BYSTANDER)
        attacker = await host.add(ATTACKER, sandbox=sandbox, limits=limits)
        rss = psutil.Process().memory_info().rss
        yield Arena(host, bystander, attacker)
        assert bystander.pid is not None
        assert (await host.call("ping")).value == whoami(bystander.pid)
        assert all(r.plugin == "attacker" for r in host.reports), host.reports
        grown = (psutil.Process().memory_info().rss - rss) >> 20
        print(f"figure: the host's RSS grew by {grown} MB")  # (pytest -s shows figures)
        assert grown < HOST_RSS_GROWTH_MB, f"the host grew by {grown} MB"


async def ended(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` ends within ``timeout``: waits on a pidfd, letting the
    host in this process go on (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with anyio.move_on_after(timeout):
            await anyio.wait_readable(fd)
            return True
        return False
    finally:
        os.close(fd)


def died(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` ends within ``timeout`` (waits on a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


pytestmark = pytest.mark.anyio


# --- CPU between calls -----------------------------------------------------------------------
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("evade", [True, False], ids=["evades-sigxcpu", "plain"])
async def test_cpu_burned_between_calls_is_bounded_and_reported(evade: bool) -> None:
    # a background thread spins after its call is answered: with ``evade`` the plugin
    # also ignores SIGXCPU and lifts its own RLIMIT_CPU soft limit, so only the host's
    # watch can stop it; a plain spinner meets the worker's own RLIMIT_CPU first
    limits = Limits(cpu_seconds=1)
    async with arena(limits=limits) as a:
        assert await a.call("spin_between_calls", evade=evade) == {"spinning": True}
        assert a.attacker.pid is not None
        assert await ended(a.attacker.pid), "a worker burning CPU between calls lived on"
        await anyio.wait_all_tasks_blocked()  # the host hears of the end (its channel)
        fresh = await a.call("pid")  # the next call notes the death and starts afresh
        (report,) = a.host.reports
        assert FAILURE_TYPES[report.cause] is PluginCPUExceeded, report.summary()
        assert (report.plugin, report.hook, report.pid) == ("attacker", "(idle)", a.attacker.pid)
        if evade:
            assert report.signal == "SIGKILL" and report.killed, report.summary()
            assert report.detail.startswith("between calls: used "), report.detail
            assert "with no call in flight" in report.detail, report.detail
            assert "over its budget (1 s, refilled at 10% of one CPU)" in report.detail
        else:
            assert report.signal == "SIGXCPU", report.summary()
            assert report.detail.startswith("between calls: used up its CPU budget of 1 s")
        # a bound in CPU seconds: the budget, the slack, and what the share refilled
        # while the spinner ran (a few seconds at most), not the 8 s once seen
        print(f"figure: stopped after {report.cpu_time:.2f} s of CPU: {report.summary()}")
        assert 1.0 <= report.cpu_time < 5.0, report.summary()
        new_pid = next(p.pid for p in a.host.plugins if p.name == "attacker")
        assert new_pid not in (None, a.attacker.pid) and fresh == whoami(new_pid)


def test_the_idle_budget_refills_at_its_share_and_runs_out_past_it() -> None:
    from plugbox.host.usage import CPU_SLACK, IdleCPU

    # the host's account, sample by sample (1 s apart): a plugin's background work at 5%
    # of a CPU (below the 10% share) runs forever; a spinner runs the 1 s budget out
    # once its CPU passes what the share refilled plus the slack
    light, spinner = IdleCPU(1.0, 0.1), IdleCPU(1.0, 0.1)
    assert not light.over(0.0, 0.0, 0, 5) and not spinner.over(0.0, 0.0, 0, 5)
    assert not any(light.over(0.05 * t, float(t), 0, 5) for t in range(1, 10_000))
    over_at = next(t for t in range(1, 100) if spinner.over(float(t), float(t), 0, 5))
    assert over_at == 3  # debt 0.9 s per second: 2.7 > 1 + CPU_SLACK
    assert CPU_SLACK == 1.0
    # a call in flight, or one sent since the last sample, fills the budget again
    busy = IdleCPU(1.0, 0.1)
    for t in range(0, 100, 2):
        assert not busy.over(float(t), float(t), 0, t // 2)  # a call between samples
        assert not busy.over(float(t + 1), float(t + 1), 1, t // 2 + 1)  # one in flight


def test_the_workers_cpu_limit_refills_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    # the worker's RLIMIT_CPU follows the same rule: a call renews the budget in full;
    # between calls it refills at the share, never past a full budget ahead
    clock = {"cpu": 100.0, "now": 1000.0}
    moved: list[int] = []
    monkeypatch.setattr(confine, "cpu_clock", lambda: clock["cpu"])
    monkeypatch.setattr(confine.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(
        confine.resource, "setrlimit", lambda which, limits: moved.append(limits[0])
    )
    state = confine.Confinement(cpu_seconds=1.0, idle_cpu_share=0.1)
    confine.renew_cpu_budget(state)  # a call: the budget runs out at 101 s of CPU
    assert state.cpu_soft == 101 and moved == [101]
    clock.update(cpu=100.5, now=1010.0)  # 10 s idle, 0.5 s of background work
    confine.refill_cpu_budget(state)  # +1 s refilled, at most a full budget ahead
    assert state.cpu_soft == 102 and moved[-1] == 102
    clock.update(cpu=100.6, now=1100.0)  # long idle: still one budget ahead, no more
    confine.refill_cpu_budget(state)
    assert state.cpu_soft == 102 and state.refilled_end == pytest.approx(101.6)


# --- threads -------------------------------------------------------------------------------
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_thread_bomb_stops_at_the_workers_own_cap() -> None:
    # the default cap, 256: a plugin with a thread per CPU for BLAS and an async SDK's
    # pools fits; the attacker shrinks its stacks so memory is not what stops it
    if not kernel_at_least(5, 14):
        pytest.skip("the kernel counts RLIMIT_NPROC per user namespace from Linux 5.14")
    cap = 256
    async with arena() as a, arena() as b:
        needs_user_namespace(a.attacker.layers, "the thread cap")
        assert a.attacker.layers["thread_limit"] and b.attacker.layers["thread_limit"]
        first = await a.raised("thread_bomb", count=500)
        second = await b.raised("thread_bomb", count=500)  # while the first holds its own
        for caught in (first, second):
            report = caught.report
            assert report.exc_type == "RuntimeError", report.summary()
            message = report.exc_message or ""
            assert message.endswith("can't start new thread"), message
            started = int(message.split("#")[1].split(":")[0]) - 1
            # the cap counts the worker's own tasks only: its main thread, and in a pid
            # namespace its init and outer process; the other worker's count for nothing
            print(f"figure: {started} threads started of 500 (cap {cap}, both workers at once)")
            assert cap - 8 <= started < cap, message
        assert await a.call("tasks") <= cap and await b.call("tasks") <= cap
        assert await a.call("threads", count=64) == 64  # the bystander has its own
        assert await a.call("stop_threads") < 8  # and the attacker's quota comes back
        assert await a.call("thread_bomb", count=cap // 2) == {"ok": True, "started": cap // 2}


async def test_the_thread_cap_is_not_claimed_without_a_user_namespace() -> None:
    # without its own user namespace the kernel counts the uid's tasks machine-wide (the
    # host's own, for an ordinary user): no cap is set, and the layer says so
    async with arena(sandbox=Sandbox(namespaces=False)) as a:
        assert a.attacker.layers["thread_limit"] is False
        assert a.attacker.layers.get("inotify_limit") in (None, False)


# --- inotify -------------------------------------------------------------------------------
def inotify_refusal(report: Any) -> int:
    """How many inotify instances the attacker held when the kernel refused one."""
    assert report.exc_type == "OSError", report.summary()
    message = report.exc_message or ""
    assert message.startswith("[Errno 24] inotify instance #"), message  # EMFILE
    return int(message.split("#")[1].split(":")[0]) - 1


@pytest.mark.parametrize("landlock", [True, False], ids=["landlock", "no-landlock"])
async def test_an_inotify_bomb_stops_at_the_workers_own_quota(landlock: bool) -> None:
    # allowed 256 fds, the attacker could hold every inotify instance of user nobody
    # (128 by default), which every worker of a root host shares
    sandbox = Sandbox(landlock=landlock)
    async with arena(sandbox=sandbox, limits=Limits(open_files=256)) as a:
        needs_user_namespace(a.attacker.layers, "the inotify quota")
        assert a.attacker.layers["inotify_limit"] is True
        caught = await a.raised("inotify_bomb", count=200)
        held = inotify_refusal(caught.report)
        print(f"figure: the attacker held {held} inotify instances of the 200 it asked for")
        assert held == INOTIFY_INSTANCES
        assert await a.call("inotify") is True  # the bystander still makes its own
        # nor can it raise its namespace's quota again: Landlock keeps /proc/sys
        # read-only, and without Landlock it has given up CAP_SYS_RESOURCE
        lifted = (await a.raised("raise_inotify_limit")).report
        assert (lifted.exc_type, (lifted.exc_message or "")[:11]) == (
            "PermissionError",
            "[Errno 13] ",
        ), lifted.summary()


# --- a host of its own -----------------------------------------------------------------------
@dataclass
class Runner:
    """How to run a host as an ordinary user: an interpreter with plugbox importable,
    and the subprocess keyword arguments."""

    python: str
    kwargs: dict[str, Any]

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [self.python, *args], capture_output=True, timeout=120, cwd="/", **self.kwargs
        )


@pytest.fixture
def as_nobody() -> Runner:
    """A host run as user nobody (the test runs as root; as an ordinary user, as that
    user), by an interpreter that can import plugbox; skip where there is none."""
    if os.geteuid() != 0:
        return Runner(sys.executable, {"env": dict(os.environ)})
    python, env, kwargs = ordinary_user.as_nobody()
    return Runner(python, {**kwargs, "env": env})


def run_host(runner: Runner, mode: str) -> dict[str, Any]:
    done = runner.run(str(HOST), mode)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    found: dict[str, Any] = json.loads(done.stdout)
    assert "value" in found["bystander"], found  # the bystander kept serving
    assert found["host_maxrss_kb"] < SCRIPT_HOST_MAXRSS_MB << 10, found["host_maxrss_kb"]
    return found


def test_an_ordinary_users_host_keeps_its_own_inotify(as_nobody: Runner) -> None:
    found = run_host(as_nobody, "inotify")
    assert found["uid"] != 0
    needs_user_namespace(found["layers"], "the inotify quota")
    assert found["bomb"]["cause"] == "raised", found["bomb"]
    held = inotify_refusal_of(found["bomb"])
    print(f"figure: {held} inotify instances held; the host's own: {found['host_inotify']}")
    assert held == INOTIFY_INSTANCES
    assert found["host_inotify"] == "ok"  # the host, of the same uid, still has its own
    assert found["bystander_inotify"] == {"value": True}


def inotify_refusal_of(outcome: dict[str, Any]) -> int:
    message = outcome["exc_message"] or ""
    assert outcome["exc_type"] == "OSError" and message.startswith("[Errno 24] inotify"), outcome
    return int(message.split("#")[1].split(":")[0]) - 1


def test_an_ordinary_users_workers_have_their_oom_score_raised(as_nobody: Runner) -> None:
    # the zygote is not dumpable, so neither is a worker it forks, and /proc/self files
    # of a non-dumpable process belong to root: the write once failed for every worker
    # of a host that is not root
    found = run_host(as_nobody, "oom")
    assert found["uid"] != 0
    assert found["layers"]["oom_score_adj"] is True
    print(f"figure: an ordinary user's worker has oom_score_adj {found['worker_adj']}")
    assert found["worker_adj"] == "1000"  # read by the host, from outside the worker
    assert found["host_adj"] == "0"  # the host keeps its own
    # and the doctor's probe worker, started the same way, reports it in force
    done = as_nobody.run("-m", "plugbox", "doctor", "--json")
    layer = json.loads(done.stdout)["layers"]["oom_score_adj"]
    assert layer["kernel"] is True and layer["worker"] is True, (layer, done.stderr)


async def test_a_root_hosts_workers_have_their_oom_score_raised() -> None:
    async with arena() as a:
        assert a.attacker.layers["oom_score_adj"] is True
        with open(f"/proc/{a.attacker.pid}/oom_score_adj") as f:
            assert f.read().strip() == "1000"


@pytest.fixture
def host_to_kill() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Hosts started by the test, reaped, and their workers' scratch directories
    removed, whatever happens (a host killed with SIGKILL cannot remove them)."""
    hosts: list[subprocess.Popen[bytes]] = []
    yield hosts
    for proc in hosts:
        reap(proc)


@pytest.mark.parametrize(
    "sandbox",
    [{"pid_namespace": False}, {"namespaces": False}],
    ids=["no-pid-namespace", "no-namespaces"],
)
def test_a_worker_that_resets_its_death_signal_dies_with_its_killed_host(
    sandbox: dict[str, Any], host_to_kill: list[subprocess.Popen[bytes]]
) -> None:
    # without a pid namespace nothing but its own PR_SET_PDEATHSIG ties the worker to
    # the zygote, which dies with the host: the plugin tries to take it back, and
    # lingers in close() (which the worker calls when its channel ends). The zygote
    # may still kill it if it runs its own shutdown before its death signal lands (it
    # sees the host's end of its socket close first): only the signal is sure
    host = subprocess.Popen(
        [sys.executable, str(HOST), "pdeathsig", json.dumps(sandbox)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ordinary_user.import_path()},  # the plugbox under test
    )
    host_to_kill.append(host)
    assert host.stdout is not None and host.stderr is not None
    line = host.stdout.readline()
    assert line, host.stderr.read().decode(errors="replace")
    found = json.loads(line)
    worker, bystander = found["worker"], found["bystander_pid"]
    scratch = [os.readlink(f"/proc/{pid}/cwd") for pid in (worker, bystander)]
    pidfd = os.pidfd_open(worker)
    try:
        host.kill()
        host.wait()
        gone = died(worker)
        print(f"figure: the worker died with its SIGKILLed host: {gone}; {found['reset']}")
        assert gone, f"worker {worker} outlived its killed host: {found}"
        # seccomp refused the reset; the signal stayed as the worker set it
        assert found["reset"] == {
            "cause": "raised",
            "exc_type": "PermissionError",
            "exc_message": "[Errno 1] prctl(PR_SET_PDEATHSIG, 0): Operation not permitted",
        }, found
        assert found["pdeathsig"] == {"value": signal.SIGKILL}
        assert "value" in found["bystander"], found  # the bystander kept serving
    finally:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # (it failed: leave nothing)
        except ProcessLookupError:
            pass
        os.close(pidfd)
        for path in scratch:
            if path.startswith("/tmp/plugbox-scratch-"):
                shutil.rmtree(path, ignore_errors=True)


# --- its own process group -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["kill0", "killpg0", "wide"])
async def test_signalling_its_own_process_group_is_refused(how: str) -> None:
    # its process group holds its pid namespace's init and outer process; Landlock's
    # signal scope (Linux 6.12+) is off here, so seccomp alone stands in the way
    async with arena(sandbox=Sandbox(landlock=False)) as a:
        assert a.attacker.pid is not None
        if not (a.attacker.layers.get("pid_namespace") and a.attacker.layers.get("seccomp")):
            pytest.skip("needs a pid namespace (its init shares the group) and seccomp")
        init = psutil.Process(a.attacker.pid).parent()
        assert init is not None
        outer = init.parent()
        assert outer is not None
        caught = await a.raised("signal_own_group", how=how)
        assert caught.report.exc_type == "PermissionError", caught.report.summary()
        assert (caught.report.exc_message or "").startswith("[Errno 1]"), caught.report.summary()
        for proc in (init, outer):
            assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE, proc
        print(f"figure: {how} refused ({caught.report.exc_message}); init and outer alive")
        assert a.host.reports[-1].cause == "raised"
