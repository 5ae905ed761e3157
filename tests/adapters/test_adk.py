"""plugbox.adapters.adk against the real Google ADK: ADK's ``Runner`` (with in-memory
sessions) running an ``LlmAgent`` with a scripted model (a ``BaseLlm`` answering from a
list, tool calls included), a real function tool and real sandboxed plugins. Offline:
the model is local, so ADK never reaches the network or Google auth.

Shown here: a policy plugin blocking a request, a global instruction reaching the model
as ADK's system instruction, tool arguments rewritten before the tool runs, events
tagged (in ``Event.custom_metadata``, persisted with the session), every ADK callback
reaching its AGENT hook with the conventional shapes, returns and changes in place
applied back, and plugins that segfault or hang mid-run: the run goes on (``on_event``,
``after_run``: skipped) or fails with plugbox's typed error (fail closed); the cause
reported is the true one and the host serves the next run.

ADK is asyncio-only (its runner calls ``asyncio.create_task`` and uses asyncio queues
and events itself), so these tests run on asyncio only: the ``anyio_backend`` fixture
below pins it. The autouse leak check in conftest.py runs after each test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService, Session
from google.adk.tools import FunctionTool
from google.genai import types
from pydantic import Field

from plugbox import HookSet, HookSpec, Limits, PluginHost, Sandbox, SyncPluginHost, specs
from plugbox.adapters import _adk_convert as convert
from plugbox.adapters import adk
from plugbox.adapters._adk_request import RequestView
from plugbox.adapters.adk import PlugboxPlugin
from plugbox.errors import PluginCrashed, PluginFailure, PluginTimeout

pytestmark = [
    pytest.mark.anyio,
    # ADK 1.x only (the adapter's lower bound is tested too): building an ``App`` warns
    # that it is experimental, and a Runner given plugins through its ``App`` (the way
    # ADK asks for) still warns that the ``plugins`` argument is deprecated
    pytest.mark.filterwarnings(r"ignore:\[EXPERIMENTAL\] App:UserWarning"),
    pytest.mark.filterwarnings(r"ignore:The `plugins` argument is deprecated:DeprecationWarning"),
]

TESTS = Path(__file__).parents[1]
RECIPES = TESTS.parent / "examples" / "agent" / "plugins"
RECORDER = str(TESTS / "plugins" / "agent.py") + ":AgentRecorderPlugin"
TRIPWIRE = str(TESTS / "plugins" / "adk_tripwire.py")
EXAMPLE = TESTS.parent / "examples" / "adk" / "agent_run.py"
INSTRUCTION = "You must follow security policies."

#: the AGENT set plus ``history``, to ask the recorder plugin what it received.
HOOKS = HookSet(
    "agent-tests", [*specs.AGENT.values(), HookSpec(name="history", args=(), mode="collect")]
)


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: ADK drives asyncio directly (see the module docstring)."""
    return "asyncio"


# ---------------------------------------------------------------------- a scripted model
class ScriptedLlm(BaseLlm):
    """Answers from a list, one step per call: a str (its text; ``{tool}`` is replaced
    by the last function response in the request), a dict ``{"call", "args"}`` (a
    function call), or an exception to raise. Records what each call received."""

    model: str = "scripted-1"
    script: list[Any] = Field(default_factory=list)
    requests: list[dict[str, Any]] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        system = llm_request.config.system_instruction
        self.requests.append(
            {
                "system": system if isinstance(system, str) else convert.text_of(system),
                "texts": [convert.text_of(c) for c in llm_request.contents],
                "tools": [
                    d.name
                    for t in llm_request.config.tools or []
                    if isinstance(t, types.Tool)
                    for d in t.function_declarations or []
                ],
            }
        )
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, dict):
            part = types.Part(
                function_call=types.FunctionCall(
                    id=f"call-{len(self.requests)}", name=step["call"], args=step["args"]
                )
            )
        else:
            results = [
                p.function_response.response
                for c in llm_request.contents
                for p in c.parts or []
                if p.function_response is not None
            ]
            part = types.Part(text=step.replace("{tool}", str(results[-1] if results else "")))
        yield LlmResponse(
            content=types.Content(role="model", parts=[part]),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=1, candidates_token_count=1, total_token_count=2
            ),
        )


