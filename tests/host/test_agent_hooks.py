"""The AGENT hook set across real workers: each row of the semantics table in
docs/plugins.md ("agent lifecycle hooks"), validation when a plugin is added, the
built-in plugins and the trpc-agent-go guide's recipes.

Every test runs on asyncio and trio with the zygote launcher; the autouse leak check in
conftest.py verifies that no worker, zombie or fd outlives a test. Test plugins record
the calls they receive (the ``history`` hook, added to the AGENT set here), so "not
called" is asked, not assumed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from plugbox import HookSet, HookSpec, Limits, Outcome, PluginHost, Sandbox, specs
from plugbox.errors import PluginCrashed, PluginLoadError, PluginRaised

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parents[1]
RECORDER = str(TESTS / "plugins" / "agent.py")
RECIPES = TESTS.parent / "examples" / "agent" / "plugins"
CHAPTER_LOGGER = str(TESTS.parent / "plugbox" / "demo" / "plugins" / "message_logger.py")

#: the AGENT set plus a ``history`` hook to ask the test plugins what they received.
HOOKS = HookSet(
    "agent-tests", [*specs.AGENT.values(), HookSpec(name="history", args=(), mode="collect")]
)

FIRST_RESULT_HOOKS = [
    "on_user_message",
    "before_run",
    "before_agent",
    "after_agent",
    "before_model",
    "after_model",
    "on_model_error",
    "before_tool",
    "after_tool",
    "on_tool_error",
]

#: the semantics table: hook -> (arguments, may change, mode, default on failure)
TABLE: dict[str, tuple[tuple[str, ...], set[str], str, str]] = {
    "on_user_message": (("message", "context"), {"message", "context"}, "first_result", "raise"),
    "before_run": (("message", "context"), {"message", "context"}, "first_result", "raise"),
    "before_agent": (
        ("agent", "message", "context"),
        {"message", "context"},
        "first_result",
        "raise",
    ),
    "after_agent": (
        ("agent", "message", "output", "context"),
        {"output", "context"},
        "first_result",
        "raise",
    ),
    "before_model": (("request", "context"), {"request", "context"}, "first_result", "raise"),
    "after_model": (
        ("request", "response", "context"),
        {"response", "context"},
        "first_result",
        "raise",
    ),
    "on_model_error": (("request", "error", "context"), {"context"}, "first_result", "raise"),
    "before_tool": (("tool", "args", "context"), {"args", "context"}, "first_result", "raise"),
    "after_tool": (
        ("tool", "args", "result", "context"),
        {"result", "context"},
        "first_result",
        "raise",
    ),
    "on_tool_error": (("tool", "args", "error", "context"), {"context"}, "first_result", "raise"),
    "on_event": (("event", "context"), {"event", "context"}, "chain", "skip"),
    "after_run": (("message", "output", "context"), set(), "observe", "skip"),
}


def sample_args(hook: str) -> dict[str, Any]:
    """Plain-data arguments for ``hook``, every one a dict (so each can be changed)."""
    values: dict[str, Any] = {
        "message": {"role": "user", "content": "hello"},
        "context": {"invocation_id": "inv-1", "agent_name": "assistant", "state": {}},
        "agent": {"name": "assistant"},
        "output": {"role": "assistant", "content": "done"},
        "request": {"model": "m", "messages": [{"role": "user", "content": "hello"}]},
        "response": {"content": "hi", "tool_calls": []},
        "error": {"type": "TimeoutError", "message": "too slow"},
        "tool": {"name": "calculator"},
        "args": {"a": 1, "b": 2},
        "result": {"value": 3},
        "event": {"id": "e1", "type": "model_response", "tags": []},
    }
    return {name: copy.deepcopy(values[name]) for name in specs.AGENT[hook].args}


async def add(host: PluginHost, name: str, cls: str = "AgentRecorderPlugin", **config: Any) -> None:
    await host.add(f"{RECORDER}:{cls}", config={"name": name, **config})


async def history(host: PluginHost) -> dict[str, list[Any]]:
    """Every recorder's calls, by plugin name."""
    out = await host.call("history")
    return {h["name"]: h["calls"] for h in out.value}


def calls_of(calls: list[Any], hook: str) -> list[dict[str, Any]]:
    return [args for name, args in calls if name == hook]


