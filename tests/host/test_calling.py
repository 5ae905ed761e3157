"""Hook semantics across real workers: the four modes, mutable and opt-in arguments,
sync and async hooks, many calls in flight, plugin output and logging, and closing.

Every test runs on asyncio and trio with the zygote launcher; the autouse leak check
in conftest.py verifies that no worker, zombie or fd outlives a test. Plugins record
the calls they receive (the ``history`` hook), so "not called" is asked, not assumed.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from plugbox import HookSet, HookSpec, Limits, Outcome, PluginHost, specs
from plugbox.errors import PluginRaised

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
SCRIPTED = str(PLUGINS / "scripted.py")
CHATTY = str(PLUGINS / "chatty.py")
CHAPTER = str(PLUGINS / "chapter.py")

HOOKS = HookSet(
    "calling-tests",
    [
        HookSpec(name="pick", args=("query",), mode="first_result"),
        HookSpec(name="transform", args=("text", "note"), mode="chain"),
        HookSpec(name="gather", args=("item",), mode="collect"),
        HookSpec(name="notice", args=("event",), mode="observe"),
        HookSpec(
            name="edit",
            args=("doc", "meta", "tags"),
            mode="collect",
            mutable=frozenset({"doc", "tags"}),
        ),
        HookSpec(name="history", args=(), mode="collect"),
    ],
)


def ref(cls: str) -> str:
    return f"{SCRIPTED}:{cls}"


async def add(host: PluginHost, cls: str, name: str, **config: Any) -> None:
    await host.add(ref(cls), config={"name": name, **config})


async def history(host: PluginHost) -> dict[str, list[Any]]:
    """Every plugin's recorded calls, by plugin name."""
    out = await host.call("history")
    return {h["name"]: h["calls"] for h in out.value}


# ---------------------------------------------------------------- first_result
async def test_first_result_stops_at_the_first_non_none_in_registration_order() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "silent")
        await add(host, "AsyncScriptedPlugin", "answers-q", answers={"q": "from answers-q"})
        await add(
            host,
            "ScriptedPlugin",
            "answers-both",
            answers={"q": "from answers-both", "r": "r from answers-both"},
        )

        out = await host.call("pick", query="q")
        assert out.value == "from answers-q"
        assert out.called == ["silent", "answers-q"]  # answers-both was not asked

        out = await host.call("pick", query="r")  # None falls through to the last
        assert out.value == "r from answers-both"
        assert out.called == ["silent", "answers-q", "answers-both"]

        out = await host.call("pick", query="nobody knows")
        assert out.value is None
        assert out.called == ["silent", "answers-q", "answers-both"]

        calls = await history(host)
        assert calls["silent"] == [["pick", "q"], ["pick", "r"], ["pick", "nobody knows"]]
        assert calls["answers-q"] == [["pick", "q"], ["pick", "r"], ["pick", "nobody knows"]]
        assert calls["answers-both"] == [["pick", "r"], ["pick", "nobody knows"]]


async def test_first_result_follows_the_order_of_adding() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "b-added-first", answers={"q": "b"})
        await add(host, "ScriptedPlugin", "a-added-second", answers={"q": "a"})
        out = await host.call("pick", query="q")
        assert (out.value, out.called) == ("b", ["b-added-first"])
        assert (await history(host))["a-added-second"] == []


# ---------------------------------------------------------------- chain
async def test_chain_feeds_each_result_to_the_next_and_none_passes_the_input_on() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "a", suffix="-a")
        await add(host, "AsyncScriptedPlugin", "none")  # returns None
        await add(host, "AsyncScriptedPlugin", "c", suffix="-c")
        await add(host, "ScriptedPlugin", "d", suffix="-d")

        out = await host.call("transform", text="x", note="n")
        assert out.value == "x-a-c-d"
        assert out.args == {"text": "x-a-c-d", "note": "n"}
        assert out.called == ["a", "none", "c", "d"]
        calls = await history(host)
        assert calls["none"] == [["transform", "x-a"]]
        assert calls["c"] == [["transform", "x-a"]]  # the input None passed on
        assert calls["d"] == [["transform", "x-a-c"]]


async def test_chain_where_nobody_changes_anything_returns_the_input() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "quiet")
        out = await host.call("transform", text="as is", note="")
        assert (out.value, out.called) == ("as is", ["quiet"])


async def test_pipeline_process_is_a_chain_of_chapter_plugins() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{CHAPTER}:UppercasePlugin", config={"suffix": "?"})
        await host.add(f"{CHAPTER}:ExclaimPlugin")
        out = await host.call("process", input_data="ready")
        assert out.value == "READY?!" and out.called == ["uppercase", "exclaim"]
        # post_process is an observe hook that only ExclaimPlugin implements
        post = await host.call("post_process", input_data="ready", output=out.value)
        assert post.value is None and post.called == ["exclaim"] and not post.failures
    async with PluginHost(specs.PIPELINE) as host:  # the other order, the other result
        await host.add(f"{CHAPTER}:ExclaimPlugin")
        await host.add(f"{CHAPTER}:UppercasePlugin", config={"suffix": "?"})
        assert (await host.call("process", input_data="ready")).value == "READY!?"