class Weather:
    """A real function tool (``weather(city, units)``) that records its calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

        def weather(city: str, units: str = "fahrenheit") -> dict[str, Any]:
            """The temperature in a city."""
            self.calls.append({"city": city, "units": units})
            celsius = {"Paris": 18, "Oslo": 7}.get(city, 20)
            value = celsius if units == "celsius" else round(celsius * 9 / 5 + 32)
            return {"city": city, "temperature": value, "units": units}

        self.tool = FunctionTool(func=weather)


def runner_for(host: PluginHost | SyncPluginHost, model: ScriptedLlm, weather: Weather) -> Runner:
    agent = LlmAgent(
        name="assistant", model=model, instruction="Answer briefly.", tools=[weather.tool]
    )
    app = App(name="plugbox_tests", root_agent=agent, plugins=[PlugboxPlugin(host)])
    return Runner(app=app, session_service=InMemorySessionService())


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def ask(runner: Runner, text: str) -> tuple[list[Event], Session]:
    """One run in a new session: its events, and the session as ADK stored it."""
    session = await runner.session_service.create_session(app_name=runner.app_name, user_id="user")
    events = [
        event
        async for event in adk.run_async(
            runner, user_id="user", session_id=session.id, new_message=user(text)
        )
    ]
    stored = await runner.session_service.get_session(
        app_name=runner.app_name, user_id="user", session_id=session.id
    )
    assert stored is not None
    return events, stored


def texts(events: list[Event]) -> list[str]:
    return [convert.text_of(e.content) for e in events if e.content and convert.text_of(e.content)]


async def history(host: PluginHost, name: str = "agent-recorder") -> list[list[Any]]:
    out = await host.call("history")
    calls: list[list[Any]] = {h["name"]: h["calls"] for h in out.value}[name]
    return calls


# ---------------------------------------------------------------------- the recipes
async def test_the_recipes_shape_a_real_adk_run() -> None:
    weather = Weather()
    model = ScriptedLlm(
        script=[
            {"call": "weather", "args": {"city": "Paris", "units": "fahrenheit"}},
            "The weather tool says: {tool}. (debug: api_key=sk-live-1234)",
        ]
    )
    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        await host.add(str(RECIPES / "block_keyword.py"), config={"keyword": "/deny"})
        await host.add(
            str(RECIPES / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await host.add(str(RECIPES / "redact.py"))
        await host.add(str(RECIPES / "tag_events.py"), config={"tag": "audited"})
        runner = runner_for(host, model, weather)

        events, session = await ask(runner, "What is the weather in Paris?")
        # the instruction reached the model as ADK's system instruction, in front of the
        # agent's own, on every model call
        assert len(model.requests) == 2
        for request in model.requests:
            assert request["system"].startswith(INSTRUCTION + "\n\nAnswer briefly.")
            assert request["tools"] == ["weather"]
        # the model asked for fahrenheit; the tool ran with the rewritten arguments
        assert weather.calls == [{"city": "Paris", "units": "celsius"}]
        # the model's answer leaked a key: after_model replaced the response
        assert texts(events)[-1] == (
            "The weather tool says: {'city': 'Paris', 'temperature': "
            "18, 'units': 'celsius'}. (debug: api_key=[redacted])"
        )
        # every event the run yielded is tagged, and so is every event ADK stored
        assert len(events) == 3
        assert all(e.custom_metadata == {"tags": ["audited"]} for e in events)
        stored = [e for e in session.events if e.author != "user"]
        assert [e.id for e in stored] == [e.id for e in events]
        assert all(e.custom_metadata == {"tags": ["audited"]} for e in stored)

        # a request carrying the keyword: the policy answers, the model is not called
        events, _ = await ask(runner, "/deny show me the admin password")
        assert texts(events) == ["Blocked by plugin policy."]
        assert len(model.requests) == 2
        assert events[-1].custom_metadata == {"tags": ["audited"]}
        await runner.close()
        assert not host.reports


async def test_the_builtin_logging_plugins_under_adk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.plugin")
    weather = Weather()
    model = ScriptedLlm(script=[{"call": "weather", "args": {"city": "Oslo"}}, "Cold: {tool}."])
    # the worker runs as nobody when the tests run as root: pytest's tmp_path is under
    # directories only root may enter
    with tempfile.TemporaryDirectory(prefix="plugbox-test-") as directory:
        os.chmod(directory, 0o777)
        path = Path(directory) / "messages.jsonl"
        async with PluginHost(specs.AGENT) as host:
            await host.add("plugbox.plugins.logging")
            # the plugin may write only in its scratch directory: make that the log's
            await host.add(
                "plugbox.plugins.message_logger",
                config={"path": str(path)},
                sandbox=Sandbox(scratch=directory),
            )
            runner = runner_for(host, model, weather)
            events, _ = await ask(runner, "Weather in Oslo?")
            await runner.close()
        entries = [json.loads(line) for line in path.read_text().splitlines()]
    answer = texts(events)[-1]
    assert [(e["hook"], e["invocation_id"]) for e in entries] == [
        (hook, events[0].invocation_id)
        for hook in ("on_user_message", "after_model", "after_tool", "after_model", "after_run")
    ]
    assert entries[0]["message"] == {"role": "user", "content": "Weather in Oslo?"}
    assert entries[1]["response"]["tool_calls"] == [
        {"id": "call-1", "name": "weather", "args": {"city": "Oslo"}}
    ]
    assert entries[2]["result"] == {"city": "Oslo", "temperature": 45, "units": "fahrenheit"}
    assert entries[4]["output"] == {"role": "assistant", "content": answer}
    lifecycle = [r.getMessage() for r in caplog.records if r.name == "plugbox.plugin.logging"]
    for what in ("agent assistant", "model call of agent assistant", "tool weather"):
        assert any(m.startswith(f"lifecycle: {what} started") for m in lifecycle), what
        assert any(m.startswith(f"lifecycle: {what} ended after ") for m in lifecycle), what


# ---------------------------------------------------------------------- every callback
async def test_every_adk_callback_reaches_its_agent_hook() -> None:
    weather = Weather()
    model = ScriptedLlm(script=[{"call": "weather", "args": {"city": "Oslo"}}, "Cold: {tool}."])
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER)
        runner = runner_for(host, model, weather)
        events, _ = await ask(runner, "Weather in Oslo?")
        calls = await history(host)
        await runner.close()

    hooks = [hook for hook, _ in calls]
    assert hooks == [
        "on_user_message",
        "before_run",
        "before_agent",
        "before_model",
        "after_model",
        "on_event",
        "before_tool",
        "after_tool",
        "on_event",
        "before_model",
        "after_model",
        "on_event",
        "after_agent",
        "after_run",
    ]
    args = dict(calls[:5])  # the first call of each hook up to after_model
    invocation = events[0].invocation_id
    assert args["on_user_message"]["message"] == {"role": "user", "content": "Weather in Oslo?"}
    context = args["before_run"]["context"]
    assert context["invocation_id"] == invocation and context["agent_name"] == "assistant"
    assert context["state"] == {} and context["user_id"] == "user"
    assert args["before_agent"]["agent"]["name"] == "assistant"
    request = args["before_model"]["request"]
    assert request["model"] == "scripted-1"
    assert request["messages"] == [
        {
            "role": "system",
            "content": 'Answer briefly.\n\nYou are an agent. Your internal name is "assistant".',
        },
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    assert [t["name"] for t in request["tools"]] == ["weather"]
    assert "city" in request["tools"][0]["parameters"]["properties"]
    assert args["after_model"]["response"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call-1", "name": "weather", "args": {"city": "Oslo"}}],
    }
    assert args["after_model"]["request"] == request
    tool_calls = [a for h, a in calls if h in ("before_tool", "after_tool")]
    assert all(
        a["tool"]["name"] == "weather"
        and a["args"] == {"city": "Oslo"}
        and a["context"]["tool_call_id"] == "call-1"
        for a in tool_calls
    )
    assert tool_calls[1]["result"] == {"city": "Oslo", "temperature": 45, "units": "fahrenheit"}
    # the second model call sees the tool's turn as messages of the conventional shapes
    second = [a for h, a in calls if h == "before_model"][1]["request"]["messages"]
    assert second[2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call-1", "name": "weather", "args": {"city": "Oslo"}}],
        },
        {
            "role": "tool",
            "tool_call_id": "call-1",
            "name": "weather",
            "content": {"city": "Oslo", "temperature": 45, "units": "fahrenheit"},
        },
    ]
    seen = [a["event"] for h, a in calls if h == "on_event"]
    assert [e["type"] for e in seen] == ["tool_call", "tool_result", "model_response"]
    assert [e["id"] for e in seen] == [e.id for e in events]
    assert seen[2]["content"] == texts(events)[-1] and seen[2]["final"] is True
    final = {"role": "assistant", "content": texts(events)[-1]}
    after_agent, after_run = calls[-2][1], calls[-1][1]
    assert after_agent["output"] == final and after_run["output"] == final
    assert after_run["message"] == {"role": "user", "content": "Weather in Oslo?"}


async def test_returns_and_changes_in_place_are_applied_to_adk() -> None:
    weather = Weather()
    model = ScriptedLlm(script=[{"call": "weather", "args": {"city": "Paris"}}, "Done: {tool}."])
    config = {
        "mutate": {
            # changes in place: the user message ADK stores, the run's state
            # (state: before the agent runs, ADK has no state delta; in a callback context
            # it has. A key the plugin's new state lacks is not removed.)
            "on_user_message": {
                "message": {"content": "Weather in Paris, politely?"},
                "context": {"state": {"greeted": True}},
            },
            "before_model": {"context": {"state": {"model_calls_seen": 1}}},
            # a tool result changed in place: the model gets it
            "after_tool": {"result": {"checked": True}},
        },
        # a return: the tool's result, the tool is not called
        "returns": {"before_tool": {"city": "Paris", "temperature": -1, "source": "plugin"}},
    }
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config=config)
        runner = runner_for(host, model, weather)
        events, session = await ask(runner, "Weather in Paris?")
        await runner.close()

    assert weather.calls == []
    assert model.requests[0]["texts"] == ["Weather in Paris, politely?"]
    assert session.events[0].author == "user"
    assert convert.text_of(session.events[0].content) == "Weather in Paris, politely?"
    assert texts(events)[-1] == (
        "Done: {'city': 'Paris', 'temperature': -1, 'source': 'plugin', 'checked': True}."
    )
    assert session.state == {"greeted": True, "model_calls_seen": 1}


async def test_short_circuits_before_the_run_and_the_agent() -> None:
    weather = Weather()
    model = ScriptedLlm(script=[])
    async with PluginHost(HOOKS) as host:
        await host.add(
            RECORDER,
            config={
                "returns": {
                    "before_run": {"role": "assistant", "content": "Closed for maintenance."}
                }
            },
        )
        runner = runner_for(host, model, weather)
        events, _ = await ask(runner, "hi")
        assert texts(events) == ["Closed for maintenance."]
        hooks = [hook for hook, _ in await history(host)]
        assert "before_agent" not in hooks and "before_model" not in hooks

        await host.remove("agent-recorder")
        await host.add(RECORDER, config={"returns": {"before_agent": "Not today."}})
        events, _ = await ask(runner, "hi")
        assert texts(events) == ["Not today."]
        assert model.requests == []
        await runner.close()


async def test_a_model_error_answered_by_a_plugin() -> None:
    weather = Weather()
    model = ScriptedLlm(script=[ConnectionError("model unreachable")])
    async with PluginHost(HOOKS) as host:
        await host.add(
            RECORDER,
            config={"returns": {"on_model_error": {"content": "The model is down; try later."}}},
        )
        runner = runner_for(host, model, weather)
        events, _ = await ask(runner, "hi")
        calls = await history(host)
        await runner.close()
    assert texts(events) == ["The model is down; try later."]
    error = next(a for h, a in calls if h == "on_model_error")["error"]
    assert error == {"type": "ConnectionError", "message": "model unreachable"}


# ---------------------------------------------------------------------- failures
async def test_a_fail_closed_plugin_that_crashes_or_hangs_fails_the_run_typed() -> None:
    weather = Weather()
    model = ScriptedLlm(
        script=[
            {"call": "weather", "args": {"city": "Atlantis"}},
            {"call": "weather", "args": {"city": "Paris"}},
            "Fine: {tool}.",
        ]
    )
    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        await host.add(TRIPWIRE, limits=Limits(call_timeout=0.5))
        runner = runner_for(host, model, weather)

        # before_model segfaults: the run raises PluginCrashed, the model is not called
        with pytest.raises(PluginCrashed) as crashed:
            await ask(runner, "please segfault")
        report = crashed.value.report
        assert (report.cause, report.signal, report.hook, report.plugin) == (
            "crashed",
            "SIGSEGV",
            "before_model",
            "tripwire",
        )
        assert model.requests == []

        # what ADK itself raises: its RuntimeError, with the typed failure as the cause
        session = await runner.session_service.create_session(
            app_name=runner.app_name, user_id="user"
        )
        with pytest.raises(RuntimeError) as wrapped:
            async for _ in runner.run_async(
                user_id="user", session_id=session.id, new_message=user("segfault again")
            ):
                pass
        assert not isinstance(wrapped.value, PluginFailure)
        assert isinstance(wrapped.value.__cause__, PluginCrashed)
        assert adk.plugin_failure_in(wrapped.value) is wrapped.value.__cause__

        # before_tool hangs past its call_timeout: PluginTimeout, the tool never runs
        with pytest.raises(PluginTimeout) as timed_out:
            await ask(runner, "Weather in Atlantis?")
        report = timed_out.value.report
        assert (report.cause, report.hook, report.plugin) == ("timeout", "before_tool", "tripwire")
        assert weather.calls == []

        # the host serves on: the tripwire's restarted worker takes part in the next run
        events, _ = await ask(runner, "Weather in Paris?")
        assert texts(events)[-1].startswith("Fine: {'city': 'Paris'")
        assert weather.calls == [{"city": "Paris", "units": "fahrenheit"}]
        assert model.requests[-1]["system"].startswith(INSTRUCTION)
        info = {p.name: p for p in host.plugins}["tripwire"]
        assert info.state == "running" and info.restarts == 3
        assert [r.cause for r in host.reports] == ["crashed", "crashed", "timeout"]
        await runner.close()


async def test_observe_and_skip_hooks_that_crash_or_hang_let_the_run_go_on() -> None:
    weather = Weather()
    model = ScriptedLlm(
        script=[{"call": "weather", "args": {"city": "Oslo"}}, "Brr: {tool}.", "Still here."]
    )
    async with PluginHost(specs.AGENT) as host:
        await host.add(TRIPWIRE, config={"events": True}, limits=Limits(call_timeout=0.5))
        await host.add(str(RECIPES / "tag_events.py"))
        runner = runner_for(host, model, weather)

        # on_event segfaults on the tool result, after_run hangs: the run completes
        events, session = await ask(runner, "Weather in Oslo? (and linger)")
        assert [convert.event_type(e) for e in events] == [
            "tool_call",
            "tool_result",
            "model_response",
        ]
        assert texts(events)[-1].startswith("Brr: {'city': 'Oslo'")
        # the event the crashed plugin got went on to the next plugin, tagged, and ADK
        # stored it
        assert all(e.custom_metadata == {"tags": ["plugin_demo"]} for e in events)
        assert [e.id for e in session.events if e.author != "user"] == [e.id for e in events]
        causes = [(r.hook, r.cause) for r in host.reports]
        assert causes == [("on_event", "crashed"), ("after_run", "timeout")]
        assert host.reports[0].signal == "SIGSEGV"

        # and the host serves on
        events, _ = await ask(runner, "Thanks!")
        assert texts(events) == ["Still here."]
        assert events[0].custom_metadata == {"tags": ["plugin_demo"]}
        assert len(host.reports) == 2
        await runner.close()


# ---------------------------------------------------------------------- the sync runner
def test_adk_blocking_runner_with_a_sync_host() -> None:
    weather = Weather()
    model = ScriptedLlm(script=["Hello."])
    with SyncPluginHost(specs.AGENT) as host:
        host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        runner = runner_for(host, model, weather)
        session = runner.session_service.create_session_sync(
            app_name=runner.app_name, user_id="user"
        )
        events = list(runner.run(user_id="user", session_id=session.id, new_message=user("hi")))
    assert texts(events) == ["Hello."]
    assert model.requests[0]["system"].startswith(INSTRUCTION)


async def test_a_plugin_host_on_another_loop_is_refused_clearly() -> None:
    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        runner = runner_for(host, ScriptedLlm(script=["Hello."]), Weather())
        session = await runner.session_service.create_session(
            app_name=runner.app_name, user_id="user"
        )

        def elsewhere() -> None:  # as ADK's Runner.run does: a loop of its own, in a thread
            async def drain() -> None:
                async for _ in runner.run_async(
                    user_id="user", session_id=session.id, new_message=user("hi")
                ):
                    pass

            asyncio.run(drain())

        with pytest.raises(RuntimeError) as refused:
            await anyio.to_thread.run_sync(elsewhere)
        assert "lives on another event loop" in str(refused.value.__cause__)
        await runner.close()


# ---------------------------------------------------------------------- conversions
def _request(contents: list[types.Content], system: Any = "Be brief.") -> LlmRequest:
    declaration = types.FunctionDeclaration(name="weather", description="w")
    other = types.FunctionDeclaration(name="stocks", description="s")
    return LlmRequest(
        model="m",
        contents=contents,
        config=types.GenerateContentConfig(
            system_instruction=system,
            tools=[types.Tool(function_declarations=[declaration, other])],
        ),
    )


def test_an_unchanged_request_is_left_as_it_was() -> None:
    image = types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG"))
    contents = [types.Content(role="user", parts=[types.Part(text="look"), image])]
    request = _request(contents)
    view = RequestView(request)
    assert view.data["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "look"},
    ]
    assert view.apply(request, view.data) == []
    assert request.contents[0] is contents[0]


def test_request_changes_keep_what_plain_data_cannot_say() -> None:
    image = types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG"))
    call = types.Part(function_call=types.FunctionCall(id="c1", name="weather", args={}))
    reply = types.Part(
        function_response=types.FunctionResponse(id="c1", name="weather", response={"t": 1})
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text="look"), image]),
        types.Content(role="model", parts=[call]),
        types.Content(role="user", parts=[reply]),
    ]
    request = _request(contents)
    view = RequestView(request)
    new = view.data
    new["messages"][0]["content"] = "Rules.\n\n" + new["messages"][0]["content"]
    new["messages"][1]["content"] = "look closely"  # changed text, same image
    new["messages"].append({"role": "user", "content": "and?"})  # a new message
    new["tools"] = [t for t in new["tools"] if t["name"] == "weather"]
    assert view.apply(request, new) == ["system", "messages", "tools"]
    assert request.config.system_instruction == "Rules.\n\nBe brief."
    first = request.contents[0]
    assert first.role == "user" and first.parts is not None
    assert [p.text for p in first.parts] == [None, "look closely"]
    assert first.parts[0].inline_data is not None
    assert request.contents[1] is contents[1] and request.contents[2] is contents[2]
    assert request.contents[3] == types.Content(role="user", parts=[types.Part(text="and?")])
    assert request.config.tools is not None
    assert [d.name for t in request.config.tools for d in t.function_declarations or []] == [
        "weather"
    ]


def test_a_system_instruction_added_where_there_was_none() -> None:
    request = _request([types.Content(role="user", parts=[types.Part(text="hi")])], system=None)
    view = RequestView(request)
    assert view.data["messages"] == [{"role": "user", "content": "hi"}]
    view.data["messages"].insert(0, {"role": "system", "content": INSTRUCTION})
    assert view.apply(request, view.data) == ["system"]
    assert request.config.system_instruction == INSTRUCTION


def test_responses_and_events_as_plain_data_and_back() -> None:
    response = convert.llm_response_of(
        {"content": "hi", "tool_calls": [{"id": "c9", "name": "weather", "args": {"city": "Oslo"}}]}
    )
    assert convert.response_of(response) == {
        "role": "assistant",
        "content": "hi",
        "tool_calls": [{"id": "c9", "name": "weather", "args": {"city": "Oslo"}}],
    }
    event = Event(
        author="assistant",
        invocation_id="i",
        content=types.Content(role="model", parts=[types.Part(text="hello")]),
        custom_metadata={"tags": ["a"], "mine": 1},
    )
    view = convert.EventView(event)
    assert (view.data["type"], view.data["content"], view.data["tags"]) == (
        "model_response",
        "hello",
        ["a"],
    )
    view.data["tags"].append("b")
    view.data["content"] = "hello!"
    assert view.apply(event, view.data) == ["tags", "content"]
    assert event.custom_metadata == {"tags": ["a", "b"], "mine": 1}
    assert convert.text_of(event.content) == "hello!"
    assert convert.plain({"n": 2**70, "s": {1}, "t": (1, 2)}) == {
        "n": str(2**70),
        "s": [1],
        "t": [1, 2],
    }


def test_plugin_failures_are_found_behind_wrappers_and_others_pass() -> None:
    from plugbox.reports import FailureReport

    failure = PluginCrashed(
        FailureReport(plugin="p", version="1", hook="before_model", cause="crashed", detail="died")
    )
    try:
        try:
            raise failure
        except PluginCrashed as exc:
            raise RuntimeError("Error in plugin 'plugbox'") from exc
    except RuntimeError as exc:
        group = ExceptionGroup("tools", [ValueError("x"), exc])
    assert adk.plugin_failure_in(group) is failure
    assert adk.plugin_failure_in(ValueError("x")) is None
    with pytest.raises(PluginCrashed), adk.unwrap_plugin_failures():
        raise group
    with pytest.raises(KeyError), adk.unwrap_plugin_failures():
        raise KeyError("not a plugin failure")


# ---------------------------------------------------------------------- the example
def test_the_adk_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for shown in [
        "system instruction 'You must follow security policies.\\n\\nAnswer briefly.",
        "event from assistant: result {'city': 'Paris', 'temperature': 18, 'units': "
        "'celsius'}; custom_metadata {'tags': ['plugin_demo']}",
        "=> Blocked by plugin policy. (model calls in this run: 0)",
        "=> 6 times 7 is {'result': 42}. (debug: api_key=[redacted])",
        "=> the run raised PluginCrashed: plugin 'misbehaving' in before_model, crashed by SIGABRT",
        "=> You're welcome.",
    ]:
        assert shown in out, shown
    assert "expectation" not in out
