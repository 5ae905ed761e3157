"""Every way a plugin can fail, with the exact cause and report fields asserted.

Each test runs a real worker (zygote launcher) on asyncio and trio; the autouse leak
check in conftest.py then verifies no process, zombie or fd was left behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from forking import whoami

from plugbox import Limits, PluginHost, specs
from plugbox.errors import (
    FAILURE_TYPES,
    PluginCPUExceeded,
    PluginCrashed,
    PluginFailure,
    PluginMemoryExceeded,
    PluginProtocolError,
    PluginQuarantined,
    PluginRaised,
    PluginTimeout,
)
from plugbox.reports import CAUSES, Cause, FailureReport
from plugbox.testing import faults

pytestmark = pytest.mark.anyio

TIGHT = Limits(memory_mb=64, cpu_seconds=1, call_timeout=5.0, backoff_initial=0.0)


async def fail(host: PluginHost, do: str, arg: Any = None) -> PluginFailure:
    with pytest.raises(PluginFailure) as info:
        await host.call("process", input_data={"do": do, "arg": arg})
    return info.value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_cause_has_a_meaning_and_an_exception_class() -> None:
    causes = set(get_args(Cause))
    assert set(CAUSES) == causes and set(FAILURE_TYPES) == causes
    for cause, cls in FAILURE_TYPES.items():
        assert issubclass(cls, PluginFailure) and cls.cause == cause
    with pytest.raises(ValueError, match="unknown failure cause 'exploded'"):
        FailureReport(plugin="p", version="1", hook="h", cause="exploded", detail="")  # type: ignore[arg-type]


async def test_raised_exception_is_reported_and_the_worker_lives_on(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        exc = await fail(host, "raise", "widget")
        assert isinstance(exc, PluginRaised)
        r = exc.report
        assert (r.plugin, r.version, r.hook, r.cause) == ("behave", "2.1.0", "process", "raised")
        assert r.exc_type == "ValueError" and r.exc_message == "bad input: widget"
        assert "raise ValueError" in (r.traceback or "") and "behave.py" in (r.traceback or "")
        assert r.pid == info.pid and r.exit_code is None and r.signal is None
        assert not r.killed
        out = await host.call("process", input_data={"do": "whoami"})
        assert info.pid is not None and out.value == whoami(info.pid)  # same worker
        assert host.reports == [r]


async def test_unserializable_return_is_an_error_reply(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        exc = await fail(host, "unserializable")
        assert isinstance(exc, PluginRaised)
        assert exc.report.exc_type == "TypeError"
        assert "hook 'process' returned a value of type object" in (exc.report.exc_message or "")
        assert info.pid is not None
        assert (await host.call("process", input_data={"do": "whoami"})).value == whoami(info.pid)


async def test_memory_bomb_is_memory_exceeded(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "bomb")
        assert isinstance(exc, PluginMemoryExceeded)
        assert exc.report.cause == "memory" and "MemoryError" in exc.report.detail
        assert exc.report.peak_rss_kb > 40 * 1024  # it really grew to the cap
        assert exc.report.killed
        # the next call is answered by a fresh worker
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}


async def test_memory_error_caught_then_exit_is_still_memory(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "bomb_caught_exit")
        assert isinstance(exc, PluginMemoryExceeded)
        assert exc.report.exit_code == 5
        assert "peak RSS" in exc.report.detail


async def test_memory_error_caught_then_other_exception_is_memory(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "bomb_caught_raise")
        assert isinstance(exc, PluginMemoryExceeded)
        assert exc.report.exc_type == "RuntimeError"


async def test_an_error_raised_with_the_address_space_full_is_still_answered(behave: str) -> None:
    """The worker holds some address space back (its reserve) for a plugin that leaves
    none: released, it builds the Error reply, so the report names what the plugin
    raised. Without it the worker could send nothing and would only exit."""
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "exhaust_then_raise")
        assert isinstance(exc, PluginMemoryExceeded)
        assert exc.report.cause == "memory"
        # raising RuntimeError itself needed memory: a MemoryError is what was raised
        assert exc.report.exc_type in ("RuntimeError", "MemoryError"), exc.report
        assert exc.report.exit_code is None  # killed by the host, not exited
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}


async def test_single_huge_allocation_is_memory(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "huge_alloc")
        assert isinstance(exc, PluginMemoryExceeded)
        assert "MemoryError" in exc.report.detail


async def test_cpu_spin_is_cpu_exceeded_by_sigxcpu(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "spin")
        assert isinstance(exc, PluginCPUExceeded)
        assert exc.report.signal == "SIGXCPU"
        assert exc.report.cpu_time >= 1.0
        assert not exc.report.killed  # the kernel ended it, not the host


async def test_sleep_past_the_deadline_is_a_timeout(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=Limits(call_timeout=0.5, backoff_initial=0))
        exc = await fail(host, "sleep")
        assert isinstance(exc, PluginTimeout)
        assert exc.report.cause == "timeout" and exc.report.killed
        assert exc.report.signal == "SIGKILL" and exc.report.duration >= 0.5
        assert "did not answer within 0.5 s" in exc.report.detail
        assert not pid_alive(info.pid)


@pytest.mark.parametrize(
    ("do", "sig"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT"), ("kill_self", "SIGTERM")]
)
async def test_death_by_signal_names_the_signal(behave: str, do: str, sig: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, do)
        assert isinstance(exc, PluginCrashed)
        assert exc.report.signal == sig and exc.report.exit_code is None
        assert f"killed by {sig}" in exc.report.detail
        assert not exc.report.killed


async def test_segfault_report_carries_the_fatal_error_from_stderr(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "segfault")
        assert any("Segmentation fault" in line for line in exc.report.stderr_tail)


@pytest.mark.parametrize(("do", "code"), [("exit", 3), ("sys_exit", 4)])
async def test_exit_code_is_reported(behave: str, do: str, code: int) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, do)
        assert isinstance(exc, PluginCrashed)
        assert exc.report.exit_code == code and exc.report.signal is None
        assert exc.report.detail == f"exited with status {code}"


async def test_stderr_tail_is_in_the_report(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT)
        exc = await fail(host, "stderr_then_exit", "last words before exiting")
        assert exc.report.exit_code == 9
        assert exc.report.stderr_tail[-1] == "last words before exiting"


@pytest.mark.parametrize(
    ("do", "words"),
    [
        ("garbage", "undecodable frame"),
        ("oversize", "exceeds the"),
        ("unknown_id", "call id 999, which is not in flight"),
        ("close_channel", "the worker closed its channel"),
        ("close_channel_and_return", "the worker closed its channel and exited"),
    ],
)
async def test_protocol_violations_kill_the_worker(behave: str, do: str, words: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        exc = await fail(host, do)
        assert isinstance(exc, PluginProtocolError)
        assert words in exc.report.detail
        if do != "close_channel_and_return":  # that one exits by itself
            assert exc.report.killed and exc.report.signal == "SIGKILL"
        assert not pid_alive(info.pid)


async def test_a_plugin_that_exits_after_answering_has_one_cause_however_its_end_is_read() -> None:
    # its EOF and its exit status arrive together; which the host reads first once
    # decided between "protocol: closed its channel" and "crashed" (about 4 to 1)
    plugin = str(Path(__file__).parents[1] / "plugins" / "reply_then_exit.py")
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin, limits=Limits(backoff_initial=0, max_failures=1000))
        answered, causes = 0, set()
        for i in range(40):
            try:
                out = await host.call("process", input_data=i)
            except PluginCrashed as exc:  # the call sent to it after its last answer
                causes.add((exc.report.cause, exc.report.detail, exc.report.exit_code))
                # and not one it answered: that reply was in the channel, unread, when
                # the exit status came (its stderr, here in the report, would say so)
                assert f"answered {i}" not in exc.report.stderr_tail
                continue
            assert out.value == {"answered": i}
            answered += 1
    assert answered >= 10
    assert causes == {("crashed", "exited with status 0", 0)}


async def test_restart_after_a_crash_gets_a_fresh_worker(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        first = await fail(host, "exit")
        assert first.report.restarts == 0
        seen = (await host.call("process", input_data={"do": "whoami"})).value  # restarts it
        pid2 = host.plugins[0].pid
        assert pid2 is not None and pid2 != info.pid and seen == whoami(pid2)
        second = await fail(host, "exit")
        assert second.report.restarts == 1 and second.report.pid == pid2
        assert host.plugins[0].restarts == 1


async def test_backoff_doubles_with_failures_in_a_row(behave: str) -> None:
    limits = Limits(backoff_initial=0.01, backoff_max=0.03, max_failures=10)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=limits)
        backoffs = [(await fail(host, "exit")).report.backoff for _ in range(4)]
        assert backoffs == [0.01, 0.02, 0.03, 0.03]
        await host.call("process", input_data={"do": "echo"})  # a success resets it
        assert (await fail(host, "exit")).report.backoff == 0.01


async def test_too_many_failures_quarantine_until_reset(behave: str) -> None:
    limits = Limits(max_failures=3, failure_window=60, backoff_initial=0)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=limits)
        for _ in range(3):
            assert isinstance(await fail(host, "exit"), PluginCrashed)
        exc = await fail(host, "echo")
        assert isinstance(exc, PluginQuarantined)
        assert "quarantined after 3 failures" in exc.report.detail
        assert host.plugins[0].state == "quarantined"
        assert [r.cause for r in host.reports] == ["crashed", "crashed", "crashed", "quarantined"]
        host.reset("behave")
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}


async def test_raised_exceptions_do_not_quarantine(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=Limits(max_failures=2))
        for _ in range(4):
            assert isinstance(await fail(host, "raise"), PluginRaised)
        assert host.plugins[0].state == "running"


async def test_skip_policy_records_the_failure_and_the_chain_goes_on(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT, on_failure="skip", config={"name": "crashy"})
        await host.add(behave, limits=TIGHT, config={"name": "healthy"})
        crashy = next(p for p in host._plugins if p.name == "crashy")
        crashy.options.limits = Limits(call_timeout=0.3)
        out = await host.call("process", input_data={"do": "echo"})
        assert out.called == ["crashy", "healthy"] and not out.failures
        # both plugins run "sleep": the first times out and is skipped; the second
        # (policy raise) also times out and raises
        with pytest.raises(PluginTimeout) as info:
            await host.call("process", input_data={"do": "sleep"})
        assert info.value.report.plugin == "healthy"
        assert [r.plugin for r in host.reports] == ["crashy", "healthy"]


async def test_skip_failure_lands_in_outcome_failures(behave: str) -> None:
    async with PluginHost(specs.PIPELINE, on_failure="skip") as host:
        await host.add(behave, limits=TIGHT, config={"name": "a"})
        await host.add(f"{behave}:AsyncBehave", limits=TIGHT)
        out = await host.call("process", input_data={"do": "exit", "value": 7})
        (report,) = out.failures
        assert report.plugin == "a" and report.cause == "crashed" and report.exit_code == 3
        assert out.called == ["async-behave"] and out.value == 7


async def test_a_healthy_plugin_keeps_answering_while_a_sibling_crashes(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=TIGHT, config={"name": "crashy"})
        await host.add(f"{behave}:AsyncBehave", limits=TIGHT)
        crashy = next(p for p in host._plugins if p.name == "crashy")
        healthy = next(p for p in host._plugins if p.name == "async-behave")
        answers: list[Any] = []

        async def healthy_calls() -> None:
            for i in range(20):
                value, _ = await healthy.invoke("process", {"input_data": {"value": i}})
                answers.append(value)

        async def crashes() -> None:
            for do in ("segfault", "exit", "bomb", "raise"):
                with pytest.raises(PluginFailure):
                    await crashy.invoke("process", {"input_data": {"do": do}})

        async with anyio.create_task_group() as tg:
            tg.start_soon(healthy_calls)
            tg.start_soon(crashes)
        assert answers == list(range(20))
        assert [r.cause for r in host.reports] == ["crashed", "crashed", "memory", "raised"]


async def test_idle_death_is_reported_once_at_the_next_call(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=TIGHT)
        assert info.pid is not None
        os.kill(info.pid, signal.SIGKILL)
        worker = host._plugins[0].worker
        assert worker is not None
        await worker.wait_verdict()  # the host has noticed the death by itself
        out = await host.call("process", input_data={"do": "whoami"})
        fresh = host.plugins[0].pid
        assert fresh not in (None, info.pid) and out.value == whoami(fresh)
        (report,) = host.reports
        assert report.hook == "(idle)" and report.signal == "SIGKILL"
        assert report.cause == "crashed"


async def test_rss_over_the_cap_is_memory_exceeded_without_an_address_space_cap(
    behave: str,
) -> None:
    limits = Limits(memory_mb=48, address_space_cap=False, rss_check_interval=0.05, call_timeout=60)
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave, limits=limits)
        assert info.layers["rlimits"]
        exc = await fail(host, "grow_rss", 200)  # 200 MB, then it sleeps
        assert isinstance(exc, PluginMemoryExceeded)
        assert "went over its cap of 48 MB" in exc.report.detail
        assert exc.report.killed and exc.report.signal == "SIGKILL"
        assert exc.report.peak_rss_kb > 48 * 1024


async def test_one_death_with_many_calls_in_flight_counts_once(behave: str) -> None:
    limits = Limits(max_failures=3, backoff_initial=0)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{behave}:AsyncBehave", limits=limits)
        plugin = host._plugins[0]
        failures: list[PluginFailure] = []

        async def waiting_call() -> None:
            try:
                await plugin.invoke("process", {"input_data": {"do": "wait_forever"}})
            except PluginFailure as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiting_call)
            await anyio.wait_all_tasks_blocked()
            worker = plugin.worker
            assert worker is not None
            os.kill(worker.pid, signal.SIGKILL)
        assert len(failures) == 5
        assert {f.report.signal for f in failures} == {"SIGKILL"}
        assert len(host.reports) == 5 and plugin.failures_in_row == 1
        assert host.plugins[0].state != "quarantined"


async def test_a_spin_that_ignores_sigxcpu_is_still_cpu_exceeded(behave: str) -> None:
    limits = Limits(cpu_seconds=1, call_timeout=60, rss_check_interval=0.1)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=limits)
        exc = await fail(host, "spin_ignoring_sigxcpu")
        assert isinstance(exc, PluginCPUExceeded)
        assert "ignored SIGXCPU" in exc.report.detail and exc.report.killed
        assert exc.report.cpu_time > 2.0


async def test_refused_oversize_results_do_not_pile_up_in_the_worker() -> None:
    # each refused result used to stay alive in a reference cycle (the encoding error's
    # traceback held the reply's frame, and that frame the value) until a collection
    # happened to run: under memory_mb the fifth or so ran the worker out of memory
    fault = faults.FAULTS["oversize_result"]
    assert fault.limits is not None and fault.limits.memory_mb is not None
    strikes = 4 * fault.limits.memory_mb // int(fault.config["mb"])
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(fault.ref, config=fault.config, limits=fault.limits)
        for _ in range(strikes):
            with pytest.raises(PluginRaised) as caught:
                await host.call("process", input_data=None)
            assert caught.value.report.exc_type == "TypeError"
        assert host.plugins[0].pid == info.pid and host.plugins[0].restarts == 0
