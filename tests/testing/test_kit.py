"""The crash-injection kit: every fault gets its documented cause, the pytest plugin's
fixtures and helpers (through pytester), and inline plugins (classes sent by value).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import plugbox.testing
from plugbox import Limits, PluginHost, specs
from plugbox.errors import PluginCrashed, PluginLoadError, PluginRaised
from plugbox.testing import FAULTS, Fault, assert_contained, assert_report, each_fault

pytest_plugins = ["pytester"]

#: one fault per way a call ends, run on trio too (the whole table runs on asyncio).
TRIO_FAULTS = {
    "raise",
    "segfault",
    "exit",
    "memory_list",
    "sleep",
    "close_channel",
    "fork_bomb",
    "stdout_flood",
}
QUICK = Limits(memory_mb=64, cpu_seconds=1, call_timeout=5.0, backoff_initial=0.0)


class CanaryPlugin:
    """A healthy plugin beside the fault: it must keep answering."""

    name = "canary"
    version = "1.0"

    def process(self, input_data: Any) -> Any:
        return input_data

    def pre_process(self, input_data: Any) -> None:
        return None


# ---------------------------------------------------------------------- the faults
@each_fault
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_every_fault_gets_its_documented_cause(plugbox_host: Any, fault: Fault) -> None:
    await check_fault(plugbox_host, fault)


@pytest.mark.parametrize(
    "fault", [FAULTS[name] for name in sorted(TRIO_FAULTS)], ids=sorted(TRIO_FAULTS)
)
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_one_fault_per_kind_of_ending_on_trio(plugbox_host: Any, fault: Fault) -> None:
    await check_fault(plugbox_host, fault)


async def check_fault(plugbox_host: Any, fault: Fault) -> None:
    host = await plugbox_host(specs.PIPELINE)
    info = await fault.add_to(host, hooks=["process"])
    await host.add(CanaryPlugin)
    out = await host.call("process", input_data="ping")
    assert out.called[-1] == "canary" and out.value == "ping"  # the chain went on
    if fault.cause is None:
        assert not out.failures
        assert host.plugins[0].pid == info.pid
        return
    report = await assert_contained(
        out,
        cause=fault.causes,
        host=host,
        probe=("pre_process", {"input_data": "probe"}),
        plugin=info.name,
        hook="process",
        signal=fault.signal,
        exit_code=fault.exit_code,
        exc_type=fault.exc_type,
    )
    assert report.pid == info.pid
    if not fault.kills_worker and report.cause == fault.cause:  # not one of fault.also
        assert host.plugins[0].pid == info.pid and host.plugins[0].state == "running"


def test_the_table_is_consistent() -> None:
    names = [
        "raise",
        "segfault",
        "abort",
        "exit",
        "memory_list",
        "memory_mmap",
        "cpu_python",
        "cpu_c",
        "sleep",
        "sigstop",
        "ignore_sigterm",
        "recursion",
        "stack_overflow",
        "unserializable",
        "oversize_result",
        "stdout_flood",
        "stderr_flood",
        "close_channel",
        "corrupt_channel",
        "oversize_frame",
        "unknown_reply",
        "fork_denied",
        "fork_bomb",
        "thread_bomb",
        "fd_exhaustion",
        "huge_file",
    ]
    assert list(FAULTS) == names
    for fault in FAULTS.values():
        assert fault.cause is None or fault.cause in plugbox.reports.CAUSES
        assert fault.doc and fault.ref.startswith("plugbox.testing.faults:")
        assert fault.plugin_config("process")["hooks"] == ["process"]


@pytest.mark.anyio
async def test_after_and_times_count_calls_per_worker(plugbox_host: Any) -> None:
    host = await plugbox_host(specs.PIPELINE)
    await host.add(
        FAULTS["raise"].ref, config={"hooks": "process", "after": 2, "times": 1}, limits=QUICK
    )
    values = []
    for _ in range(4):
        try:
            values.append((await host.call("process", input_data=1)).value)
        except PluginRaised as exc:
            values.append(exc.report.exc_type)
    assert values == [1, 1, "FaultError", 1]


@pytest.mark.anyio
async def test_a_fault_on_an_agent_hook_and_in_initialize(plugbox_host: Any) -> None:
    host = await plugbox_host(specs.AGENT)
    info = await FAULTS["exit"].add_to(host, on_failure="raise")
    assert set(info.hooks) == set(specs.AGENT) and not info.problems
    with pytest.raises(PluginCrashed) as caught:
        await host.call("before_model", request={}, context={})
    assert_report(caught.value, cause="crashed", exit_code=3, hook="before_model")
    with pytest.raises(PluginLoadError) as load:
        await host.add(
            FAULTS["segfault"].ref, config={"hooks": ["initialize"], "name": "early"}, limits=QUICK
        )
    assert load.value.report is not None and load.value.report.signal == "SIGSEGV"


@pytest.mark.anyio
async def test_ignore_sigterm_cannot_stop_the_host_closing(anyio_backend: str) -> None:
    limits = Limits(close_timeout=0.3)
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(
            FAULTS["ignore_sigterm"].ref, config={"hooks": ["process"], "after": 1}, limits=limits
        )
        assert (await host.call("process", input_data=1)).value == 1  # not struck
    assert info.pid is not None and not _alive(info.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_assert_report_names_the_mismatch() -> None:
    from plugbox.reports import FailureReport

    report = FailureReport(
        plugin="p",
        version="1",
        hook="process",
        cause="crashed",
        detail="killed by SIGSEGV",
        signal="SIGSEGV",
    )
    assert assert_report(report, cause="crashed", signal="SIGSEGV") is report
    with pytest.raises(AssertionError, match="expected cause timeout, got crashed"):
        assert_report(report, cause="timeout")
    with pytest.raises(ValueError, match="unknown fault"):
        each_fault(only=["nope"])


# ---------------------------------------------------------------------- pytester
PASSING = """
import pytest
from plugbox import specs
from plugbox.testing import FAULTS, assert_contained

