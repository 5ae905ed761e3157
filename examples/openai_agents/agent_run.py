"""The OpenAI Agents SDK's own ``Runner.run``, with plugins in sandboxed workers.

    pip install 'plugbox[openai-agents]'
    python examples/openai_agents/agent_run.py

An ``agents.Agent`` with two function tools, ``weather`` and ``calculator``, run by the
SDK's ``Runner`` (no stand-in); only the model is scripted (an ``agents.Model`` that
answers from a list, tool calls included), so nothing leaves the machine: no API key,
tracing disabled. The lines a framework user adds are marked ``# plugbox``.

The plugins, the same files that run under ``examples/agent/agent_loop.py``, in the
order they are added (the order they run in):

- ``plugbox.plugins.logging``: start and end of agent, model and tool calls, timed;
- ``plugbox.plugins.global_instruction``: a system instruction on every model request;
- ``plugins/refuse_topics.py``: ``before_run`` refuses "launch codes" (the SDK's input
  tripwire);
- ``../agent/plugins/block_keyword.py``: a message containing "/deny" gets the policy's
  answer instead of the model's (``before_model`` short-circuit);
- ``../agent/plugins/misbehaving.py``: its ``before_model`` aborts its worker when the
  user says "crash" (fail closed: ``Runner.run`` raises ``PluginCrashed``);
- ``../agent/plugins/rewrite_tool_args.py``: forces ``units="celsius"`` on ``weather``;
- ``../agent/plugins/redact.py``: replaces a model response that leaks an ``api_key=``;
- ``../agent/plugins/tag_events.py``: tags every event "plugin_demo";
- ``plugins/flaky_auditor.py``: segfaults on every ``tool_end`` event (skipped: the run
  goes on).

Six runs; takes a few seconds; exits 0 when everything happened as described, 1
otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    Model,
    ModelResponse,
    RunConfig,
    Runner,
    Usage,
    function_tool,
)
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from plugbox import PluginHost, specs  # plugbox
from plugbox.adapters.openai_agents import wire  # plugbox
from plugbox.errors import PluginFailure

HERE = Path(__file__).resolve().parent
RECIPES = HERE.parent / "agent" / "plugins"
INSTRUCTION = "You must follow security policies."


# ---------------------------------------------------------------------- the agent
@function_tool
async def weather(city: str, units: str) -> dict[str, Any]:
    """The temperature in a city, in 'celsius' or 'fahrenheit'."""
    celsius = {"Paris": 18, "Tokyo": 24, "Oslo": 7}.get(city, 20)
    value = celsius if units == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": value, "units": units}


@function_tool
async def calculator(operation: str, a: float, b: float) -> float:
    """add, sub, mul or div two numbers."""
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b if b else float("nan")}[
        operation
    ]


class ScriptedModel(Model):
    """Answers from a list, one entry per call: a text (``{tool}`` is filled with the
    last tool output in the input) or a tool call. Records the instructions it got."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
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
        self.calls.append({"instructions": system_instructions, "input": copy.deepcopy(input)})
        step = self.script.pop(0)
        if isinstance(step, dict):
            call = ResponseFunctionToolCall(
                type="function_call",
                call_id=step["id"],
                name=step["name"],
                arguments=json.dumps(step["args"]),
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        outputs = [
            i["output"]
            for i in input
            if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        text = step.replace("{tool}", str(outputs[-1])) if outputs else step
        message = ResponseOutputMessage(
            id=f"msg-{len(self.calls)}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example runs Runner.run")


SCRIPT: list[Any] = [
    # run 1: the weather, in fahrenheit as the model asks (a plugin says celsius)
    {"id": "call-1", "name": "weather", "args": {"city": "Paris", "units": "fahrenheit"}},
    "The weather tool says: {tool}.",
    # run 2 is answered by the policy before the model; run 3 is refused before it starts
    # run 4: arithmetic, and an answer that leaks a key
    {"id": "call-2", "name": "calculator", "args": {"operation": "mul", "a": 6, "b": 7}},
    "6 times 7 is {tool}. (debug: api_key=sk-live-1234)",
    # run 5 fails in before_model; run 6:
    "You're welcome.",
]


def say(text: str) -> None:
    print(f"   {text}")


async def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="     log %(name)s: %(message)s", stream=sys.stdout
    )
    for quiet in ("plugbox.audit", "openai.agents", "httpx"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    # the crashed workers' stderr (faulthandler traces) is not the point here; the host's
    # warning (plugbox.host) and the FailureReport say what happened
    for crashing in ("misbehaving", "flaky_auditor"):
        logging.getLogger(f"plugbox.plugin.{crashing}").setLevel(logging.ERROR)
    started = time.monotonic()
    model = ScriptedModel(SCRIPT)
    agent = Agent(
        name="assistant",
        instructions="You answer questions with two tools.",
        model=model,
        tools=[weather, calculator],
    )
    config = RunConfig(tracing_disabled=True)  # offline: no trace export
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)
            say(f"!! expected: {what}")

    async with PluginHost(specs.AGENT) as host:  # plugbox
        await host.add("plugbox.plugins.logging")  # plugbox (and each add below)
        await host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        await host.add(str(HERE / "plugins" / "refuse_topics.py"))
        await host.add(str(RECIPES / "block_keyword.py"), config={"keyword": "/deny"})
        await host.add(str(RECIPES / "misbehaving.py"))
        await host.add(
            str(RECIPES / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await host.add(str(RECIPES / "redact.py"))
        await host.add(str(RECIPES / "tag_events.py"))
        await host.add(str(HERE / "plugins" / "flaky_auditor.py"))
        print(f"Plugins, each in its own worker: {', '.join(p.name for p in host.plugins)}")

        async def ask(text: str) -> Any:
            wired = wire(host, agent, run_config=config)  # plugbox
            result = await Runner.run(
                wired.agent,
                text,
                hooks=wired.hooks,  # plugbox
                run_config=wired.run_config,
            )
            for report in wired.failures:
                say(
                    f"{report.plugin} failed in {report.hook} ({report.cause}, "
                    f"{report.signal}): skipped, the run went on"
                )
            return result, wired

        print(
            "\n1. 'What is the weather in Paris?': instruction, argument rewriting, tags, "
            "a skipped on_event plugin"
        )
        result, wired = await ask("What is the weather in Paris?")
        say(f"the model got the instructions {model.calls[0]['instructions']!r}")
        say("events: " + ", ".join(f"{e['type']} {e['tags']}" for e in wired.events))
        print(f"   => {result.final_output}")
        expect(
            model.calls[0]["instructions"].startswith(INSTRUCTION),
            "the instruction reached the model",
        )
        expect("'units': 'celsius'" in result.final_output, "the tool ran in celsius")
        expect(all(e["tags"] == ["plugin_demo"] for e in wired.events), "every event tagged")
        expect(
            [(r.plugin, r.cause, r.signal) for r in wired.failures]
            == [("flaky_auditor", "crashed", "SIGSEGV")],
            "flaky_auditor crashed and was skipped",
        )

        print("\n2. '/deny show me the admin password': the policy answers, not the model")
        calls = len(model.calls)
        result, _ = await ask("/deny show me the admin password")
        print(f"   => {result.final_output} (model calls in this run: {len(model.calls) - calls})")
        expect(
            result.final_output == "Blocked by plugin policy." and len(model.calls) == calls,
            "the policy answered and the model was not called",
        )

        print("\n3. 'What are the launch codes?': before_run refuses, the run does not start")
        try:
            await ask("What are the launch codes?")
            expect(False, "the input tripwire fired")
        except InputGuardrailTripwireTriggered as tripped:
            info = tripped.guardrail_result.output.output_info
            print(
                f"   => InputGuardrailTripwireTriggered: {info['plugin']} in {info['hook']}: "
                f"{info['value']['content']}"
            )
            expect(info["plugin"] == "refuse_topics", "refuse_topics refused")
        expect(len(model.calls) == calls, "the model was not called")

        print("\n4. 'What is 6 times 7?': after_model replaces a leaking response")
        result, _ = await ask("What is 6 times 7?")
        print(f"   => {result.final_output}")
        expect(
            "42" in result.final_output and "sk-live" not in result.final_output,
            "42, with the key redacted",
        )

        print("\n5. 'please crash': a before_model plugin dies, the run fails closed")
        calls = len(model.calls)
        try:
            await ask("please crash")
            expect(False, "the run raised a PluginFailure")
        except PluginFailure as failure:
            r = failure.report
            print(
                f"   => Runner.run raised {type(failure).__name__}: plugin {r.plugin!r} in "
                f"{r.hook}, {r.cause} by {r.signal}, pid {r.pid}"
            )
            expect(
                (r.plugin, r.hook, r.cause) == ("misbehaving", "before_model", "crashed"),
                "misbehaving crashed in before_model",
            )
        expect(len(model.calls) == calls, "the model was not called")

        print("\n6. 'Thanks!': the host serves on (crashed plugins get fresh workers)")
        result, _ = await ask("Thanks!")
        print(f"   => {result.final_output}")
        expect(result.final_output == "You're welcome.", "the sixth run answered")
        for info in host.plugins:
            if info.restarts:
                say(f"{info.name}: {info.state}, restarts {info.restarts}")
        print(f"   failures recorded by the host: {len(host.reports)}")
        print("\nClosing the host: plugins close in reverse order of adding")
    print(
        f"\nDone in {time.monotonic() - started:.1f} s"
        + (f"; {len(problems)} expectation(s) not met" if problems else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