# ---------------------------------------------------------------- the table itself
async def test_the_agent_set_is_the_documented_table() -> None:
    assert list(specs.AGENT) == list(TABLE)
    for hook, (args, mutable, mode, on_failure) in TABLE.items():
        spec = specs.AGENT[hook]
        assert (spec.args, set(spec.mutable), spec.mode, spec.default_on_failure) == (
            args,
            mutable,
            mode,
            on_failure,
        ), hook
        assert spec.kind == "either" and spec.doc
        assert spec.to_worker() == {
            "args": list(args),
            "mutable": sorted(mutable),
            "kind": "either",
        }
    # the pipeline set is what it was
    assert {n: (s.args, s.mode, s.default_on_failure) for n, s in specs.PIPELINE.items()} == {
        "pre_process": (("input_data",), "observe", "skip"),
        "process": (("input_data",), "chain", "raise"),
        "post_process": (("input_data", "output"), "observe", "skip"),
    }


async def test_the_docs_document_every_agent_hook() -> None:
    readme = (TESTS.parent / "docs" / "plugins.md").read_text()
    section = readme.split("`specs.AGENT`: agent lifecycle hooks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1].split("(")[0] for row in rows] == list(TABLE)
    for row, (hook, (args, _mutable, _mode, on_failure)) in zip(rows, TABLE.items(), strict=True):
        assert f"`{hook}({', '.join(args)})`" in row
        assert on_failure in row


# ---------------------------------------------------------------- order
async def test_plugins_run_in_the_order_they_were_added() -> None:
    async with PluginHost(HOOKS) as host:
        for name in ("b-first", "a-second", "c-third"):
            await add(host, name, mutate={"before_model": {"request": {name: True}}})
        request = sample_args("before_model")["request"]
        out = await host.call("before_model", request=request, context={})
        assert out.value is None
        assert out.called == ["b-first", "a-second", "c-third"]
        calls = await history(host)
        # each saw the changes of the ones before it, none of the ones after
        assert [
            set(calls_of(calls[n], "before_model")[0]["request"]) - {"model", "messages"}
            for n in ("b-first", "a-second", "c-third")
        ] == [set(), {"b-first"}, {"b-first", "a-second"}]
        assert request == {
            **sample_args("before_model")["request"],
            "b-first": True,
            "a-second": True,
            "c-third": True,
        }


# ---------------------------------------------------------------- short-circuit / replace
@pytest.mark.parametrize("hook", FIRST_RESULT_HOOKS)
async def test_a_non_none_return_short_circuits_and_later_plugins_are_not_called(hook: str) -> None:
    answer = {"content": f"custom answer from {hook}"}
    async with PluginHost(HOOKS) as host:
        await add(host, "silent")
        await add(host, "answers", "AsyncAgentRecorderPlugin", returns={hook: answer})
        await add(host, "later", returns={hook: {"content": "never seen"}})
        args = sample_args(hook)
        out = await host.call(hook, **args)
        assert out.value == answer
        assert out.called == ["silent", "answers"]
        assert not out.failures
        calls = await history(host)
        assert calls_of(calls["silent"], hook) == [sample_args(hook)]
        assert calls_of(calls["answers"], hook) == [sample_args(hook)]
        assert calls_of(calls["later"], hook) == []  # it was not called


@pytest.mark.parametrize("hook", FIRST_RESULT_HOOKS)
async def test_when_every_plugin_returns_none_all_are_called_and_the_value_is_none(
    hook: str,
) -> None:
    # for on_model_error / on_tool_error: None lets the error stand
    async with PluginHost(HOOKS) as host:
        for name in ("one", "two", "three"):
            await add(host, name)
        out = await host.call(hook, **sample_args(hook))
        assert out.value is None and out.called == ["one", "two", "three"]


# ---------------------------------------------------------------- in-place changes
@pytest.mark.parametrize("hook", list(TABLE))
async def test_changes_in_place_reach_the_next_plugin_and_the_caller_only_where_allowed(
    hook: str,
) -> None:
    mutable = TABLE[hook][1]
    async with PluginHost(HOOKS) as host:
        # "changer" changes every argument; "observer" records what it then receives
        await add(
            host,
            "changer",
            mutate={hook: {arg: {"changed_by": "changer"} for arg in TABLE[hook][0]}},
        )
        await add(host, "observer")
        args = sample_args(hook)
        caller_objects = dict(args)
        out = await host.call(hook, **args)
        assert sorted(out.called) == ["changer", "observer"]
        (seen,) = calls_of((await history(host))["observer"], hook)
        for arg in TABLE[hook][0]:
            original = sample_args(hook)[arg]
            changed = {**original, "changed_by": "changer"}
            if arg in mutable:
                assert seen[arg] == changed, arg
                assert out.args[arg] == changed and out.args[arg] is caller_objects[arg], arg
            else:  # the changer changed its copy; nobody else sees it
                assert seen[arg] == original, arg
                assert caller_objects[arg] == original, arg


async def test_before_tool_rewrites_the_arguments_for_the_next_plugin_and_the_tool() -> None:
    # the trpc guide's recipe 3, as shipped in examples/agent/plugins
    async with PluginHost(HOOKS) as host:
        await host.add(str(RECIPES / "rewrite_tool_args.py"))  # the guide's default
        await add(host, "after-rewrite")
        tool_args = {"operation": "mul", "a": 6, "b": 7}
        out = await host.call(
            "before_tool", tool={"name": "calculator"}, args=tool_args, context={}
        )
        assert out.value is None  # the tool runs, with the rewritten arguments
        assert tool_args == {"operation": "add", "a": 1, "b": 2}
        (seen,) = calls_of((await history(host))["after-rewrite"], "before_tool")
        assert seen["args"] == {"operation": "add", "a": 1, "b": 2}

        other = {"city": "Paris"}  # a tool the recipe does not rewrite
        await host.call("before_tool", tool={"name": "weather"}, args=other, context={})
        assert other == {"city": "Paris"}


# ---------------------------------------------------------------- on_event
async def test_on_event_replacements_chain_from_plugin_to_plugin() -> None:
    replacement = {"id": "e1", "type": "model_response", "tags": ["replaced"]}
    async with PluginHost(HOOKS) as host:
        await add(host, "replacer", "AsyncAgentRecorderPlugin", returns={"on_event": replacement})
        await add(host, "tagger", mutate={"on_event": {"event": {"tagged": True}}})
        await add(host, "quiet")
        event = sample_args("on_event")["event"]
        out = await host.call("on_event", event=event, context={})
        assert out.called == ["replacer", "tagger", "quiet"]
        assert out.value == {**replacement, "tagged": True}
        assert out.args["event"] is out.value
        assert event == sample_args("on_event")["event"]  # replaced, not changed
        calls = await history(host)
        assert calls_of(calls["tagger"], "on_event")[0]["event"] == replacement
        assert calls_of(calls["quiet"], "on_event")[0]["event"] == out.value


@pytest.mark.parametrize("how", ["raise", "crash"])
async def test_a_failing_on_event_plugin_is_logged_and_skipped_with_the_event_as_it_was(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "tagger", mutate={"on_event": {"event": {"tagged": True}}})
        # changes the event in place, then fails: its change must not survive
        await add(
            host,
            "failing",
            **{how: ["on_event"]},
            mutate={"on_event": {"event": {"spoiled": True}}},
            returns={"on_event": {"never": "seen"}},
        )
        await add(host, "after")
        event = sample_args("on_event")["event"]
        out = await host.call("on_event", event=event, context={})
        expected = {**sample_args("on_event")["event"], "tagged": True}
        assert out.value == expected and event == expected and out.value is event
        assert out.called == ["tagger", "after"]
        (report,) = out.failures
        assert (report.plugin, report.hook) == ("failing", "on_event")
        if how == "raise":
            assert (report.cause, report.exc_type) == ("raised", "RuntimeError")
        else:
            assert (report.cause, report.exit_code) == ("crashed", 3)
        assert host.reports == [report]
        calls = await history(host)  # the next plugin got the event as it was
        assert calls_of(calls["after"], "on_event")[0]["event"] == expected
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "plugbox.host" and r.levelno == logging.WARNING
    ]
    assert report.summary() in warned


# ---------------------------------------------------------------- failures of the others
@pytest.mark.parametrize("hook", FIRST_RESULT_HOOKS)
async def test_a_failing_plugin_fails_the_call_by_default(hook: str) -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "first")
        await add(host, "failing", **{"raise": [hook]})
        await add(host, "later")
        with pytest.raises(PluginRaised) as info:
            await host.call(hook, **sample_args(hook))
        report = info.value.report
        assert (report.plugin, report.hook, report.exc_message) == (
            "failing",
            hook,
            f"failing fails in {hook}",
        )
        calls = await history(host)
        assert len(calls_of(calls["first"], hook)) == 1
        assert calls_of(calls["later"], hook) == []  # the run stops: later is not called


