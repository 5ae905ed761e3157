"""The host on uvloop: a call, a crash and its restart, a timeout, a standby's resume,
and a reply still unread when its worker's end is heard, with the causes asserted.

The rest of the suite runs on asyncio and trio; uvloop is asyncio's loop API on other
transports (libuv's), and the host's channel reads and writes through whatever
transport the running loop makes, and reads a dead worker's last bytes from the socket
itself (``Channel.unread``). These tests run on uvloop, which the test extra installs,
and first check that the loop running them is uvloop's.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio
import pytest
from forking import whoami

from plugbox import Limits, PluginHost, specs
from plugbox.errors import PluginCrashed, PluginFailure, PluginTimeout

pytestmark = pytest.mark.anyio

TIGHT = Limits(memory_mb=64, cpu_seconds=1, call_timeout=5.0, backoff_initial=0.0)
#: how long a death may go unreported before the test calls it a hang
HANG_GUARD = 30.0


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture(scope="module", autouse=True)
def uvloop_pipe_made_before_the_leak_check() -> None:
    """uvloop opens a pipe on its first loop in a process and keeps it for the life of
    the process (not plugbox's fds: a bare ``anyio.run`` on uvloop does it too). Made
    here, before the leak check first lists the fds, so it is not counted as a leak."""
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


def assert_on_uvloop() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("uvloop"), f"not uvloop: {type(loop)!r}"


async def test_calls_and_in_place_changes_cross_on_uvloop(behave: str) -> None:
    assert_on_uvloop()
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        outs = []

        async def one(i: int) -> None:
            outs.append((await host.call("process", input_data={"do": "echo", "i": i})).value)

        async with anyio.create_task_group() as tg:
            for i in range(64):  # many in flight on one worker
                tg.start_soon(one, i)
        assert sorted(out["i"] for out in outs) == list(range(64))


async def test_a_crash_is_reported_and_the_next_call_restarts_on_uvloop(behave: str) -> None:
    assert_on_uvloop()
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        with pytest.raises(PluginCrashed) as crashed:
            await host.call("process", input_data={"do": "exit"})
        report = crashed.value.report
        assert (report.cause, report.exit_code, report.signal) == ("crashed", 3, None)
        assert report.detail == "exited with status 3"
        seen = (await host.call("process", input_data={"do": "whoami"})).value
        pid = host.plugins[0].pid
        assert pid is not None and pid != info.pid and seen == whoami(pid)
        # a second crash resumes the standby the first restart left behind
        with pytest.raises(PluginCrashed):
            await host.call("process", input_data={"do": "exit"})
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}
        assert host.plugins[0].restarts == 2


async def test_a_hung_call_is_a_timeout_and_its_worker_is_killed_on_uvloop(behave: str) -> None:
    assert_on_uvloop()
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=Limits(call_timeout=0.5, backoff_initial=0))
        with pytest.raises(PluginTimeout) as timed_out:
            await host.call("process", input_data={"do": "sleep"})
        report = timed_out.value.report
        assert report.cause == "timeout" and report.killed and report.signal == "SIGKILL"
        with pytest.raises(ProcessLookupError):
            os.kill(info.pid, 0)


async def test_a_reply_still_unread_when_the_worker_ends_answers_its_call_on_uvloop() -> None:
    # as tests/protocol/test_exit_report.py's test of the same name: uvloop's transport is paused
    # so the reply is still in the socket when the worker's end is heard
    assert_on_uvloop()
    plugin = str(Path(__file__).parents[1] / "plugins" / "reply_then_exit.py")
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin, limits=Limits(backoff_initial=0))
        worker = host._plugins[0].worker
        assert worker is not None and worker.channel.transport is not None
        worker.channel.transport.pause_reading()
        with anyio.fail_after(HANG_GUARD):
            out = await host.call("process", input_data=5)
        assert out.value == {"answered": 5}
        assert not worker.alive
        assert (await host.call("process", input_data=6)).value == {"answered": 6}
    assert {(r.cause, r.hook, r.exit_code) for r in host.reports} == {("crashed", "(idle)", 0)}


async def test_a_failure_names_the_plugin_on_uvloop(behave: str) -> None:
    assert_on_uvloop()
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        with pytest.raises(PluginFailure) as failed:
            await host.call("process", input_data={"do": "raise", "arg": 7})
        assert failed.value.report.plugin == "behave"
        assert failed.value.report.cause == "raised"
        assert "bad input: 7" in failed.value.report.detail
