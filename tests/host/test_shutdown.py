"""Shutdown seen from outside: a host process mid-call (tests/scripts/shutdown_host.py),
its workers busy, one of them with a child and a double-forked daemon, another
ignoring SIGTERM and hanging in ``close``, is ended by Ctrl-C (SIGINT to its process
group), SIGTERM, SIGKILL, or the cancellation of the task that owns the host; a
blocking ``SyncPluginHost`` user presses Ctrl-C. Afterwards no worker, zygote or
descendant of theirs may be alive, and the host process ends as Python programs do.

What the host process does on each signal (plugbox installs no signal handler):

- SIGINT: KeyboardInterrupt; ``async with PluginHost`` closes the host on the way out
  (the scenario prints ``closed``), and the program exits by SIGINT, as Python does
  for an uncaught KeyboardInterrupt.
- SIGTERM, SIGKILL: the process dies at once, no Python code runs; the workers die by
  the parent-death signal chain (host -> zygote or worker -> pid namespace init).
- cancelling the host's task: the host closes, the program goes on (here: exits 0).

The pids to watch come from the scenario's ``ready`` line and are checked against
the test's own view of the host's process tree; each is pinned by a pidfd before the
host is signalled, so the wait for their end cannot be fooled by a reused pid. The
wait is bounded by ``DEADLINE``: a failure deadline, not a timing assertion.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import reap

SCENARIO = Path(__file__).parents[1] / "scripts" / "shutdown_host.py"
LAUNCHERS = ["zygote", "subprocess"]
#: how long the host may take to start, or its processes to end, before the test fails
DEADLINE = 30.0
#: what a host process that is told to stop prints before ending (its last lines)
CLOSED = "closed"


@dataclass
class Host:
    """The scenario's process, what it reported when ready, and pidfds of its tree."""

    proc: subprocess.Popen[bytes]
    ready: dict[str, Any] = field(default_factory=dict)
    pidfds: dict[int, int] = field(default_factory=dict)  # pidfd -> pid

    def watched(self) -> list[int]:
        return sorted(self.pidfds.values())

    def survivors(self) -> list[str]:
        """Wait (on the pidfds) until every watched process has ended, or DEADLINE;
        describe those still alive."""
        pending = set(self.pidfds)
        deadline = time.monotonic() + DEADLINE
        while pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select(list(pending), [], [], max(left, 0))
            if not ready:
                break
            pending -= set(ready)
        return [_describe(self.pidfds[fd]) for fd in sorted(pending)]

    def finish(self) -> tuple[list[dict[str, Any]], str]:
        """Wait for the host process to exit: the events it printed after ``ready``, and
        its stderr."""
        try:
            out, err = self.proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the host process did not exit within {DEADLINE} s")
        events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        return events, err.decode(errors="replace")


def _describe(pid: int) -> str:
    try:
        p = psutil.Process(pid)
        return f"{pid} {p.status()} {' '.join(p.cmdline())[:100]}"
    except psutil.Error:
        return f"{pid} (gone while listing)"


def _next_line(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], DEADLINE)[0]:
        pytest.fail(f"the host process printed nothing within {DEADLINE} s")
    return proc.stdout.readline()