async def test_a_plugin_added_with_skip_is_skipped_in_a_fail_closed_hook() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(
            f"{RECORDER}:AgentRecorderPlugin",
            on_failure="skip",
            config={"name": "lenient", "crash": ["before_model"]},
        )
        await add(host, "answers", returns={"before_model": {"content": "ok"}})
        out = await host.call("before_model", **sample_args("before_model"))
        assert (out.value, out.called) == ({"content": "ok"}, ["answers"])
        assert [(r.plugin, r.cause) for r in out.failures] == [("lenient", "crashed")]


async def test_a_crash_in_before_model_is_a_typed_failure_and_the_next_call_restarts() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "crashy", crash=["before_model"])
        with pytest.raises(PluginCrashed) as info:
            await host.call("before_model", **sample_args("before_model"))
        assert (info.value.report.hook, info.value.report.exit_code) == ("before_model", 3)
        out = await host.call("on_user_message", **sample_args("on_user_message"))
        assert out.called == ["crashy"] and host.plugins[0].restarts == 1


# ---------------------------------------------------------------- after_run
async def test_after_run_runs_every_plugin_and_collects_the_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "first")
        await add(host, "failing", **{"raise": ["after_run"]})
        await add(host, "crashing", crash=["after_run"])
        await add(host, "last", "AsyncAgentRecorderPlugin")
        out = await host.call("after_run", **sample_args("after_run"))
        assert out.value is None
        assert sorted(out.called) == ["first", "last"]
        assert sorted((r.plugin, r.cause) for r in out.failures) == [
            ("crashing", "crashed"),
            ("failing", "raised"),
        ]
        assert sorted(host.reports, key=lambda r: r.plugin) == sorted(
            out.failures, key=lambda r: r.plugin
        )
        calls = await history(host)
        for name in ("first", "failing", "last"):  # everybody ran
            assert calls_of(calls[name], "after_run") == [sample_args("after_run")], name
    warned = {
        r.getMessage()
        for r in caplog.records
        if r.name == "plugbox.host" and r.levelno == logging.WARNING
    }
    assert {r.summary() for r in out.failures} <= warned


