"""A host's life from outside: an ordinary user's host, a host that is killed, a
zygote that dies, cancelled calls, and the fresh-interpreter launcher."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from forking import reap, wait_gone, whoami
from ordinary_user import as_nobody

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginCrashed, PluginFailure, PluginTimeout

pytestmark = pytest.mark.anyio

SCENARIO = Path(__file__).parents[1] / "scripts" / "host_scenario.py"


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
def test_an_ordinary_users_host(behave: str, launcher: str) -> None:
    if os.geteuid() != 0:
        python, env = sys.executable, dict(os.environ)
        kwargs: dict[str, Any] = {}
    else:  # a root test run shows an ordinary user's host by becoming nobody
        python, env, kwargs = as_nobody()
    done = subprocess.run(
        [python, str(SCENARIO), "report", behave, launcher],
        env=env,
        capture_output=True,
        timeout=120,
        **kwargs,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    found = json.loads(done.stdout)
    assert found["host_uid"] != 0
    assert found["worker_uid"] == found["host_uid"]  # nothing to drop, nothing gained
    assert found["layers"]["unprivileged"] is True
    assert found["layers"]["rlimits"] and found["layers"]["parent_death_signal"]
    assert found["crash"] == {"cause": "crashed", "signal": "SIGSEGV"}
    assert found["restarted"] is True


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
def test_workers_die_with_a_killed_host(behave: str, launcher: str) -> None:
    host = subprocess.Popen(
        [sys.executable, str(SCENARIO), "serve", behave, launcher],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        assert line, host.stderr.read().decode(errors="replace") if host.stderr else ""
        pids = json.loads(line)
        watched = [pids["worker"]] + ([pids["zygote"]] if pids["zygote"] else [])
        host.kill()
        host.wait()
        assert wait_gone(watched) == []
    finally:
        reap(host)


async def test_a_dead_zygote_is_replaced_and_its_workers_reported(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave)
        launcher: Any = host._launcher
        zygote = launcher.pid
        os.kill(zygote, signal.SIGKILL)
        worker = host._plugins[0].worker
        assert worker is not None
        await worker.wait_verdict()  # the worker died with its zygote
        out = await host.call("process", input_data={"do": "whoami"})
        fresh = host.plugins[0].pid
        assert fresh not in (None, info.pid) and out.value == whoami(fresh)
        assert launcher.pid not in (None, zygote)
        (report,) = host.reports
        assert report.hook == "(idle)" and report.cause == "crashed"


async def test_a_cancelled_call_cancels_the_hook_and_the_worker_serves_on(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(f"{behave}:AsyncBehave")
        with anyio.move_on_after(0.2) as scope:
            await host.call("process", input_data={"do": "wait_forever"})
        assert scope.cancelled_caught
        out = await host.call("process", input_data={"do": "cancelled_count"})
        assert out.value == 1  # the plugin's task saw CancelledError
        assert host.plugins[0].pid == info.pid and host.reports == []


async def test_cancelling_the_host_task_mid_call_leaves_nothing_behind(behave: str) -> None:
    async with anyio.create_task_group() as tg:

        async def run_host() -> None:
            async with PluginHost(specs.PIPELINE) as host:
                await host.add(behave, limits=Limits(call_timeout=3600))
                await host.add(f"{behave}:AsyncBehave")
                tg.start_soon(partial(host.call, "process", input_data={"do": "sleep"}))
                ready.set()
                await host.call("process", input_data={"do": "sleep"})

        ready = anyio.Event()
        tg.start_soon(run_host)
        await ready.wait()
        tg.cancel_scope.cancel()
    # the leak check (conftest) proves no worker, zygote or fd survived


async def test_a_big_hosts_peak_rss_is_not_charged_to_its_subprocess_worker(behave: str) -> None:
    # an exec'd child inherits, in its ru_maxrss, the high-water mark of the memory it
    # left at exec: its parent's. Once this showed a segfault of a worker of a big host
    # as "memory" (its peak "at its cap"); the launcher now ignores a peak it cannot tell
    # from the host's, and the report falls back on what the usage watch saw
    limits = Limits(memory_mb=64)
    ballast = b"\x01" * ((limits.memory_mb + 64) << 20)  # touched: counted in RSS
    del ballast
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > (limits.memory_mb + 64) << 10
    async with PluginHost(specs.PIPELINE, launcher="subprocess") as host:
        await host.add(behave, limits=limits)
        with pytest.raises(PluginCrashed) as info:
            await host.call("process", input_data={"do": "segfault"})
        report = info.value.report
        assert (report.cause, report.signal) == ("crashed", "SIGSEGV"), report.summary()
        assert 0 <= report.peak_rss_kb < limits.memory_mb << 10


@pytest.mark.parametrize(
    ("do", "cls", "cause"),
    [
        ("segfault", PluginCrashed, "crashed"),
        ("sleep", PluginTimeout, "timeout"),
    ],
)
async def test_subprocess_launcher_reports_the_same_causes(
    behave: str, do: str, cls: type[PluginFailure], cause: str
) -> None:
    async with PluginHost(specs.PIPELINE, launcher="subprocess") as host:
        await host.add(behave, limits=Limits(call_timeout=0.5))
        with pytest.raises(cls) as info:
            await host.call("process", input_data={"do": do})
        assert info.value.report.cause == cause
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
async def test_descendants_of_a_killed_worker_are_killed(behave: str, launcher: str) -> None:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(behave, limits=Limits(call_timeout=0.5), sandbox=Sandbox(processes=True))
        (info,) = host.plugins
        await host.call("process", input_data={"do": "fork_child_sleep"})
        assert info.pid is not None
        children = [p.pid for p in psutil.Process(info.pid).children()]
        assert len(children) == 1
        with pytest.raises(PluginTimeout):
            await host.call("process", input_data={"do": "sleep"})
        assert wait_gone(children) == []


@pytest.mark.linux
@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_usage_reads_what_proc_says_of_a_live_process_and_none_once_it_is_gone() -> None:
    """The RSS and CPU time the memory and CPU watch samples are psutil's own
    figures for the process; a reaped process has none."""
    from plugbox.host import _linux

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sum(range(10**6)); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        proc = psutil.Process(child.pid)
        while proc.status() != psutil.STATUS_SLEEPING:  # blocked reading: nothing changes
            pass
        sample = _linux.usage(child.pid)
        times = proc.cpu_times()
        assert sample is not None and sample[1] == pytest.approx(times.user + times.system)
        # /proc/<pid>/stat's RSS is the kernel's per-CPU estimate, psutil reads statm's
        # exact sum: a few pages apart at most, where a wrong unit would be 4x
        assert abs(sample[0] - proc.memory_info().rss // 1024) <= sample[0] // 50
        assert _linux.cpu_time(child.pid) == pytest.approx(times.user + times.system)
    finally:
        child.communicate(b"")
    assert _linux.usage(child.pid) is None
    assert _linux.cpu_time(child.pid) == 0.0
