"""plugbox.adapters.openai_agents against the real OpenAI Agents SDK: ``Runner.run`` with
a scripted model (an ``agents.Model`` answering from a list, tool calls and handoffs
included), real function tools and real sandboxed plugins. Offline: the model is local
and every run has ``tracing_disabled=True``, so nothing is exported.

Shown here: a policy plugin blocking a request (before the model, and with the SDK's
input tripwire), a global instruction reaching the model, tool arguments rewritten,
events tagged, responses and results replaced, and plugins that segfault or hang mid-run:
the run goes on (``on_event``: skipped) or fails with plugbox's typed error (fail
closed), the failure's cause is the true one and the host serves the next run.

The SDK is asyncio-only (it calls ``asyncio.create_task``, ``asyncio.gather``,
``asyncio.shield`` and ``asyncio.to_thread`` itself), so these tests run on asyncio only:
the ``anyio_backend`` fixture below pins it. The autouse leak check in conftest.py runs
after each test.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    InputGuardrailTripwireTriggered,
    Model,
    ModelResponse,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    RunHooks,
    Runner,
    Usage,
    function_tool,
)
from agents.exceptions import AgentsException
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from plugbox import HookSet, HookSpec, Limits, PluginHost, specs
from plugbox.adapters import _openai_convert as convert
from plugbox.adapters import openai_agents
from plugbox.adapters.openai_agents import AgentsPluginFailure, wire
from plugbox.errors import PluginCrashed, PluginFailure, PluginRaised, PluginTimeout

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parents[1]
RECORDER = str(TESTS / "plugins" / "agent.py") + ":AgentRecorderPlugin"
RECIPES = TESTS.parent / "examples" / "agent" / "plugins"
POLICY = str(TESTS / "plugins" / "oai_policy.py")
CRASH = str(TESTS / "plugins" / "oai_crash.py")
EXAMPLE = TESTS.parent / "examples" / "openai_agents" / "agent_run.py"

#: the AGENT set plus ``history``, to ask the recorder plugins what they received.
HOOKS = HookSet(
    "agent-tests", [*specs.AGENT.values(), HookSpec(name="history", args=(), mode="collect")]
)
QUIET = RunConfig(tracing_disabled=True)


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: the Agents SDK drives asyncio directly (see the module docstring)."""
    return "asyncio"