async def test_after_run_plugins_run_concurrently() -> None:
    # "holder" is added first and its after_run does not return until released (by an
    # on_user_message "release"). on_user_message "started?" returns once every plugin's
    # after_run has started: run one after the other, "other" would never start while
    # holder holds, and the call would end in a timeout.
    async with PluginHost(HOOKS) as host:
        await add(host, "holder", "AsyncAgentRecorderPlugin", hold=True)
        await host.add(
            f"{RECORDER}:AsyncAgentRecorderPlugin",
            config={"name": "other"},
            limits=Limits(call_timeout=5),
        )
        done: list[Outcome] = []

        async def after_run() -> None:
            done.append(await host.call("after_run", **sample_args("after_run")))

        async with anyio.create_task_group() as tg:
            tg.start_soon(after_run)
            await host.call("on_user_message", message={"content": "started?"}, context={})
            calls = await history(host)
            assert calls_of(calls["other"], "after_run") == [sample_args("after_run")]
            assert calls_of(calls["holder"], "after_run") == []  # still held
            assert done == []
            await host.call("on_user_message", message={"content": "release"}, context={})
        (outcome,) = done
        # in the order they were added, though "other" finished first
        assert outcome.called == ["holder", "other"] and not outcome.failures
        assert calls_of((await history(host))["holder"], "after_run") == [sample_args("after_run")]


# ---------------------------------------------------------------- closing
async def test_plugins_close_in_reverse_order_of_adding(caplog: pytest.LogCaptureFixture) -> None:
    async with PluginHost(specs.AGENT) as host:
        for name in ("first", "second", "third"):
            await add(host, name)
    closing = [r.getMessage() for r in caplog.records if r.getMessage().endswith(" closing")]
    assert closing == [
        "agent-recorder: third closing",
        "agent-recorder: second closing",
        "agent-recorder: first closing",
    ]
    assert [p.state for p in host.plugins] == ["closed"] * 3


