"""``WiredRun``: one run of an agent wired to a plugbox host, and the AGENT hook calls
its wrappers (``_openai_wrappers``) make."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents import (
    Agent,
    FunctionTool,
    GuardrailFunctionOutput,
    InputGuardrail,
    InputGuardrailTripwireTriggered,
    Model,
    OutputGuardrail,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    RunContextWrapper,
)
from agents.exceptions import AgentsException
from agents.guardrail import InputGuardrailResult, OutputGuardrailResult
from agents.items import TResponseInputItem
from agents.lifecycle import RunHooksBase

from .. import specs
from ..errors import PluginFailure
from ..reports import FailureReport, Outcome
from . import _openai_convert as convert
from ._openai_failures import agents_failure
from ._openai_wrappers import PlugboxModel, PlugboxProvider, PlugboxRunHooks, ToolInvoker

if TYPE_CHECKING:
    from ..host import PluginHost


def _check_host(host: PluginHost) -> None:
    missing = [name for name in specs.AGENT if name not in host.hooks]
    if missing:
        raise ValueError(
            f"the host's hook set {host.hooks.name!r} lacks {', '.join(missing)}: "
            f"open it on plugbox.specs.AGENT (or a set that contains it)"
        )


# ---------------------------------------------------------------------- one run
class WiredRun:
    """One run's wiring: pass ``agent``, ``hooks`` and ``run_config`` to ``Runner.run``.

    Made by ``wire``; use one per run. It holds the run's plugbox ``context``
    (``{"invocation_id", "agent_name", "state"}``, handed to every hook; ``state`` is
    where plugins keep per-run data), ``events`` (each ``on_event`` event as the plugins
    left it), ``failures`` (reports of plugins skipped in this run) and ``output`` (the
    final output as ``after_run`` got it, or None).
    """

    def __init__(
        self,
        host: PluginHost,
        agent: Agent[Any],
        run_config: RunConfig | None,
        hooks: RunHooksBase[Any, Any] | None,
    ) -> None:
        _check_host(host)
        self.host = host
        self.invocation_id = f"oai-{uuid.uuid4().hex[:16]}"
        self.context: dict[str, Any] = {
            "invocation_id": self.invocation_id,
            "agent_name": agent.name,
            "state": {},
        }
        self.events: list[dict[str, Any]] = []
        self.failures: list[FailureReport] = []
        self.output: Any = None
        self._message: dict[str, Any] | None = None
        self._user_text: str | None = None
        self._started = False
        self._owns_provider = run_config is None
        self._events = 0
        self._input_guardrail: InputGuardrail[Any] = InputGuardrail(
            guardrail_function=self._check_input, name="plugbox", run_in_parallel=False
        )
        self._output_guardrail: OutputGuardrail[Any] = OutputGuardrail(
            guardrail_function=self._no_check, name="plugbox"
        )
        self.hooks: RunHooksBase[Any, Any] = PlugboxRunHooks(self, hooks)
        self.agent: Agent[Any] = self._wire_agent(agent, {})
        base = run_config if run_config is not None else RunConfig()
        model = base.model
        self.run_config: RunConfig = replace(
            base,
            model=PlugboxModel(model, self) if isinstance(model, Model) else model,
            model_provider=PlugboxProvider(base.model_provider, self),
            input_guardrails=[self._input_guardrail, *(base.input_guardrails or [])],
        )

    async def aclose(self) -> None:
        """Close the model provider, when ``wire`` made it (you passed no
        ``run_config``): ``Runner.run`` closes the provider it makes itself, not the one
        it is given. ``run`` does this for you."""
        if self._owns_provider:
            self._owns_provider = False
            await self.run_config.model_provider.aclose()

    # ------------------------------------------------------------------ calling
    async def call(self, hook: str, **args: Any) -> Outcome:
        """``host.call`` for this run: the run's context, failures collected, and a
        failure to raise converted with ``agents_failure``."""
        args.setdefault("context", self.context)
        try:
            out = await self.host.call(hook, **args)
        except PluginFailure as failure:
            raise agents_failure(failure) from None
        if out.failures:
            self.failures.extend(out.failures)
        return out

    async def emit(self, kind: str, content: Any) -> dict[str, Any]:
        """Deliver one event to ``on_event``; return it as the plugins left it."""
        self._events += 1
        event = {
            "id": f"{self.invocation_id}-{self._events}",
            "author": self.context.get("agent_name"),
            "type": kind,
            "content": convert.plain(content),
            "tags": [],
        }
        out = await self.call("on_event", event=event)
        final = out.value if isinstance(out.value, dict) else event
        self.events.append(final)
        return final

    def tool_context(self, call_id: str | None) -> dict[str, Any]:
        """A context of its own for one tool call (tool calls may run in parallel)."""
        return {**self.context, "tool_call_id": call_id}

    def keep_state(self, context: Mapping[str, Any]) -> None:
        """Take the ``state`` a tool call's plugins left in its context."""
        if "state" in context:
            self.context["state"] = context["state"]

    # ------------------------------------------------------------------ user message
    def message_for_model(self, items: list[Any]) -> list[Any]:
        """The model's input with the user message as plugins left it."""
        if self._message is None or self._user_text is None:
            return items
        new = convert.text_of(self._message.get("content"))
        if new == self._user_text:
            return items
        return convert.replace_user_text(items, self._user_text, new)

    def _trip(self, hook: str, out: Outcome, value: Any) -> GuardrailFunctionOutput:
        """A tripwire's output: ``output_info`` is ``{"hook", "plugin", "value"}``, the
        plugin whose return stopped the run (None when a change in place did: the
        outcome does not say whose)."""
        plugin = out.called[-1] if out.value is not None and out.called else None
        return GuardrailFunctionOutput(
            output_info={"hook": hook, "plugin": plugin, "value": value}, tripwire_triggered=True
        )

    async def _check_input(
        self, ctx: RunContextWrapper[Any], agent: Agent[Any], input: str | list[TResponseInputItem]
    ) -> GuardrailFunctionOutput:
        if self._started:
            raise AgentsException("a WiredRun serves one run: call wire() for each run")
        self._started = True
        message = convert.user_message_of(input)
        self._user_text = message["content"]
        self.context["agent_name"] = agent.name
        out = await self.call("on_user_message", message=message)
        if out.value is not None:
            message = (
                out.value
                if isinstance(out.value, dict)
                else {"role": "user", "content": convert.plain(out.value)}
            )
        self._message = message
        out = await self.call("before_run", message=message)
        if out.value is not None:
            return self._trip("before_run", out, out.value)
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    @staticmethod
    def _no_check(
        ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any
    ) -> GuardrailFunctionOutput:
        """Never registered: the guardrail ``after_agent``'s tripwire names."""
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    async def after_agent(self, agent: Agent[Any], output: Any) -> None:
        """``after_agent`` then ``after_run``, from the run hooks once the final output is
        there. The SDK cannot replace an output: a non-None return, or a change to
        ``output`` in place, stops the run with the output tripwire. (Not an output
        guardrail: recent SDK versions refuse those with server-managed conversations.)"""
        message = self._message or {"role": "user", "content": ""}
        final = {"role": "assistant", "content": convert.plain(output)}
        before = json.dumps(final, sort_keys=True, default=str)
        out = await self.call(
            "after_agent", agent=_agent_data(agent), message=message, output=final
        )
        changed = json.dumps(final, sort_keys=True, default=str) != before
        if out.value is not None or changed:
            raise OutputGuardrailTripwireTriggered(
                OutputGuardrailResult(
                    guardrail=self._output_guardrail,
                    agent_output=output,
                    agent=agent,
                    output=self._trip(
                        "after_agent", out, out.value if out.value is not None else final
                    ),
                )
            )
        self.output = final
        await self.call("after_run", message=message, output=final)

    async def before_agent(self, agent: Agent[Any]) -> None:
        """``before_agent``, from the run hooks: non-None stops the run (the SDK cannot
        skip an agent) with the input tripwire."""
        self.context["agent_name"] = agent.name
        message = self._message or {"role": "user", "content": ""}
        out = await self.call("before_agent", agent=_agent_data(agent), message=message)
        if out.value is not None:
            raise InputGuardrailTripwireTriggered(
                InputGuardrailResult(
                    guardrail=self._input_guardrail,
                    output=self._trip("before_agent", out, out.value),
                )
            )

    # ------------------------------------------------------------------ wiring
    def _wire_agent(self, agent: Agent[Any], done: dict[int, Agent[Any]]) -> Agent[Any]:
        if id(agent) in done:
            return done[id(agent)]
        model = agent.model
        clone = agent.clone(
            tools=[self._wire_tool(t) if isinstance(t, FunctionTool) else t for t in agent.tools],
            model=PlugboxModel(model, self) if isinstance(model, Model) else model,
        )
        done[id(agent)] = clone
        clone.handoffs = [
            self._wire_agent(h, done) if isinstance(h, Agent) else h for h in agent.handoffs
        ]
        return clone

    def _wire_tool(self, tool: FunctionTool) -> FunctionTool:
        wrapped = copy.copy(tool)
        wrapped.on_invoke_tool = ToolInvoker(self, wrapped, wrapped.on_invoke_tool)
        return wrapped


def _agent_data(agent: Any) -> dict[str, Any]:
    """An agent as the hooks' ``agent``: its name, and its instructions and handoff
    description when they are text."""
    data: dict[str, Any] = {"name": str(getattr(agent, "name", ""))}
    for key in ("instructions", "handoff_description"):
        value = getattr(agent, key, None)
        if isinstance(value, str):
            data[key] = value
    return data