# ---------------------------------------------------------------- collect
async def test_collect_lists_the_non_none_results_in_order() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "AsyncScriptedPlugin", "one")
        await add(host, "ScriptedPlugin", "two", gather="none")
        await add(host, "ScriptedPlugin", "three")
        await add(host, "PartialArgs", "no-args")  # gather() takes no argument at all
        out = await host.call("gather", item=7)
        assert out.value == ["one:7", "three:7", "no arguments needed"]
        assert out.called == ["one", "two", "three", "no-args"]


async def test_collect_failure_raises_by_default_and_stops_the_call() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "one")
        await add(host, "ScriptedPlugin", "refuser", gather="raise")
        await add(host, "ScriptedPlugin", "three")
        with pytest.raises(PluginRaised) as info:
            await host.call("gather", item=1)
        report = info.value.report
        assert (report.plugin, report.hook, report.exc_type) == (
            "refuser",
            "gather",
            "RuntimeError",
        )
        assert report.exc_message == "refuser refuses to gather 1"
        assert (await history(host))["three"] == []


async def test_collect_failure_with_skip_is_recorded_and_the_call_goes_on() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "one")
        await host.add(
            ref("ScriptedPlugin"), config={"name": "refuser", "gather": "raise"}, on_failure="skip"
        )
        await add(host, "ScriptedPlugin", "three")
        out = await host.call("gather", item=1)
        assert out.value == ["one:1", "three:1"]
        assert out.called == ["one", "three"]
        (report,) = out.failures
        assert (report.plugin, report.cause, report.exc_type) == (
            "refuser",
            "raised",
            "RuntimeError",
        )
        assert host.reports == [report]