# ---------------------------------------------------------------- validation
def write(directory: Path, name: str, source: str) -> str:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return str(path)


async def load_error(hooks: HookSet, ref: str) -> PluginLoadError:
    async with PluginHost(hooks) as host:
        with pytest.raises(PluginLoadError) as info:
            await host.add(ref)
        assert host.plugins == []
    return info.value


async def test_a_hook_argument_the_agent_spec_lacks_names_plugin_hook_and_argument(
    tmp_path: Path,
) -> None:
    ref = write(
        tmp_path,
        "extra.py",
        """\
        class ExtraPlugin:
            name = "extra"

            def before_model(self, request, ctx):
                return None
        """,
    )
    exc = await load_error(specs.AGENT, ref)
    assert exc.reason == (
        "plugin 'extra': hook 'before_model' takes argument 'ctx', which the "
        "spec does not have (it has: request, context)"
    )


SYNC_ASYNC = HookSet(
    "kinds",
    [
        HookSpec(name="on_sync", args=("x",), kind="sync"),
        HookSpec(name="on_async", args=("x",), kind="async"),
        HookSpec(name="on_either", args=("x",)),
    ],
)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "async def on_sync(self, x):",
            "plugin 'kinds': hook 'on_sync' is defined with "
            "'async def', but the spec requires a plain function (def)",
        ),
        (
            "def on_async(self, x):",
            "plugin 'kinds': hook 'on_async' is defined with 'def', "
            "but the spec requires a coroutine function (async def)",
        ),
    ],
)
async def test_a_sync_async_mix_the_spec_forbids_is_a_load_error(
    tmp_path: Path, body: str, reason: str
) -> None:
    ref = write(
        tmp_path,
        "kinds.py",
        f"""\
        class KindsPlugin:
            name = "kinds"

            {body}
                return x
        """,
    )
    exc = await load_error(SYNC_ASYNC, ref)
    assert exc.reason == reason


async def test_hooks_of_the_kind_the_spec_asks_for_load_and_run(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "kinds.py",
        """\
        import functools

        class KindsPlugin:
            name = "kinds"

            def on_sync(self, x):
                return ["sync", x]

            async def on_async(self, x):
                return ["async", x]

            async def _either(self, tag, x):
                return [tag, x]

            def __init__(self):  # a partial of a coroutine function is async too
                self.on_either = functools.partial(self._either, "partial")
        """,
    )
    async with PluginHost(SYNC_ASYNC) as host:
        info = await host.add(ref)
        assert set(info.hooks) == {"on_sync", "on_async", "on_either"} and not info.problems
        assert (await host.call("on_sync", x=1)).value == [["sync", 1]]
        assert (await host.call("on_async", x=2)).value == [["async", 2]]
        assert (await host.call("on_either", x=3)).value == [["partial", 3]]


async def test_methods_named_like_hooks_the_spec_lacks_are_reported_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = write(
        tmp_path,
        "typos.py",
        """\
        class TyposPlugin:
            name = "typos"

            def before_tool(self, tool):
                return None

            def BeforeModel(self, request):  # trpc's spelling
                return None

            def before_modle(self, request):
                return None

            def on_run_start(self):
                return None

            def summarize(self):  # an ordinary helper
                return None
        """,
    )
    async with PluginHost(specs.AGENT) as host:
        info = await host.add(ref)
        assert info.hooks == ("before_tool",)
        start = "plugin 'typos': method {!r} looks like a hook but the host declares no hook "
        assert info.problems == (
            start.format("BeforeModel") + "of that name (did you mean 'before_model'?)",
            start.format("before_modle") + "of that name (did you mean 'before_model'?)",
            start.format("on_run_start") + "of that name",
        )
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "plugbox.host" and r.levelno == logging.WARNING
    ]
    assert set(info.problems) <= set(warned)


async def test_a_plugin_for_another_hook_set_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    # the chapter's PIPELINE message logger, added to an AGENT host by mistake
    async with PluginHost(specs.AGENT) as host:
        info = await host.add(CHAPTER_LOGGER)
        assert info.hooks == ()
        assert info.problems[-1] == (
            f"plugin 'message-logger' implements none of the host's hooks "
            f"({', '.join(specs.AGENT)}): it will never be called"
        )
        assert {"'pre_process'", "'post_process'"} <= {p.split()[3] for p in info.problems[:-1]}