# ---------------------------------------------------------------------- a scripted model
class ScriptedModel(Model):
    """Answers from a list, one step per call: a str (the text), a dict ``{"call", "args",
    "id"}`` (a function call, handoffs included), a list of those, or an exception to
    raise. Records what each call received."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls: list[dict[str, Any]] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        self.calls.append(
            {
                "instructions": system_instructions,
                "input": copy.deepcopy(input),
                "tools": sorted(t.name for t in tools),
            }
        )
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        output: list[Any] = []
        for part in step if isinstance(step, list) else [step]:
            if isinstance(part, str):
                output.append(
                    ResponseOutputMessage(
                        id=f"msg-{len(self.calls)}",
                        type="message",
                        role="assistant",
                        status="completed",
                        content=[ResponseOutputText(type="output_text", text=part, annotations=[])],
                    )
                )
            else:
                output.append(
                    ResponseFunctionToolCall(
                        type="function_call",
                        call_id=part.get("id", f"call-{len(self.calls)}"),
                        name=part["call"],
                        arguments=json.dumps(part.get("args", {})),
                    )
                )
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


def user_texts(call: dict[str, Any]) -> list[str]:
    return [
        item["content"]
        for item in call["input"]
        if isinstance(item, dict) and item.get("role") == "user"
    ]


def tool_outputs(call: dict[str, Any]) -> list[str]:
    return [
        item["output"]
        for item in call["input"]
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


def weather_tool(seen: list[dict[str, Any]], *, fail: bool = False) -> FunctionTool:
    @function_tool(failure_error_function=None)
    async def weather(city: str, units: str) -> str:
        """The temperature in a city."""
        seen.append({"city": city, "units": units})
        if fail:
            raise ConnectionError("weather service down")
        return f"{city}: {18 if units == 'celsius' else 64} {units}"

    return weather


def weather_agent(model: ScriptedModel, seen: list[dict[str, Any]], **kwargs: Any) -> Agent[Any]:
    return Agent(
        name="assistant",
        instructions="You answer questions.",
        model=model,
        tools=[weather_tool(seen, **kwargs)],
    )


ASKS_WEATHER = {"call": "weather", "args": {"city": "Paris", "units": "fahrenheit"}, "id": "call-w"}


async def history(host: PluginHost) -> dict[str, list[Any]]:
    out = await host.call("history")
    return {h["name"]: h["calls"] for h in out.value}


async def run(
    host: PluginHost, agent: Agent[Any], text: str, **kwargs: Any
) -> tuple[Any, openai_agents.WiredRun]:
    wired = wire(host, agent, run_config=QUIET, **kwargs)
    result = await Runner.run(wired.agent, text, hooks=wired.hooks, run_config=wired.run_config)
    return result, wired


# ---------------------------------------------------------------------- the lifecycle
async def test_every_hook_is_called_in_the_documented_order_with_plain_data() -> None:
    model = ScriptedModel(ASKS_WEATHER, "It is 64 fahrenheit in Paris.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config={"name": "rec"})
        result, wired = await run(host, weather_agent(model, seen), "Weather in Paris?")
        calls = (await history(host))["rec"]
    assert result.final_output == "It is 64 fahrenheit in Paris."
    assert seen == [{"city": "Paris", "units": "fahrenheit"}]
    events = [args["event"]["type"] for hook, args in calls if hook == "on_event"]
    assert events == [
        "agent_start",
        "llm_start",
        "llm_end",
        "tool_start",
        "tool_end",
        "llm_start",
        "llm_end",
        "agent_end",
    ]
    hooks = [hook for hook, _ in calls if hook != "on_event"]
    assert hooks == [
        "on_user_message",
        "before_run",
        "before_agent",
        "before_model",
        "after_model",
        "before_tool",
        "after_tool",
        "before_model",
        "after_model",
        "after_agent",
        "after_run",
    ]
    by_hook = {hook: args for hook, args in calls}
    context = {"invocation_id": wired.invocation_id, "agent_name": "assistant", "state": {}}
    assert by_hook["on_user_message"] == {
        "message": {"role": "user", "content": "Weather in Paris?"},
        "context": context,
    }
    assert by_hook["before_agent"]["agent"] == {
        "name": "assistant",
        "instructions": "You answer questions.",
    }
    first_request = next(args["request"] for hook, args in calls if hook == "before_model")
    assert first_request == {
        "model": "ScriptedModel",
        "messages": [
            {"role": "system", "content": "You answer questions."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "tools": [{"name": "weather", "description": "The temperature in a city."}],
    }
    first_response = next(args["response"] for hook, args in calls if hook == "after_model")
    assert first_response == {
        "content": "",
        "tool_calls": [
            {"id": "call-w", "name": "weather", "args": {"city": "Paris", "units": "fahrenheit"}}
        ],
    }
    assert by_hook["before_tool"] == {
        "tool": {"name": "weather", "description": "The temperature in a city."},
        "args": {"city": "Paris", "units": "fahrenheit"},
        "context": {**context, "tool_call_id": "call-w"},
    }
    assert by_hook["after_tool"]["result"] == "Paris: 64 fahrenheit"
    assert by_hook["after_run"]["output"] == {
        "role": "assistant",
        "content": "It is 64 fahrenheit in Paris.",
    }
    assert wired.output == by_hook["after_run"]["output"]
    assert wired.failures == []
    assert [e["type"] for e in wired.events] == events


async def test_wire_leaves_the_callers_agent_config_and_hooks_alone() -> None:
    seen: list[dict[str, Any]] = []
    model = ScriptedModel("hi")
    agent = weather_agent(model, seen)
    tools, config = list(agent.tools), RunConfig(tracing_disabled=True)
    on_invoke = tools[0].on_invoke_tool  # type: ignore[union-attr]
    async with PluginHost(specs.AGENT) as host:
        wired = wire(host, agent, run_config=config)
    assert agent.tools == tools and agent.tools[0].on_invoke_tool is on_invoke  # type: ignore[union-attr]
    assert agent.model is model and config.input_guardrails is None
    assert config.output_guardrails is None
    assert wired.agent is not agent and wired.agent.tools[0] is not tools[0]
    assert len(wired.run_config.input_guardrails or []) == 1


async def test_a_wired_run_serves_one_run_and_closes_the_provider_it_made() -> None:
    model = ScriptedModel("one", "two")
    closed: list[str] = []
    async with PluginHost(specs.AGENT) as host:
        wired = wire(host, Agent(name="a", model=model), run_config=QUIET)
        await Runner.run(wired.agent, "hi", hooks=wired.hooks, run_config=wired.run_config)
        with pytest.raises(AgentsException, match="call wire\\(\\) for each run"):
            await Runner.run(wired.agent, "hi", hooks=wired.hooks, run_config=wired.run_config)
        assert len(model.calls) == 1
        for config in (None, RunConfig(tracing_disabled=True)):
            wired = wire(host, Agent(name="a", model=model), run_config=config)
            provider = wired.run_config.model_provider.inner  # type: ignore[attr-defined]

            async def aclose(which: str = "made" if config is None else "given") -> None:
                closed.append(which)

            provider.aclose = aclose
            await wired.aclose()
    # Runner.run closes a provider it made, not one it is given: the same here
    assert closed == ["made"]


async def test_a_host_without_the_agent_hooks_is_refused() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        with pytest.raises(ValueError, match="lacks on_user_message"):
            wire(host, Agent(name="a", model=ScriptedModel()))


# ---------------------------------------------------------------------- what plugins can do
async def test_a_global_instruction_reaches_the_model_on_every_call() -> None:
    model = ScriptedModel(ASKS_WEATHER, "Done.")
    bare = ScriptedModel("Hello.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(specs.AGENT) as host:
        await host.add(
            "plugbox.plugins.global_instruction",
            config={"instruction": "Follow the security policy."},
        )
        await run(host, weather_agent(model, seen), "Weather?")
        await run(host, Agent(name="bare", model=bare), "Hi")  # no instructions of its own
    assert [c["instructions"] for c in model.calls] == [
        "Follow the security policy.\n\nYou answer questions."
    ] * 2
    assert bare.calls[0]["instructions"] == "Follow the security policy."
    # the rest of the input is the SDK's own items, untouched
    assert model.calls[1]["input"][0] == {"role": "user", "content": "Weather?"}
    assert model.calls[1]["input"][1]["type"] == "function_call"


async def test_a_policy_plugin_answers_instead_of_the_model() -> None:
    model = ScriptedModel("The admin password is hunter2.")
    async with PluginHost(specs.AGENT) as host:
        await host.add(str(RECIPES / "block_keyword.py"), config={"keyword": "/deny"})
        result, _ = await run(
            host, Agent(name="a", instructions="x", model=model), "/deny show me the admin password"
        )
        assert result.final_output == "Blocked by plugin policy."
        assert model.calls == []  # the model was not called
        result, _ = await run(host, Agent(name="a", instructions="x", model=model), "hello")
    assert result.final_output == "The admin password is hunter2."
    assert len(model.calls) == 1


async def test_before_run_returning_a_value_trips_the_input_guardrail() -> None:
    model = ScriptedModel(ASKS_WEATHER, "Done.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(specs.AGENT) as host:
        await host.add(POLICY, config={"keyword": "password"})
        with pytest.raises(InputGuardrailTripwireTriggered) as raised:
            await run(host, weather_agent(model, seen), "tell me the admin password")
        assert raised.value.guardrail_result.output.output_info == {
            "hook": "before_run",
            "plugin": "oai-policy",
            "value": {"role": "assistant", "content": "Refused by policy: 'password'."},
        }
        assert model.calls == [] and seen == []  # nothing ran
        result, _ = await run(host, weather_agent(model, seen), "weather?")
    assert result.final_output == "Done." and len(seen) == 1


async def test_on_user_message_changes_what_the_model_sees() -> None:
    model = ScriptedModel("ok")
    async with PluginHost(HOOKS) as host:
        await host.add(
            RECORDER,
            config={
                "name": "rewriter",
                "mutate": {"on_user_message": {"message": {"content": "my card is [redacted]"}}},
            },
        )
        await host.add(RECORDER, config={"name": "after"})
        result, _ = await run(host, Agent(name="a", model=model), "my card is 4111-1111")
        calls = (await history(host))["after"]
    assert user_texts(model.calls[0]) == ["my card is [redacted]"]
    assert result.input == "my card is 4111-1111"  # the SDK's own record is the original
    before_run = next(args for hook, args in calls if hook == "before_run")
    assert before_run["message"]["content"] == "my card is [redacted]"


async def test_tool_arguments_are_rewritten_before_the_tool_runs() -> None:
    model = ScriptedModel(ASKS_WEATHER, "Done.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(specs.AGENT) as host:
        await host.add(
            str(RECIPES / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await run(host, weather_agent(model, seen), "Weather in Paris?")
    assert seen == [{"city": "Paris", "units": "celsius"}]
    assert tool_outputs(model.calls[1]) == ["Paris: 18 celsius"]


async def test_before_tool_answers_for_the_tool_and_after_tool_replaces_results() -> None:
    answered = ScriptedModel(ASKS_WEATHER, "Done.")
    replaced = ScriptedModel(ASKS_WEATHER, "Done.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(HOOKS) as host:
        await host.add(
            RECORDER, config={"name": "cache", "returns": {"before_tool": "cached: 20 celsius"}}
        )
        await run(host, weather_agent(answered, seen), "Weather?")
        await host.remove("cache")
        await host.add(
            RECORDER,
            config={"name": "sanitizer", "returns": {"after_tool": "[tool output removed]"}},
        )
        await run(host, weather_agent(replaced, seen), "Weather?")
    assert tool_outputs(answered.calls[1]) == ["cached: 20 celsius"]
    assert tool_outputs(replaced.calls[1]) == ["[tool output removed]"]
    assert seen == [{"city": "Paris", "units": "fahrenheit"}]  # the second run only


async def test_on_tool_error_replaces_a_tool_error_or_lets_it_stand() -> None:
    seen: list[dict[str, Any]] = []
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config={"name": "rec"})
        with pytest.raises(AgentsException) as raised:  # None lets the error stand
            await run(host, weather_agent(ScriptedModel(ASKS_WEATHER), seen, fail=True), "w?")
        assert isinstance(raised.value.__cause__, ConnectionError)
        errors = [
            args["error"] for hook, args in (await history(host))["rec"] if hook == "on_tool_error"
        ]
        assert errors == [{"type": "ConnectionError", "message": "weather service down"}]
        await host.add(
            RECORDER, config={"name": "fallback", "returns": {"on_tool_error": "no weather today"}}
        )
        model = ScriptedModel(ASKS_WEATHER, "Sorry.")
        result, _ = await run(host, weather_agent(model, seen, fail=True), "w?")
    assert result.final_output == "Sorry."
    assert tool_outputs(model.calls[1]) == ["no weather today"]


async def test_after_model_replaces_the_response() -> None:
    model = ScriptedModel("Your key: api_key=sk-live-1234")
    async with PluginHost(specs.AGENT) as host:
        await host.add(str(RECIPES / "redact.py"))
        result, _ = await run(host, Agent(name="a", model=model), "my key?")
    assert result.final_output == "Your key: api_key=[redacted]"


async def test_on_model_error_answers_for_a_failed_model() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config={"name": "rec"})
        with pytest.raises(TimeoutError, match="model too slow"):
            await run(
                host, Agent(name="a", model=ScriptedModel(TimeoutError("model too slow"))), "hi"
            )
        await host.add(
            RECORDER,
            config={
                "name": "fallback",
                "returns": {"on_model_error": {"content": "The model is unavailable."}},
            },
        )
        result, _ = await run(
            host, Agent(name="a", model=ScriptedModel(TimeoutError("model too slow"))), "hi"
        )
        calls = (await history(host))["rec"]
    assert result.final_output == "The model is unavailable."
    assert [args["error"] for hook, args in calls if hook == "on_model_error"] == [
        {"type": "TimeoutError", "message": "model too slow"}
    ] * 2


async def test_before_agent_and_after_agent_stop_the_run_with_the_sdks_tripwires() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(
            RECORDER, config={"name": "gate", "returns": {"before_agent": "agent disabled"}}
        )
        model = ScriptedModel("hi")
        with pytest.raises(InputGuardrailTripwireTriggered) as raised:
            await run(host, Agent(name="a", model=model), "hi")
        assert raised.value.guardrail_result.output.output_info == {
            "hook": "before_agent",
            "plugin": "gate",
            "value": "agent disabled",
        }
        assert model.calls == []
        await host.remove("gate")
        await host.add(
            RECORDER,
            config={"name": "editor", "mutate": {"after_agent": {"output": {"content": "edited"}}}},
        )
        with pytest.raises(OutputGuardrailTripwireTriggered) as out:
            await run(host, Agent(name="a", model=model), "hi")
    assert out.value.guardrail_result.output.output_info == {
        "hook": "after_agent",
        "plugin": None,  # a change in place: whose is not known
        "value": {"role": "assistant", "content": "edited"},
    }


async def test_a_run_in_a_server_managed_conversation_is_wired_too() -> None:
    # after_agent is not an output guardrail, which the SDK refuses in such runs
    model = ScriptedModel("hi")
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config={"name": "rec"})
        wired = wire(host, Agent(name="a", model=model), run_config=QUIET)
        result = await Runner.run(
            wired.agent,
            "hi",
            hooks=wired.hooks,
            run_config=wired.run_config,
            previous_response_id="resp-0",
        )
        calls = (await history(host))["rec"]
    assert result.final_output == "hi"
    assert [hook for hook, _ in calls if hook.startswith("after_")] == [
        "after_model",
        "after_agent",
        "after_run",
    ]


async def test_events_are_tagged_and_handoffs_are_wired() -> None:
    seen: list[dict[str, Any]] = []
    expert = weather_agent(ScriptedModel(ASKS_WEATHER, "Paris: 18 celsius."), seen)
    expert.name = "weather-expert"
    triage = Agent(
        name="triage",
        model=ScriptedModel({"call": "transfer_to_weather_expert"}),
        handoffs=[expert],
    )
    async with PluginHost(HOOKS) as host:
        await host.add(str(RECIPES / "tag_events.py"), config={"tag": "audited"})
        await host.add(
            str(RECIPES / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await host.add(RECORDER, config={"name": "rec"})
        result, wired = await run(host, triage, "Weather in Paris?")
        calls = (await history(host))["rec"]
    assert result.final_output == "Paris: 18 celsius."
    assert seen == [{"city": "Paris", "units": "celsius"}]  # the expert's tool was wired
    assert [e["type"] for e in wired.events] == [
        "agent_start",
        "llm_start",
        "llm_end",
        "handoff",
        "agent_start",
        "llm_start",
        "llm_end",
        "tool_start",
        "tool_end",
        "llm_start",
        "llm_end",
        "agent_end",
    ]
    assert all(e["tags"] == ["audited"] for e in wired.events)
    handoff = next(e for e in wired.events if e["type"] == "handoff")
    assert handoff["content"] == {"from": "triage", "to": "weather-expert"}
    # the recorder, added after the tagger, saw the tags; the agents as they started
    assert all(args["event"]["tags"] == ["audited"] for hook, args in calls if hook == "on_event")
    assert [args["agent"]["name"] for hook, args in calls if hook == "before_agent"] == [
        "triage",
        "weather-expert",
    ]
    assert [args["context"]["agent_name"] for hook, args in calls if hook == "before_model"] == [
        "triage",
        "weather-expert",
        "weather-expert",
    ]


async def test_the_callers_own_hooks_still_run_and_the_run_helper_wires_too() -> None:
    called: list[str] = []

    class Mine(RunHooks[Any]):
        async def on_agent_start(self, context: Any, agent: Any) -> None:
            called.append(f"start {agent.name}")

        async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
            called.append(f"end {output}")

    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": "Be kind."})
        model = ScriptedModel("hello")
        result = await openai_agents.run(
            host, Agent(name="a", model=model), "hi", run_config=QUIET, hooks=Mine(), max_turns=3
        )
    assert result.final_output == "hello" and called == ["start a", "end hello"]
    assert model.calls[0]["instructions"] == "Be kind."


async def test_a_streamed_run_is_refused_rather_than_run_without_plugins() -> None:
    model = ScriptedModel("hello")
    async with PluginHost(specs.AGENT) as host:
        wired = wire(host, Agent(name="a", model=model), run_config=QUIET)
        streamed = Runner.run_streamed(
            wired.agent, "hi", hooks=wired.hooks, run_config=wired.run_config
        )
        with pytest.raises(AgentsException, match="run_streamed"):
            async for _ in streamed.stream_events():
                pass
    assert model.calls == []


# ---------------------------------------------------------------------- failures
async def test_a_plugin_that_raises_fails_the_run_with_its_typed_error() -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(RECORDER, config={"name": "strict", "raise": ["before_tool"]})
        seen: list[dict[str, Any]] = []
        with pytest.raises(PluginRaised) as raised:
            await run(host, weather_agent(ScriptedModel(ASKS_WEATHER), seen), "w?")
    # the SDK wraps what a tool raises in a UserError, but not this: it is also an
    # AgentsException, so it reaches the caller as it is
    assert isinstance(raised.value, AgentsPluginFailure)
    assert isinstance(raised.value, AgentsException)
    report = raised.value.report
    assert (report.plugin, report.hook, report.cause) == ("strict", "before_tool", "raised")
    assert report.exc_message == "strict fails in before_tool"
    assert seen == []


async def test_a_plugin_that_segfaults_in_on_event_is_skipped_and_the_run_goes_on() -> None:
    model = ScriptedModel(ASKS_WEATHER, "Done.", "Again.")
    seen: list[dict[str, Any]] = []
    async with PluginHost(specs.AGENT) as host:
        await host.add(str(RECIPES / "tag_events.py"))
        # segfaults on the tool_start event, in the middle of the run
        await host.add(CRASH, config={"event": "tool_start"})
        await host.add("plugbox.plugins.global_instruction", config={"instruction": "Be safe."})
        result, wired = await run(host, weather_agent(model, seen), "Weather?")
        assert result.final_output == "Done."
        assert seen == [{"city": "Paris", "units": "fahrenheit"}]
        (report,) = wired.failures
        assert (report.plugin, report.hook, report.cause, report.signal) == (
            "oai-crash",
            "on_event",
            "crashed",
            "SIGSEGV",
        )
        # the event went on as the failing plugin got it: tagged by the plugin before it
        assert all(e["tags"] == ["plugin_demo"] for e in wired.events)
        assert [r.cause for r in host.reports] == ["crashed"]
        # the host serves the next run; the plugin has a fresh worker
        result, wired = await run(host, Agent(name="b", model=model), "Again?")
        assert result.final_output == "Again." and wired.failures == []
        info = {p.name: p for p in host.plugins}["oai-crash"]
        assert info.restarts == 1 and info.state == "running"
    assert model.calls[-1]["instructions"] == "Be safe."


async def test_a_plugin_that_segfaults_in_before_model_fails_the_run_closed() -> None:
    model = ScriptedModel("Hello again.")
    async with PluginHost(specs.AGENT) as host:
        await host.add(CRASH, config={"word": "crash"})
        with pytest.raises(PluginCrashed) as raised:
            await run(host, Agent(name="a", model=model), "please crash")
        report = raised.value.report
        assert (report.plugin, report.hook, report.cause, report.signal) == (
            "oai-crash",
            "before_model",
            "crashed",
            "SIGSEGV",
        )
        assert model.calls == []  # fail closed: the model was not called
        result, _ = await run(host, Agent(name="a", model=model), "hi")
        assert result.final_output == "Hello again."
        info = {p.name: p for p in host.plugins}["oai-crash"]
    assert info.restarts == 1 and info.state == "running"


async def test_a_plugin_that_hangs_in_before_tool_times_out_and_fails_the_run_closed() -> None:
    seen: list[dict[str, Any]] = []
    model = ScriptedModel(ASKS_WEATHER, "Hello.")
    async with PluginHost(specs.AGENT) as host:
        await host.add(
            "plugbox.testing.faults:SleepPlugin",
            config={"hooks": ["before_tool"]},
            limits=Limits(call_timeout=0.5, backoff_initial=0.01),
        )
        await host.add("plugbox.plugins.global_instruction", config={"instruction": "Be safe."})
        with pytest.raises(PluginTimeout) as raised:
            await run(host, weather_agent(model, seen), "Weather?")
        assert isinstance(raised.value, PluginFailure)
        report = raised.value.report
        assert (report.plugin, report.hook, report.cause, report.killed) == (
            "fault-sleep",
            "before_tool",
            "timeout",
            True,
        )
        assert seen == []  # the tool did not run
        # the host serves the next run (no tool call, so the sleeper is not asked)
        result, _ = await run(host, weather_agent(model, seen), "Hello?")
    assert result.final_output == "Hello."
    assert model.calls[-1]["instructions"] == "Be safe.\n\nYou answer questions."


# ---------------------------------------------------------------------- plain data
def test_a_request_changed_in_place_gives_back_the_sdks_items_it_did_not_touch() -> None:
    image = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "data:,"},
        ],
    }
    call = {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "a cat"}
    items = [image, call, output, {"role": "user", "content": "my pin is 1234"}]
    request = convert.request_from("m", "Be brief.", items, [], [])
    assert request.data["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is this?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "look", "args": {}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        {"role": "user", "content": "my pin is 1234"},
    ]
    assert not request.changed()
    messages = request.data["messages"]
    messages[0]["content"] = "Policy.\n\nBe brief."
    messages[4]["content"] = "my pin is [redacted]"
    messages.insert(4, {"role": "developer", "content": "Never repeat secrets."})
    assert request.changed()
    instructions, rebuilt = request.rebuilt()
    assert instructions == "Policy.\n\nBe brief."
    assert rebuilt[:3] == [image, call, output] and rebuilt[0] is image  # untouched
    assert rebuilt[3:] == [
        {"role": "developer", "content": "Never repeat secrets."},
        {"role": "user", "content": "my pin is [redacted]"},
    ]
    # without instructions, a system message a plugin puts first becomes them
    request = convert.request_from("m", None, "hi", [], [])
    request.data["messages"].insert(0, {"role": "system", "content": "Policy."})
    assert request.rebuilt() == ("Policy.", [{"role": "user", "content": "hi"}])


def test_plugin_responses_become_model_responses() -> None:
    response = convert.model_response_from(
        {
            "content": "checking",
            "tool_calls": [{"id": "c9", "name": "weather", "args": {"city": "Oslo"}}],
        }
    )
    assert convert.response_from(response) == {
        "content": "checking",
        "tool_calls": [{"id": "c9", "name": "weather", "args": {"city": "Oslo"}}],
    }
    assert convert.response_from(convert.model_response_from("just text")) == {
        "content": "just text",
        "tool_calls": [],
    }
    with pytest.raises(TypeError, match="a dict or a str, not int"):
        convert.model_response_from(42)


# ---------------------------------------------------------------------- the example
def test_the_example_runs_as_documented() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for shown in [
        "the model got the instructions 'You must follow security policies.\\n\\nYou answer "
        "questions with two tools.'",
        "flaky_auditor failed in on_event (crashed, SIGSEGV): skipped, the run went on",
        "=> The weather tool says: {'city': 'Paris', 'temperature': 18, 'units': 'celsius'}.",
        "=> Blocked by plugin policy. (model calls in this run: 0)",
        "=> InputGuardrailTripwireTriggered: refuse_topics in before_run: I can't help with "
        "launch codes.",
        "=> 6 times 7 is 42.0. (debug: api_key=[redacted])",
        "=> Runner.run raised PluginCrashed: plugin 'misbehaving' in before_model, crashed by "
        "SIGABRT",
        "=> You're welcome.",
        "lifecycle: tool weather ended after ",
    ]:
        assert shown in done.stdout, shown
    assert "expectation" not in done.stdout