@contextmanager
def host_process(*args: str) -> Iterator[Host]:
    """Start the scenario, wait for ``ready``, pin every process to watch; always
    reap the host process and close the pidfds."""
    proc = subprocess.Popen(
        [sys.executable, str(SCENARIO), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    host = Host(proc)
    try:
        line = _next_line(proc)
        if not line:
            proc.wait(DEADLINE)
            assert proc.stderr is not None
            pytest.fail(
                f"the host process ended before it was ready:\n"
                f"{proc.stderr.read().decode(errors='replace')}"
            )
        host.ready = ready = json.loads(line)
        assert ready["event"] == "ready", ready
        # the test's own view of the host's tree agrees with the scenario's report
        tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert tree == set(ready["descendants"]), (tree, ready)
        workers = set(ready["workers"].values())
        assert workers <= tree, ready
        assert ready["child"] in tree and ready["daemon"] is not None, ready
        # the daemon really left its worker's session
        assert os.getsid(ready["daemon"]) != os.getsid(ready["workers"]["forker"]), ready
        for pid in tree | {ready["daemon"]}:
            host.pidfds[os.pidfd_open(pid)] = pid  # each alive: pidfd_open would fail
        yield host
    finally:
        for fd in host.pidfds:
            os.close(fd)
        reap(proc)


def ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the foreground process group (the
    host's; its workers and zygote run in sessions of their own)."""
    os.killpg(proc.pid, signal.SIGINT)


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def assert_only_closing_failures(events: list[dict[str, Any]]) -> None:
    """A call still in flight when the host closed its plugin (the close came before
    the call's task was cancelled: trio delivers Ctrl-C to one task) fails with its
    worker's end: the sleeper's worker killed after its grace, the waiter's exiting
    as asked. Nothing else fails."""
    for e in events:
        if e["event"] == "call_failed":
            expected = {
                "sleeper": "killed when the host closed it",
                "waiter": "exited with status 0",
            }.get(e["plugin"])
            assert expected is not None and e["cause"] == "crashed", e
            assert expected in e["detail"], e
            assert e["detail"].startswith("the host closed the plugin during the call"), e


# ---------------------------------------------------------------------- async host
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ctrl_c_closes_the_host_and_leaves_nothing_alive(launcher: str, backend: str) -> None:
    with host_process("async", launcher, backend) as host:
        ctrl_c(host.proc)
        events, stderr = host.finish()
        assert host.proc.returncode == -signal.SIGINT, stderr
        assert names(events)[-1:] == [CLOSED], (events, stderr)
        assert_only_closing_failures(events)
        assert stderr.rstrip().splitlines()[-1] == "KeyboardInterrupt", stderr
        assert host.survivors() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_host_killed_by_a_signal_leaves_nothing_alive(launcher: str, sig: signal.Signals) -> None:
    with host_process("async", launcher, "asyncio") as host:
        host.proc.send_signal(sig)
        events, stderr = host.finish()
        assert host.proc.returncode == -sig, stderr
        assert events == [] and stderr == "", (events, stderr)  # no Python code ran
        assert host.survivors() == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_cancelling_the_hosts_task_mid_call_leaves_nothing_alive(
    launcher: str, backend: str
) -> None:
    with host_process("async", launcher, backend) as host:
        host.proc.send_signal(signal.SIGUSR1)  # the scenario cancels its host task
        events, stderr = host.finish()
        assert host.proc.returncode == 0, stderr
        assert names(events)[0] == "cancelling" and names(events)[-1] == CLOSED, events
        assert_only_closing_failures(events)
        assert "Traceback" not in stderr, stderr
        assert host.survivors() == []


# ---------------------------------------------------------------------- blocking facade
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ctrl_c_in_a_blocking_call_exits_cleanly(launcher: str) -> None:
    with host_process("sync", launcher) as host:
        ctrl_c(host.proc)  # the main thread is blocked in host.call(...)
        events, stderr = host.finish()
        assert host.proc.returncode == -signal.SIGINT, stderr
        assert events == [], events
        # one traceback, the main thread's, ending in KeyboardInterrupt; no noise from
        # the host's thread (an exception in it, an unretrieved task error...)
        lines = stderr.rstrip().splitlines()
        assert stderr.count("Traceback (most recent call last)") == 1, stderr
        start = lines.index("Traceback (most recent call last):")
        assert lines[-1] == "KeyboardInterrupt", stderr
        assert 'host.call("process", input_data={"to": "sleeper"})' in stderr, stderr
        for noise in (
            "Exception in thread",
            "Exception ignored",
            "never retrieved",
            "Error",
            "Warning",
        ):
            assert noise not in stderr, stderr
        # before it, at most the host's report of the call the close cut short
        for line in lines[:start]:
            assert (
                line.startswith("plugin 'sleeper' ") and "killed when the host closed it" in line
            ), stderr
        assert host.survivors() == []


def test_host_tasks_are_shielded_from_keyboard_interrupt_on_trio() -> None:
    # trio raises KeyboardInterrupt in whatever code runs when SIGINT arrives unless it
    # is protected; the host's readers and reapers are, so Ctrl-C reaches the
    # application's tasks and the host can still close its workers. (trio only:
    # asyncio turns SIGINT into cancelling the main task, whatever runs.)
    import anyio
    from trio.lowlevel import currently_ki_protected

    from plugbox.host.tasks import HostTasks

    seen: dict[str, bool] = {}

    async def host_task() -> None:
        seen["host task"] = currently_ki_protected()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            HostTasks(tg).start_soon(host_task)
            seen["application"] = currently_ki_protected()

    anyio.run(main, backend="trio")
    assert seen == {"application": False, "host task": True}
