"""``SyncPluginHost``: the blocking facade, from plain (non-async) code and threads.

Each test runs the host's loop on asyncio and on trio (``backend``). The autouse leak
check in conftest.py verifies that closing leaves no worker, zygote, zombie or fd; the
tests check that the host's thread is gone too.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from plugbox import Limits, PluginHost, SyncPluginHost, specs
from plugbox.errors import PluginCrashed, PluginLoadError, PluginQuarantined, PluginRaised

PLUGINS = Path(__file__).parents[1] / "plugins"
RECORDER = str(PLUGINS / "agent.py")


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def host_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("plugbox-host-")]


def test_calls_work_and_change_the_callers_arguments_in_place(backend: str) -> None:
    with SyncPluginHost(specs.AGENT, backend=backend) as host:
        info = host.add("plugbox.plugins.global_instruction", config={"instruction": "Be brief."})
        assert (info.name, info.state) == ("global_instruction", "running")
        assert info.pid is not None and psutil.pid_exists(info.pid)
        request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        outcome = host.call("before_model", request=request, context={})
        assert outcome.value is None and outcome.called == ["global_instruction"]
        assert request["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
        assert [p.name for p in host.plugins] == ["global_instruction"]
        assert len(host_threads()) == 1
    assert host.closed and host_threads() == []
    assert not psutil.pid_exists(info.pid)


def test_failures_raise_the_same_typed_errors(backend: str, behave: str) -> None:
    with SyncPluginHost(specs.PIPELINE, backend=backend) as host:
        with pytest.raises(PluginLoadError) as load:
            host.add(str(PLUGINS / "no_such_plugin.py"))
        assert load.value.reason.startswith("no such file: ")
        host.add(behave, limits=Limits(max_failures=2, backoff_initial=0))
        with pytest.raises(PluginRaised) as raised:
            host.call("process", input_data={"do": "raise", "arg": 7})
        assert (raised.value.report.exc_type, raised.value.report.exc_message) == (
            "ValueError",
            "bad input: 7",
        )
        with pytest.raises(TypeError, match=r"hook 'process' has no argument 'wrong'"):
            host.call("process", wrong=1)
        with pytest.raises(TypeError, match=r"unknown hook 'nope'"):
            host.call("nope")
        for _ in range(2):
            with pytest.raises(PluginCrashed):
                host.call("process", input_data={"do": "exit", "arg": 3})
        with pytest.raises(PluginQuarantined):
            host.call("process", input_data={"do": "echo"})
        assert [r.cause for r in host.reports] == ["raised", "crashed", "crashed", "quarantined"]
        host.reset("behave")
        assert host.call("process", input_data={"n": 1}).value == {"n": 1}
        host.remove("behave")
        assert host.plugins == []
        assert host.call("process", input_data="nobody").value == "nobody"


def test_the_fail_closed_agent_semantics_hold_through_the_facade(backend: str) -> None:
    with SyncPluginHost(specs.AGENT, backend=backend) as host:
        host.add(
            f"{RECORDER}:AgentRecorderPlugin",
            config={"name": "strict", "raise": ["before_tool", "on_event"]},
        )
        with pytest.raises(PluginRaised):
            host.call("before_tool", tool={"name": "t"}, args={}, context={})
        event = {"id": "e1"}
        outcome = host.call("on_event", event=event, context={})
        assert outcome.value is event and [r.hook for r in outcome.failures] == ["on_event"]


def test_two_threads_at_once(backend: str) -> None:
    # Thread A's after_run is held inside the "holder" plugin until this thread's call
    # releases it, while two more threads make calls of their own. If the facade ran
    # one call at a time, A's after_run or this thread's "started?" would wait out its
    # 5 s deadline and the test would see the timeout.
    with SyncPluginHost(specs.AGENT, backend=backend) as host:
        host.add(
            f"{RECORDER}:AsyncAgentRecorderPlugin",
            config={"name": "holder", "hold": True},
            limits=Limits(call_timeout=5),
        )
        host.add(
            f"{RECORDER}:AgentRecorderPlugin",
            config={"name": "tagger", "mutate": {"on_event": {"event": {"tagged": True}}}},
        )
        results: dict[str, Any] = {}
        errors: list[BaseException] = []

        def after_run() -> None:
            try:
                results["after_run"] = host.call("after_run", message={}, output={}, context={})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def events(thread: str) -> None:
            try:
                for i in range(20):
                    event = {"id": f"{thread}-{i}"}
                    host.call("on_event", event=event, context={})
                    results[event["id"]] = event
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        a = threading.Thread(target=after_run)
        a.start()
        # returns once holder's after_run has started (asked, not timed)
        host.call("on_user_message", message={"content": "started?"}, context={})
        assert "after_run" not in results
        others = [threading.Thread(target=events, args=(t,)) for t in ("x", "y")]
        for t in others:
            t.start()
        for t in others:
            t.join()
        assert "after_run" not in results  # still held while the others were served
        host.call("on_user_message", message={"content": "release"}, context={})
        a.join()
        assert errors == []
        outcome = results["after_run"]
        assert not outcome.failures and sorted(outcome.called) == ["holder", "tagger"]
        assert all(
            results[f"{t}-{i}"] == {"id": f"{t}-{i}", "tagged": True}
            for t in "xy"
            for i in range(20)
        )


def test_closing_twice_and_using_a_closed_host(backend: str) -> None:
    host = SyncPluginHost(specs.PIPELINE, backend=backend)
    with pytest.raises(RuntimeError, match="open the SyncPluginHost first"):
        host.call("process", input_data=1)
    host.open()
    info = host.add(str(PLUGINS / "counter.py"))
    assert host.call("process", input_data=None).value == 1
    host.close()
    host.close()
    assert host_threads() == [] and not psutil.pid_exists(info.pid or 0)
    with pytest.raises(RuntimeError, match="this SyncPluginHost is closed"):
        host.call("process", input_data=1)
    with pytest.raises(RuntimeError, match="can be opened once"):
        host.open()


def test_closing_runs_plugins_close_in_reverse_order(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with SyncPluginHost(specs.AGENT, backend=backend) as host:
        for name in ("first", "second"):
            host.add(f"{RECORDER}:AgentRecorderPlugin", config={"name": name})
    closing = [r.getMessage() for r in caplog.records if r.getMessage().endswith(" closing")]
    assert closing == ["agent-recorder: second closing", "agent-recorder: first closing"]


def test_a_bad_hook_set_or_backend_is_refused(backend: str) -> None:
    with pytest.raises(TypeError, match="needs a HookSet"):
        SyncPluginHost({"process": None})  # type: ignore[arg-type]
    host = SyncPluginHost(specs.PIPELINE, backend="no-such-backend")
    with pytest.raises(LookupError):
        host.open()
    assert host.closed and host_threads() == []
    assert isinstance(PluginHost, type)  # the async host is untouched by the facade