pytestmark = pytest.mark.anyio

async def test_segfault_is_contained(plugbox_host):
    host = await plugbox_host(specs.PIPELINE)
    fault = FAULTS["segfault"]
    await fault.add_to(host, hooks=["process"])
    out = await host.call("process", input_data=1)
    await assert_contained(out, cause="crashed", host=host, signal="SIGSEGV")

async def test_agent_host(plugbox_host):
    host = await plugbox_host(specs.AGENT, on_failure="skip")
    await FAULTS["raise"].add_to(host, hooks="before_model")
    out = await host.call("before_model", request={}, context={})
    await assert_contained(out, cause="raised", host=host)
"""

LEAKING = """
import os, subprocess
import pytest
from plugbox import specs

pytestmark = pytest.mark.anyio

async def test_leaves_a_process(plugbox_host):
    await plugbox_host(specs.PIPELINE)
    subprocess.Popen(["sleep", "60"])

def test_leaves_an_fd(plugbox_leak_check):
    os.open(os.devnull, os.O_RDONLY)

def test_clean(plugbox_leak_check):
    os.close(os.open(os.devnull, os.O_RDONLY))
"""

EACH = """
from plugbox.testing import each_fault

@each_fault
def test_fault(fault):
    assert fault.ref

@each_fault(only=["segfault", "sleep"])
def test_two(fault):
    pass
"""


def test_pytester_fixtures_pass_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_passing=PASSING)  # anyio's own anyio_backend: both
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_pytester_leak_check_fails_a_leaking_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaking=LEAKING)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    # each leaking test passes its call and errors in its teardown
    result.assert_outcomes(passed=4, errors=3)
    out = result.stdout.str()
    assert "plugbox leak check: left behind after the test" in out
    assert "process" in out and "sleep 60" in out
    assert "/dev/null" in out


def test_pytester_each_fault_expands_to_every_fault(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_each=EACH)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--collect-only")
    ids = [line.split("::", 1)[1] for line in result.outlines if "::" in line]
    assert ids == [f"test_fault[{name}]" for name in FAULTS] + [
        "test_two[segfault]",
        "test_two[sleep]",
    ]


# ---------------------------------------------------------------------- inline
@pytest.mark.anyio
async def test_inline_class_with_a_closure_runs_in_its_worker(anyio_backend: str) -> None:
    suffix = f"-{anyio_backend}"  # captured by value

    class InlineUpperPlugin:
        name = "inline-upper"
        version = "0.1"

        def initialize(self, config: dict[str, Any]) -> None:
            self.times = config["times"]

        def process(self, input_data: str) -> str:
            return (input_data.upper() + suffix) * self.times

        def pre_process(self, input_data: Any) -> int:
            return os.getpid()

    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(InlineUpperPlugin, config={"times": 2})
        assert info.name == "inline-upper" and info.version == "0.1"
        assert info.ref.startswith("<inline ") and "InlineUpperPlugin" in info.ref
        assert info.pid != os.getpid() and info.layers["seccomp"]
        out = await host.call("process", input_data="hi")
        assert out.value == f"HI{suffix}HI{suffix}"


@pytest.mark.anyio
async def test_inline_class_that_crashes_is_contained(anyio_backend: str) -> None:
    class InlineCrashPlugin:
        name = "inline-crash"

        def process(self, input_data: Any) -> Any:
            if input_data == "crash":
                import ctypes

                ctypes.string_at(0)
            return input_data

    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(InlineCrashPlugin, limits=QUICK)
        with pytest.raises(PluginCrashed) as caught:
            await host.call("process", input_data="crash")
        await assert_contained(
            caught.value,
            cause="crashed",
            host=host,
            signal="SIGSEGV",
            probe=("process", {"input_data": "again"}),
        )
        assert host.plugins[0].pid != info.pid  # restarted, from the same bytes


@pytest.mark.anyio
async def test_an_inline_class_that_cannot_be_serialized_is_a_load_error(
    anyio_backend: str,
) -> None:
    class HoldsAGeneratorPlugin:
        numbers = (i for i in range(3))

        def process(self, input_data: Any) -> Any:
            return input_data

    async with PluginHost(specs.PIPELINE) as host:
        with pytest.raises(PluginLoadError, match="cannot serialize the class by value"):
            await host.add(HoldsAGeneratorPlugin)