# ---------------------------------------------------------------- observe
async def test_observe_runs_plugins_concurrently() -> None:
    # "holder" is added first and its notice does not return until released; "other"
    # answers pick("noticed?") only once its own notice has run. Run one after the
    # other, that pick would wait forever (call_timeout ends the test with a failure).
    async with PluginHost(HOOKS) as host:
        await add(host, "GatedPlugin", "holder", hold=True)
        await host.add(ref("GatedPlugin"), config={"name": "other"}, limits=Limits(call_timeout=5))
        observed: list[Outcome] = []

        async def observe() -> None:
            observed.append(await host.call("notice", event="deploy"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(observe)
            out = await host.call("pick", query="noticed?")
            assert out.value == "other was noticed"
            assert observed == []  # holder is still inside its notice
            assert (await host.call("pick", query="release")).value == "released"
        (outcome,) = observed
        assert outcome.value is None and not outcome.failures
        # in the order they were added, though "other" finished first
        assert outcome.called == ["holder", "other"]
        calls = await history(host)
        assert calls["holder"] == [["notice", "deploy"], ["notice done", "deploy"]]
        assert calls["other"] == [["notice", "deploy"], ["notice done", "deploy"]]


async def test_a_cancelled_observe_cancels_the_hook_in_every_plugin() -> None:
    # the call goes to every plugin before any reply is read: when the caller gives up,
    # each plugin's worker is told, not only the one whose reply was being read
    async with PluginHost(HOOKS) as host:
        for name in ("s1", "s2", "s3"):
            await add(host, "StuckPlugin", name)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(host.call, "notice", event="e"))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        calls = await history(host)  # (a worker runs it after the cancelled hook ends)
        assert calls == {
            name: [["notice", "e"], ["notice cancelled", "e"]] for name in ("s1", "s2", "s3")
        }
        for plugin in host._plugins:  # no call is left waiting for a reply
            assert plugin.worker is not None and plugin.worker.alive
            assert not plugin.worker._pending


async def test_an_observe_plugin_past_its_deadline_is_killed_while_another_is_read() -> None:
    # "holder" (added first) is read first and holds; "stuck" never answers. Its
    # deadline must end it when it passes, not when the reading gets to it.
    async with PluginHost(HOOKS) as host:
        await add(host, "GatedPlugin", "holder", hold=True)
        await host.add(
            ref("StuckPlugin"),
            config={"name": "stuck"},
            limits=Limits(call_timeout=0.5, backoff_initial=0),
        )
        stuck = host._find("stuck")
        observed: list[Outcome] = []

        async def observe() -> None:
            observed.append(await host.call("notice", event="deploy"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(observe)
            assert stuck.worker is not None
            with anyio.fail_after(30):  # (it would wait for the holder's release)
                cause, _, _ = await stuck.worker.wait_verdict()
            assert cause == "timeout" and observed == []  # the holder still holds
            assert (await host.call("pick", query="release")).value == "released"
        (outcome,) = observed
        assert outcome.called == ["holder"]
        (report,) = outcome.failures
        assert (report.plugin, report.cause) == ("stuck", "timeout")
        assert "notice did not answer within 0.5 s" in report.detail


async def test_observe_failures_come_in_the_order_the_plugins_were_added() -> None:
    # "stuck" is quarantined after its first timeout: in the next call its failure is
    # known as the calls are sent, before "raiser"'s is read, and still comes second
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "raiser", notice="raise")
        await host.add(
            ref("StuckPlugin"),
            config={"name": "stuck"},
            limits=Limits(call_timeout=0.5, max_failures=1),
        )
        first = await host.call("notice", event="e")
        assert [(r.plugin, r.cause) for r in first.failures] == [
            ("raiser", "raised"),
            ("stuck", "timeout"),
        ]
        second = await host.call("notice", event="e")
        assert [(r.plugin, r.cause) for r in second.failures] == [
            ("raiser", "raised"),
            ("stuck", "quarantined"),
        ]
        assert first.called == second.called == []


async def test_observe_failures_are_recorded_not_raised() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "first")
        await add(host, "ScriptedPlugin", "grumpy", notice="raise")
        await add(host, "ScriptedPlugin", "last")
        pid = host.plugins[1].pid
        out = await host.call("notice", event="e1")
        assert out.value is None
        assert sorted(out.called) == ["first", "last"]
        (report,) = out.failures
        assert (report.plugin, report.hook, report.cause) == ("grumpy", "notice", "raised")
        assert (report.exc_type, report.exc_message) == ("ValueError", "grumpy cannot stand e1")
        assert host.reports == [report]
        calls = await history(host)  # every plugin ran; grumpy's worker lives on
        assert calls["first"] == calls["last"] == [["notice", "e1"]]
        assert calls["grumpy"] == []
        assert host.plugins[1].pid == pid


async def test_observe_failure_with_raise_policy_raises_after_all_ran() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(
            ref("ScriptedPlugin"), config={"name": "strict", "notice": "raise"}, on_failure="raise"
        )
        await add(host, "ScriptedPlugin", "after")
        with pytest.raises(PluginRaised) as info:
            await host.call("notice", event="e")
        assert info.value.report.plugin == "strict"
        assert (await history(host))["after"] == [["notice", "e"]]


# ---------------------------------------------------------------- arguments
async def test_mutable_arguments_changed_in_place_reach_the_next_plugin_and_the_caller() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "ScriptedPlugin", "one")
        await add(host, "AsyncScriptedPlugin", "two")  # edit is sync on both
        doc: dict[str, Any] = {"title": "t"}
        meta = {"k": 1}
        tags = ["start"]
        out = await host.call("edit", doc=doc, meta=meta, tags=tags)
        # what each plugin saw: two sees one's changes to doc and tags, not to meta
        assert out.value == [
            {"doc": {"title": "t"}, "meta": {"k": 1}, "tags": ["start"]},
            {"doc": {"title": "t", "seen": ["one"]}, "meta": {"k": 1}, "tags": ["start", "one"]},
        ]
        # the caller's own objects were updated in place
        assert doc == {"title": "t", "seen": ["one", "two"]}
        assert tags == ["start", "one", "two"]
        assert out.args["doc"] is doc and out.args["tags"] is tags
        # meta is not mutable: plugins changed their copies, the caller's is untouched
        assert meta == {"k": 1} and out.args["meta"] is meta


async def test_plugins_receive_only_the_arguments_they_name() -> None:
    async with PluginHost(HOOKS) as host:
        await add(host, "PartialArgs", "partial")
        await add(host, "AllArgs", "all-args")
        out = await host.call("transform", text="x", note="n")
        assert out.value == "x" and out.called == ["partial", "all-args"]
        doc: dict[str, Any] = {}
        out = await host.call("edit", doc=doc, meta={"m": 1}, tags=[])
        assert out.called == ["partial", "all-args"]
        calls = await history(host)
        assert calls["partial"] == [["transform", {"note": "n"}], ["edit", {"meta": {"m": 1}}]]
        assert calls["all-args"] == [
            ["transform", {"text": "x", "note": "n"}],
            ["edit", {"doc": {}, "meta": {"m": 1}, "tags": []}],
        ]
        # a change made through **kwargs to a mutable argument reaches the caller too
        assert doc == {"kwargs_was_here": True}
        hooks = {p.name: set(p.hooks) for p in host.plugins}
        assert hooks == {
            "partial": {"transform", "edit", "gather", "history"},
            "all-args": {"transform", "edit", "history"},
        }