async def test_hook_specs_refuse_what_they_cannot_honour() -> None:
    with pytest.raises(ValueError, match="kind 'maybe' is not one of"):
        HookSpec(name="h", args=("x",), kind="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="observe hook's plugins run concurrently"):
        HookSpec(name="h", args=("x",), mode="observe", mutable=frozenset({"x"}))


# ---------------------------------------------------------------- built-in plugins
async def test_global_instruction_prepends_a_system_message() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(
            "plugbox.plugins.global_instruction", config={"instruction": "Follow the policy."}
        )
        await add(host, "model-side")
        request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        out = await host.call("before_model", request=request, context={})
        expected = [
            {"role": "system", "content": "Follow the policy."},
            {"role": "user", "content": "hi"},
        ]
        assert out.value is None and request["messages"] == expected
        (seen,) = calls_of((await history(host))["model-side"], "before_model")
        assert seen["request"]["messages"] == expected  # the next plugin sees it too
        await host.call("before_model", request=request, context={})  # a retry
        assert request["messages"] == expected  # not twice


async def test_global_instruction_merges_into_the_first_system_message() -> None:
    async with PluginHost(specs.AGENT) as host:
        await host.add(
            "plugbox.plugins.global_instruction", config={"instruction": "Follow the policy."}
        )
        request = {
            "messages": [
                {"role": "system", "content": "You are a poet."},
                {"role": "user", "content": "hi"},
            ]
        }
        await host.call("before_model", request=request, context={})
        assert request["messages"] == [
            {"role": "system", "content": "Follow the policy.\n\nYou are a poet."},
            {"role": "user", "content": "hi"},
        ]
        await host.call("before_model", request=request, context={})
        assert request["messages"][0]["content"] == "Follow the policy.\n\nYou are a poet."
        empty: dict[str, Any] = {"model": "m"}  # no messages at all
        await host.call("before_model", request=empty, context={})
        assert empty == {
            "model": "m",
            "messages": [{"role": "system", "content": "Follow the policy."}],
        }


async def test_global_instruction_without_an_instruction_does_not_load() -> None:
    with pytest.raises(PluginLoadError, match=r"global_instruction needs config="):
        async with PluginHost(specs.AGENT) as host:
            await host.add("plugbox.plugins.global_instruction")


def lifecycle_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage().removeprefix("lifecycle: "))
        for r in caplog.records
        if r.name == "plugbox.plugin.logging"
    ]


async def test_the_logging_plugin_logs_start_and_end_with_durations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.plugin")
    ctx = {"invocation_id": "inv-7", "agent_name": "helper", "state": {}}
    agent = {"name": "helper"}
    async with PluginHost(specs.AGENT) as host:
        info = await host.add("plugbox.plugins.logging")
        assert info.problems == ()
        await host.call("before_agent", agent=agent, message={}, context=ctx)
        await host.call("before_model", request={"model": "m1", "messages": [{}, {}]}, context=ctx)
        await host.call("after_model", request={}, response={"tool_calls": [{}]}, context=ctx)
        tool_ctx = {**ctx, "tool_call_id": "call-1"}
        await host.call("before_tool", tool={"name": "calculator"}, args={}, context=tool_ctx)
        await host.call(
            "on_tool_error",
            tool={"name": "calculator"},
            args={},
            error={"type": "ZeroDivisionError", "message": "division by zero"},
            context=tool_ctx,
        )
        await host.call(
            "after_tool", tool={"name": "weather"}, args={}, result={}, context=ctx
        )  # no start seen for this one
        await host.call("after_agent", agent=agent, message={}, output={}, context=ctx)
    records = lifecycle_records(caplog)
    ms = r"after (\d+\.\d) ms"
    patterns = [
        (logging.INFO, r"agent helper started \(invocation inv-7\)"),
        (logging.INFO, r"model call of agent helper started \(model m1, 2 messages\)"),
        (logging.INFO, rf"model call of agent helper ended {ms} \(1 tool call\)"),
        (logging.INFO, r"tool calculator started \(agent helper, call call-1\)"),
        (logging.WARNING, rf"tool calculator failed {ms}: ZeroDivisionError: division by zero"),
        (logging.INFO, r"tool weather ended \(its start was not seen\)"),
        (logging.INFO, rf"agent helper ended {ms}"),
    ]
    assert len(records) == len(patterns), records
    durations = []
    for (level, message), (want_level, pattern) in zip(records, patterns, strict=True):
        match = re.fullmatch(pattern, message)
        assert level == want_level and match is not None, (level, message)
        durations.extend(float(d) for d in match.groups())
    assert len(durations) == 3 and all(d >= 0 for d in durations)
    # the agent's span encloses the model's and the tool's
    assert durations[2] >= durations[0] and durations[2] >= durations[1]


