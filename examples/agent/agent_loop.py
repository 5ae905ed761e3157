"""A small, real agent loop whose plugins run in sandboxed workers.

    python examples/agent/agent_loop.py

The agent is a scripted stand-in for a model (it answers from a list, including tool
calls) with two tools, ``weather`` and ``calculator``; no network. Every lifecycle hook
of ``plugbox.specs.AGENT`` is called where trpc-agent-go and Google ADK call it:
on_user_message, before_run, before_agent, then per model turn before_model /
after_model (on_model_error on failure), per tool call before_tool / after_tool
(on_tool_error), on_event for every event, after_agent and after_run.

The plugins, in the order they are added (the order they run in):

- ``plugbox.plugins.logging``: start and end of agent, model and tool calls, timed;
- ``plugbox.plugins.global_instruction``: a system instruction on every model request;
- ``plugins/block_keyword.py``: a user message containing "/deny" short-circuits the
  model with a custom response;
- ``plugins/misbehaving.py``: its on_event raises on tool results (skipped: the event
  goes on), and its before_model aborts its worker when the user says "crash" (fail
  closed: the run raises ``PluginCrashed``, a ``PluginFailure``);
- ``plugins/rewrite_tool_args.py``: forces ``units="celsius"`` on the weather tool;
- ``plugins/redact.py``: replaces a model response that leaks an ``api_key=``;
- ``plugins/tag_events.py``: tags every event "plugin_demo".

Five runs show short-circuit, argument rewriting, response replacement, event tagging,
a skipped plugin, a failed run, and the host serving on afterwards. Takes about a
second; exits 0 when everything happened as described, 1 otherwise.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from plugbox import PluginHost, specs
from plugbox.errors import PluginFailure

PLUGINS = Path(__file__).resolve().parent / "plugins"

AGENT = {"name": "assistant", "description": "answers questions, with two tools"}
INSTRUCTION = "You must follow security policies."

TOOLS: dict[str, dict[str, Any]] = {
    "weather": {
        "name": "weather",
        "description": "the temperature in a city",
        "parameters": {"city": "str", "units": "'celsius' or 'fahrenheit'"},
    },
    "calculator": {
        "name": "calculator",
        "description": "add, sub, mul or div two numbers",
        "parameters": {"operation": "str", "a": "number", "b": "number"},
    },
}


def weather(city: str, units: str = "celsius") -> dict[str, Any]:
    celsius = {"Paris": 18, "Tokyo": 24, "Oslo": 7}.get(city, 20)
    value = celsius if units == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": value, "units": units}


def calculator(operation: str, a: float, b: float) -> float:
    ops = {"add": a + b, "sub": a - b, "mul": a * b}
    if operation == "div":
        return a / b
    return ops[operation]


FUNCTIONS = {"weather": weather, "calculator": calculator}


class ScriptedModel:
    """Answers from a list, one entry per model call. An entry is a response: text
    (``{tool}`` is filled with the last tool result in the request) or tool calls."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = list(script)
        self.calls = 0

    def generate(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        step = copy.deepcopy(self.script.pop(0))
        tool_results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        if "content" in step and tool_results:
            step["content"] = step["content"].replace("{tool}", str(tool_results[-1]))
        return {
            "role": "assistant",
            "content": step.get("content", ""),
            "tool_calls": step.get("tool_calls", []),
        }


SCRIPT: list[dict[str, Any]] = [
    # run 1: the weather, in fahrenheit as the model asks (the plugin says celsius)
    {
        "tool_calls": [
            {"id": "call-1", "name": "weather", "args": {"city": "Paris", "units": "fahrenheit"}}
        ]
    },
    {"content": "The weather tool says: {tool}."},
    # run 2 is blocked before the model: it consumes nothing
    # run 3: arithmetic, and an answer that leaks a key
    {
        "tool_calls": [
            {"id": "call-2", "name": "calculator", "args": {"operation": "mul", "a": 6, "b": 7}}
        ]
    },
    {"content": "6 times 7 is {tool}. (debug: api_key=sk-live-1234)"},
    # run 4 fails in before_model: it consumes nothing
    # run 5
    {"content": "You're welcome."},
]


class Run:
    """One run of the agent: the lifecycle, every hook call through the plugin host."""

    def __init__(self, host: PluginHost, model: ScriptedModel, invocation_id: str) -> None:
        self.host = host
        self.model = model
        self.context: dict[str, Any] = {
            "invocation_id": invocation_id,
            "agent_name": AGENT["name"],
            "state": {},
        }
        self.events = 0

    async def __call__(self, text: str) -> Any:
        message: dict[str, Any] = {"role": "user", "content": text}
        out = await self.host.call("on_user_message", message=message, context=self.context)
        message = out.value if out.value is not None else message
        out = await self.host.call("before_run", message=message, context=self.context)
        if out.value is not None:
            output = out.value
        else:
            output = await self.agent(message)
        observed = await self.host.call(
            "after_run", message=message, output=output, context=self.context
        )
        for report in observed.failures:
            say(f"after_run: {report.plugin} failed ({report.cause}), the others ran")
        return output

    async def agent(self, message: dict[str, Any]) -> Any:
        out = await self.host.call(
            "before_agent", agent=AGENT, message=message, context=self.context
        )
        if out.value is not None:
            return out.value
        history: list[dict[str, Any]] = [message]
        output: dict[str, Any] = {"role": "assistant", "content": ""}
        for _turn in range(5):
            response = await self.model_turn(history)
            history.append(
                {
                    "role": "assistant",
                    "content": response.get("content", ""),
                    "tool_calls": response.get("tool_calls", []),
                }
            )
            calls = response.get("tool_calls") or []
            await self.emit("tool_call" if calls else "model_response", response)
            if not calls:
                output = {"role": "assistant", "content": response.get("content", "")}
                break
            for call in calls:
                result = await self.tool_call(call)
                history.append({"role": "tool", "tool_call_id": call["id"], "content": result})
                await self.emit("tool_result", result)
        out = await self.host.call(
            "after_agent", agent=AGENT, message=message, output=output, context=self.context
        )
        return out.value if out.value is not None else output

    async def model_turn(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        request = {
            "model": "scripted-1",
            "messages": copy.deepcopy(history),
            "tools": list(TOOLS.values()),
        }
        out = await self.host.call("before_model", request=request, context=self.context)
        if out.value is not None:
            say(
                f"before_model: short-circuited by {out.called[-1]!r}, the model was not "
                f"called; plugins asked: {', '.join(out.called)}"
            )
            return dict(out.value)
        first = request["messages"][0]
        say(
            f"the model gets {len(request['messages'])} messages, the first: "
            f"{first['role']}: {first['content']!r}"
        )
        try:
            response = self.model.generate(request)
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
            out = await self.host.call(
                "on_model_error", request=request, error=error, context=self.context
            )
            if out.value is None:
                raise
            response = out.value
        out = await self.host.call(
            "after_model", request=request, response=response, context=self.context
        )
        if out.value is not None:
            say(
                f"after_model: {out.called[-1]!r} replaced the response: "
                f"{response['content']!r} -> {out.value['content']!r}"
            )
            response = out.value
        return response

    async def tool_call(self, call: dict[str, Any]) -> Any:
        tool = TOOLS[call["name"]]
        args = dict(call["args"])
        self.context["tool_call_id"] = call["id"]
        try:
            out = await self.host.call("before_tool", tool=tool, args=args, context=self.context)
            if out.value is not None:
                say(f"before_tool: {out.called[-1]!r} answered for the tool")
                return out.value
            if args != call["args"]:
                say(f"before_tool: arguments rewritten {call['args']} -> {args}")
            try:
                result: Any = FUNCTIONS[tool["name"]](**args)
            except Exception as exc:
                error = {"type": type(exc).__name__, "message": str(exc)}
                out = await self.host.call(
                    "on_tool_error", tool=tool, args=args, error=error, context=self.context
                )
                if out.value is None:
                    raise
                result = out.value
            say(f"tool {tool['name']}({args}) -> {result}")
            out = await self.host.call(
                "after_tool", tool=tool, args=args, result=result, context=self.context
            )
            return out.value if out.value is not None else result
        finally:
            self.context.pop("tool_call_id", None)

    async def emit(self, kind: str, content: Any) -> None:
        self.events += 1
        event = {
            "id": f"{self.context['invocation_id']}-{self.events}",
            "author": AGENT["name"],
            "type": kind,
            "content": content,
            "tags": [],
        }
        out = await self.host.call("on_event", event=event, context=self.context)
        event = out.value
        skipped = "".join(
            f"; {r.plugin} failed ({r.exc_type}: {r.exc_message}), skipped" for r in out.failures
        )
        say(f"event {event['id']} {event['type']}, tags {event['tags']}{skipped}")


def say(text: str) -> None:
    print(f"   {text}")


async def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="     log %(name)s: %(message)s", stream=sys.stdout
    )
    # the aborted worker's faulthandler trace (its stderr) is not the point here; the
    # host's own warning (plugbox.host) and the FailureReport say what happened
    logging.getLogger("plugbox.plugin.misbehaving").setLevel(logging.ERROR)
    started = time.monotonic()
    model = ScriptedModel(SCRIPT)
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)
            say(f"!! expected: {what}")

    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.logging")
        await host.add("plugbox.plugins.global_instruction", config={"instruction": INSTRUCTION})
        await host.add(str(PLUGINS / "block_keyword.py"), config={"keyword": "/deny"})
        await host.add(str(PLUGINS / "misbehaving.py"))
        await host.add(
            str(PLUGINS / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await host.add(str(PLUGINS / "redact.py"))
        await host.add(str(PLUGINS / "tag_events.py"))
        print(f"Plugins, each in its own worker: {', '.join(p.name for p in host.plugins)}")

        print(
            "\n1. 'What is the weather in Paris?': instruction, argument rewriting, tags, "
            "a skipped on_event"
        )
        answer = await Run(host, model, "inv-1")("What is the weather in Paris?")
        print(f"   => {answer['content']}")
        expect("'units': 'celsius'" in answer["content"], "the tool ran in celsius")

        print("\n2. '/deny show me the admin password': before_model short-circuits")
        calls = model.calls
        answer = await Run(host, model, "inv-2")("/deny show me the admin password")
        print(f"   => {answer['content']} (model calls in this run: {model.calls - calls})")
        expect(
            answer["content"] == "Blocked by plugin policy." and model.calls == calls,
            "the policy answered and the model was not called",
        )

        print("\n3. 'What is 6 times 7?': after_model replaces a leaking response")
        answer = await Run(host, model, "inv-3")("What is 6 times 7?")
        print(f"   => {answer['content']}")
        expect(
            "42" in answer["content"] and "sk-live" not in answer["content"],
            "42, with the key redacted",
        )

        print("\n4. 'please crash': a before_model plugin dies, the run fails closed")
        try:
            await Run(host, model, "inv-4")("please crash")
            expect(False, "the run raised a PluginFailure")
        except PluginFailure as failure:
            r = failure.report
            print(
                f"   => the run raised {type(failure).__name__}: plugin {r.plugin!r} in "
                f"{r.hook}, {r.cause} by {r.signal}, pid {r.pid}"
            )
            expect(
                r.plugin == "misbehaving" and r.hook == "before_model",
                "misbehaving failed in before_model",
            )

        print("\n5. 'Thanks!': the host serves on (the crashed plugin gets a fresh worker)")
        answer = await Run(host, model, "inv-5")("Thanks!")
        print(f"   => {answer['content']}")
        expect(answer["content"] == "You're welcome.", "the fifth run answered")
        info = {p.name: p for p in host.plugins}["misbehaving"]
        print(
            f"   misbehaving: {info.state}, pid {info.pid}, restarts {info.restarts}; "
            f"failures recorded by the host: {len(host.reports)}"
        )
        print("\nClosing the host: plugins close in reverse order of adding")
    print(
        f"\nDone in {time.monotonic() - started:.1f} s"
        + (f"; {len(problems)} expectation(s) not met" if problems else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, backend="asyncio"))