async def test_a_return_value_with_a_tuple_key_is_the_plugins_error() -> None:
    # msgpack packs a tuple key (as an array) that the host cannot decode: the worker
    # must refuse it as the plugin's TypeError, not send a frame that gets it killed
    async with PluginHost(HOOKS) as host:
        await add(host, "BadReturnPlugin", "bad-return")
        pid = host.plugins[0].pid
        with pytest.raises(PluginRaised) as info:
            await host.call("gather", item="tuple-key")
        assert info.value.report.exc_type == "TypeError"
        assert (await host.call("gather", item="fine")).value == ["fine"]
        assert host.plugins[0].pid == pid


# ---------------------------------------------------------------- many calls in flight
async def test_fifty_concurrent_calls_on_one_worker_each_get_their_own_answer(behave: str) -> None:
    async with PluginHost(specs.PIPELINE, on_failure="raise") as host:
        info = await host.add(f"{behave}:AsyncBehave")
        answers: dict[int, Any] = {}

        async def one(i: int) -> None:
            # replies come back out of order: the delays are the plugin's, not a sync
            data = {"value": i, "delay": (i * 7 % 10) / 200}
            if i % 5 == 3:
                data.update(do="raise", arg=f"call {i}")
                with pytest.raises(PluginRaised) as exc:
                    await host.call("process", input_data=data)
                answers[i] = exc.value.report.exc_message
            else:
                answers[i] = (await host.call("process", input_data=data)).value

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        assert answers == {i: (f"'call {i}'" if i % 5 == 3 else i) for i in range(50)}
        assert host.plugins[0].calls == 50 and host.plugins[0].pid == info.pid
        assert len(host.reports) == 10


# ---------------------------------------------------------------- output and logging
def records_of(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == f"plugbox.plugin.{name}"
    ]


async def test_plugin_logging_arrives_under_the_plugins_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.plugin")
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(CHATTY)
        out = await host.call("process", input_data="hello")
        assert out.value == {"echo": "hello", "by": "chatty"}
        # records travel on the channel ahead of the reply: all here when it returns
        logged = [
            (lvl, msg) for lvl, msg in records_of(caplog, "chatty") if msg.startswith("chatty: ")
        ]
        assert logged == [
            (logging.WARNING, "chatty: chatty initialized"),
            (logging.INFO, "chatty: info record: hello"),
            (logging.WARNING, "chatty: warning record: hello"),
        ]


async def test_plugin_stdout_and_stderr_go_to_its_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.plugin")
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(CHATTY, config={"name": "talker"})
        for word in ("one", "two"):
            out = await host.call("process", input_data=word)
            assert out.value == {"echo": word, "by": "talker"}  # the channel is intact
    # the output pipes are drained by the time the host has closed the worker
    output = [
        (lvl, msg) for lvl, msg in records_of(caplog, "talker") if not msg.startswith("chatty: ")
    ]
    assert [msg for lvl, msg in output if lvl == logging.INFO] == [
        "stdout line from talker: one",
        "raw bytes on fd 1",
        # the unterminated write joins the next line
        "no newline at the endstdout line from talker: two",
        "raw bytes on fd 1",
        "no newline at the end",
    ]  # flushed at exit
    assert [msg for lvl, msg in output if lvl == logging.WARNING] == [
        "stderr line from talker",
        "stderr line from talker",
    ]


async def test_an_output_flood_does_not_disturb_the_channel(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave)
        assert (
            await host.call("process", input_data={"do": "flood", "arg": 5000})
        ).value == "flooded"
        out = await host.call("process", input_data={"do": "echo", "n": 1})
        assert out.value == {"do": "echo", "n": 1}
        assert host.reports == []


# ---------------------------------------------------------------- closing
async def test_plugins_close_in_reverse_order_of_adding(caplog: pytest.LogCaptureFixture) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        for name in ("first", "second", "third"):
            await host.add(CHATTY, config={"name": name})
    closing = [
        (r.name, r.getMessage()) for r in caplog.records if r.getMessage().endswith(" closing")
    ]
    assert closing == [
        ("plugbox.plugin.third", "chatty: third closing"),
        ("plugbox.plugin.second", "chatty: second closing"),
        ("plugbox.plugin.first", "chatty: first closing"),
    ]
    assert [p.state for p in host.plugins] == ["closed"] * 3


async def test_a_plugin_whose_close_hangs_is_killed_and_the_others_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(CHATTY, config={"name": "first"})
        hanging = await host.add(
            CHATTY,
            config={"name": "hanging", "hang_on_close": True},
            limits=Limits(close_timeout=0.3),
        )
        await host.add(CHATTY, config={"name": "third"})
    closing = [r.getMessage() for r in caplog.records if r.getMessage().endswith(" closing")]
    assert closing == ["chatty: third closing", "chatty: hanging closing", "chatty: first closing"]
    assert hanging.pid is not None and not psutil.pid_exists(hanging.pid)