async def test_the_message_logger_logs_every_agent_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.plugin")
    # the worker runs as nobody when the tests run as root: pytest's tmp_path is under
    # directories only root may enter
    with tempfile.TemporaryDirectory(prefix="plugbox-test-") as directory:
        os.chmod(directory, 0o777)
        path = Path(directory) / "messages.jsonl"
        await log_some_messages(path)
        entries = [json.loads(line) for line in path.read_text().splitlines()]
    logged = [r.getMessage() for r in caplog.records if r.name == "plugbox.plugin.message-logger"]
    assert logged == [
        "message-logger: ready (writing JSON lines to " + str(path) + ")",
        "message-logger: #1 user: 2+2?",
        "message-logger: #2 model: [tool calls: calc({'a': 2})]",
        "message-logger: #3 tool calc: 4",
        "message-logger: #4 output: 4",
        "message-logger: closing after 4 messages",
    ]
    assert [(e["n"], e["hook"], e["invocation_id"]) for e in entries] == [
        (1, "on_user_message", "inv-9"),
        (2, "after_model", "inv-9"),
        (3, "after_tool", "inv-9"),
        (4, "after_run", "inv-9"),
    ]
    assert entries[2]["result"] == 4


async def log_some_messages(path: Path) -> None:
    ctx = {"invocation_id": "inv-9"}
    async with PluginHost(specs.AGENT) as host:
        # the plugin may write only in its scratch directory: make that the log's
        await host.add(
            "plugbox.plugins.message_logger",
            config={"path": str(path)},
            sandbox=Sandbox(scratch=str(path.parent)),
        )
        await host.call("on_user_message", message={"role": "user", "content": "2+2?"}, context=ctx)
        await host.call(
            "after_model",
            request={},
            context=ctx,
            response={"content": "", "tool_calls": [{"id": "c", "name": "calc", "args": {"a": 2}}]},
        )
        await host.call("after_tool", tool={"name": "calc"}, args={}, result=4, context=ctx)
        await host.call("after_run", message={}, output={"content": "4"}, context=ctx)


# ---------------------------------------------------------------- recipes
async def test_recipe_block_keyword_short_circuits_the_model() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(str(RECIPES / "block_keyword.py"), config={"keyword": "/deny"})
        await add(host, "model-side")
        blocked = {
            "messages": [
                {"role": "system", "content": "/deny is fine here"},
                {"role": "user", "content": "please /deny this"},
            ]
        }
        out = await host.call("before_model", request=blocked, context={})
        assert out.value["content"] == "Blocked by plugin policy." and out.called == ["policy"]
        allowed = {
            "messages": [
                {"role": "system", "content": "/deny is fine here"},
                {"role": "user", "content": "hello"},
            ]
        }
        out = await host.call("before_model", request=allowed, context={})
        assert out.value is None and out.called == ["policy", "model-side"]
        calls = calls_of((await history(host))["model-side"], "before_model")
        assert [c["request"] for c in calls] == [allowed]


async def test_recipe_tag_every_event() -> None:
    async with PluginHost(specs.AGENT) as host:
        await host.add(str(RECIPES / "tag_events.py"))
        tagged = {"id": "e1", "tags": ["audit"]}
        out = await host.call("on_event", event=tagged, context={})
        assert out.value is tagged and tagged["tags"] == ["audit", "plugin_demo"]
        await host.call("on_event", event=tagged, context={})
        assert tagged["tags"] == ["audit", "plugin_demo"]  # once
        bare: dict[str, Any] = {"id": "e2"}
        await host.call("on_event", event=bare, context={})
        assert bare == {"id": "e2", "tags": ["plugin_demo"]}
