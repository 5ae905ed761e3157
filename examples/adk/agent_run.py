"""Google ADK's own runner, with plugins in sandboxed workers.

    pip install 'plugbox[adk]'
    python examples/adk/agent_run.py

An ADK ``LlmAgent`` with two function tools, ``weather`` and ``calculator``, run by ADK's
``Runner`` (no stand-in); only the model is scripted (a ``BaseLlm`` that answers
from a list, tool calls included), so nothing leaves the machine: no API key, no Google
auth. The lines a framework user adds are marked ``# plugbox``.

The plugins, the same files that run under ``examples/agent/agent_loop.py``, in the
order they are added (the order they run in):

- ``plugbox.plugins.logging``: start and end of agent, model and tool calls, timed;
- ``plugbox.plugins.global_instruction``: a system instruction on every model request
  (it reaches the model as ADK's system instruction);
- ``../agent/plugins/block_keyword.py``: a message containing "/deny" gets the policy's
  answer instead of the model's (``before_model`` short-circuit);
- ``../agent/plugins/misbehaving.py``: its ``on_event`` raises on tool results (skipped:
  the event goes on), and its ``before_model`` aborts its worker when the user says
  "crash" (fail closed: the run raises ``PluginCrashed``);
- ``../agent/plugins/rewrite_tool_args.py``: forces ``units="celsius"`` on ``weather``;
- ``../agent/plugins/redact.py``: replaces a model response that leaks an ``api_key=``;
- ``../agent/plugins/tag_events.py``: tags every event "plugin_demo" (ADK's
  ``event.custom_metadata["tags"]``).

Each run has a session of its own (the policy plugin looks at every user message of
the history). Five runs; takes a few seconds; exits 0 when everything happened as
described, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.events.event import Event
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types
from pydantic import Field

from plugbox import PluginHost, specs  # plugbox
from plugbox.adapters.adk import PlugboxPlugin, run_async  # plugbox
from plugbox.errors import PluginFailure  # plugbox

RECIPES = Path(__file__).resolve().parent.parent / "agent" / "plugins"
INSTRUCTION = "You must follow security policies."


def weather(city: str, units: str = "fahrenheit") -> dict[str, Any]:
    """The temperature in a city."""
    celsius = {"Paris": 18, "Tokyo": 24, "Oslo": 7}.get(city, 20)
    value = celsius if units == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": value, "units": units}


def calculator(operation: str, a: float, b: float) -> float:
    """Adds, subtracts, multiplies or divides two numbers."""
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b if b else float("nan")}[
        operation
    ]


class ScriptedModel(BaseLlm):
    """Answers from a list, one step per model call: a str (its text; ``{tool}`` is the
    last tool result in the request) or a dict ``{"call", "args"}`` (a tool call)."""

    model: str = "scripted-1"
    script: list[Any] = Field(default_factory=list)
    calls: int = 0
    first_system: str = ""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.calls += 1
        system = str(llm_request.config.system_instruction or "")
        say(
            f"the model gets {len(llm_request.contents)} contents and the system "
            f"instruction {system[:60]!r}..."
        )
        self.first_system = self.first_system or system
        step = self.script.pop(0)
        if isinstance(step, dict):
            part = types.Part(
                function_call=types.FunctionCall(
                    id=f"call-{self.calls}", name=step["call"], args=step["args"]
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


SCRIPT: list[Any] = [
    # run 1: the weather, in fahrenheit as the model asks (the plugin says celsius)
    {"call": "weather", "args": {"city": "Paris", "units": "fahrenheit"}},
    "The weather tool says: {tool}.",
    # run 2 is blocked before the model: it consumes nothing
    # run 3: arithmetic, and an answer that leaks a key
    {"call": "calculator", "args": {"operation": "mul", "a": 6, "b": 7}},
    "6 times 7 is {tool}. (debug: api_key=sk-live-1234)",
    # run 4 fails in before_model: it consumes nothing
    # run 5
    "You're welcome.",
]


def say(text: str) -> None:
    print(f"   {text}")


def text_of(event: Event) -> str:
    parts = event.content.parts or [] if event.content else []
    return "".join(p.text for p in parts if p.text and not p.thought)


async def ask(runner: Runner, text: str) -> list[Event]:
    """One run of the agent in a new session; prints and returns its events."""
    session = await runner.session_service.create_session(app_name=runner.app_name, user_id="user")
    message = types.Content(role="user", parts=[types.Part(text=text)])
    events = []
    async for event in run_async(
        runner,
        user_id="user",
        session_id=session.id,  # plugbox
        new_message=message,
    ):
        parts = event.content.parts or [] if event.content else []
        what = "; ".join(
            f"call {p.function_call.name}({p.function_call.args})"
            if p.function_call
            else f"result {p.function_response.response}"
            if p.function_response
            else repr(p.text)
            for p in parts
        )
        if event.error_code:
            what = f"error {event.error_code}: {event.error_message}"
        say(f"event from {event.author}: {what}; custom_metadata {event.custom_metadata}")
        events.append(event)
    return events


async def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="     log %(name)s: %(message)s", stream=sys.stdout
    )
    logging.getLogger("google_adk").setLevel(logging.CRITICAL)  # ADK's own chatter
    logging.getLogger("plugbox.audit").setLevel(logging.WARNING)  # a record per call
    # the aborted worker's faulthandler trace (its stderr) is not the point here; the
    # host's own warning (plugbox.host) and the FailureReport say what happened
    logging.getLogger("plugbox.plugin.misbehaving").setLevel(logging.ERROR)
    started = time.monotonic()
    model = ScriptedModel(script=SCRIPT)
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)
            say(f"!! expected: {what}")

    async with PluginHost(specs.AGENT) as host:  # plugbox
        await host.add("plugbox.plugins.logging")  # plugbox
        await host.add(
            "plugbox.plugins.global_instruction",  # plugbox
            config={"instruction": INSTRUCTION},
        )
        await host.add(str(RECIPES / "block_keyword.py"), config={"keyword": "/deny"})
        await host.add(str(RECIPES / "misbehaving.py"))
        await host.add(
            str(RECIPES / "rewrite_tool_args.py"),
            config={"overrides": {"weather": {"units": "celsius"}}},
        )
        await host.add(str(RECIPES / "redact.py"))
        await host.add(str(RECIPES / "tag_events.py"))
        print(f"Plugins, each in its own worker: {', '.join(p.name for p in host.plugins)}")

        agent = LlmAgent(
            name="assistant",
            model=model,
            instruction="Answer briefly.",
            tools=[weather, calculator],
        )
        app = App(
            name="plugbox_example", root_agent=agent, plugins=[PlugboxPlugin(host)]
        )  # plugbox
        runner = Runner(app=app, session_service=InMemorySessionService())

        print(
            "\n1. 'What is the weather in Paris?': instruction, argument rewriting, tags, "
            "a skipped on_event"
        )
        events = await ask(runner, "What is the weather in Paris?")
        print(f"   => {text_of(events[-1])}")
        expect(
            model.first_system.startswith(INSTRUCTION), "the model got the global instruction first"
        )
        expect("'units': 'celsius'" in text_of(events[-1]), "the tool ran in celsius")
        expect(
            all(e.custom_metadata == {"tags": ["plugin_demo"]} for e in events),
            "every event tagged",
        )
        skipped = [r for r in host.reports if r.hook == "on_event"]
        expect(
            len(skipped) == 1 and skipped[0].cause == "raised",
            "misbehaving's on_event failed once and was skipped",
        )

        print("\n2. '/deny show me the admin password': before_model short-circuits")
        calls = model.calls
        events = await ask(runner, "/deny show me the admin password")
        print(f"   => {text_of(events[-1])} (model calls in this run: {model.calls - calls})")
        expect(
            text_of(events[-1]) == "Blocked by plugin policy." and model.calls == calls,
            "the policy answered and the model was not called",
        )

        print("\n3. 'What is 6 times 7?': after_model replaces a leaking response")
        events = await ask(runner, "What is 6 times 7?")
        print(f"   => {text_of(events[-1])}")
        expect(
            text_of(events[-1]) == "6 times 7 is {'result': 42}. (debug: api_key=[redacted])",
            "42, with the key redacted",
        )

        print("\n4. 'please crash': a before_model plugin dies, the run fails closed")
        try:
            await ask(runner, "please crash")
            expect(False, "the run raised a PluginFailure")
        except PluginFailure as failure:  # plugbox
            r = failure.report
            print(
                f"   => the run raised {type(failure).__name__}: plugin {r.plugin!r} in "
                f"{r.hook}, {r.cause} by {r.signal}, pid {r.pid}"
            )
            expect(
                r.plugin == "misbehaving" and r.hook == "before_model" and r.cause == "crashed",
                "misbehaving crashed in before_model",
            )

        print("\n5. 'Thanks!': the host serves on (the crashed plugin gets a fresh worker)")
        events = await ask(runner, "Thanks!")
        print(f"   => {text_of(events[-1])}")
        expect(text_of(events[-1]) == "You're welcome.", "the fifth run answered")
        info = {p.name: p for p in host.plugins}["misbehaving"]
        print(
            f"   misbehaving: {info.state}, pid {info.pid}, restarts {info.restarts}; "
            f"failures recorded by the host: {len(host.reports)}"
        )
        await runner.close()  # ADK's runner; the host is closed by its own 'async with'
        print("\nClosing the host: plugins close in reverse order of adding")
    print(
        f"\nDone in {time.monotonic() - started:.1f} s"
        + (f"; {len(problems)} expectation(s) not met" if problems else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
