"""plugbox inside the OpenAI Agents SDK: sandboxed plugins on a real ``Runner.run``.

Install with ``pip install 'plugbox[openai-agents]'``. Open a ``PluginHost`` on
``plugbox.specs.AGENT``, add plugins, then wire each run::

    from agents import Runner
    from plugbox.adapters.openai_agents import wire

    wired = wire(host, agent, run_config=config)          # one per run
    result = await Runner.run(wired.agent, "hi", hooks=wired.hooks,
                              run_config=wired.run_config)

or, the same in one line: ``await run(host, agent, "hi", run_config=config)``.

``wire`` leaves ``agent`` and ``run_config`` as they are and returns copies: the agent
(and every ``Agent`` in its ``handoffs``, recursively) with its function tools wrapped
and a ``Model`` instance wrapped; the run config with a wrapped model provider and an
input guardrail in front of yours; and run hooks that also call ``hooks``. Where the
SDK lets work be changed or blocked, the AGENT hooks keep their semantics
(``first_result``, changes in place, fail closed); where it only observes, what
happens is delivered as ``on_event`` events:

=========================  ====================  ==========================================
SDK point                  AGENT hook            what a plugin can do there
=========================  ====================  ==========================================
input guardrail            ``on_user_message``   replace or change the user message (the
(before the first agent)                         model sees the new text)
input guardrail            ``before_run``        non-None: the run stops,
                                                 ``InputGuardrailTripwireTriggered``
``on_agent_start``         ``before_agent``      non-None: the run stops, the same tripwire
model (wrapped)            ``before_model``      change the request in place; non-None is
                                                 the response: the model is not called
model (wrapped)            ``after_model``       non-None (or a change) replaces the response
model raised               ``on_model_error``    non-None is the response; None: it raises
function tool (wrapped)    ``before_tool``       change ``args`` in place; non-None is the
                                                 result: the tool is not called
function tool (wrapped)    ``after_tool``        non-None (or a change) replaces the result
function tool raised       ``on_tool_error``     non-None is the result; None: it raises
``on_agent_end`` (final)   ``after_agent``       non-None or a change: the run stops,
                                                 ``OutputGuardrailTripwireTriggered``
``on_agent_end`` (final)   ``after_run``         observe (the final output)
every run hook callback    ``on_event``          observe / tag: ``agent_start``,
                                                 ``llm_start``, ``llm_end``, ``tool_start``,
                                                 ``tool_end``, ``handoff``, ``agent_end``
=========================  ====================  ==========================================

A plugin failure whose policy is ``"raise"`` (the spec's default but for ``on_event``
and ``after_run``) fails the run: ``Runner.run`` raises the plugbox ``PluginFailure``
(``PluginCrashed``, ``PluginTimeout``...) with its ``report``. The exception is of a
subclass that is also the SDK's ``AgentsException`` (``AgentsPluginFailure``), so the
SDK lets it through as it is instead of wrapping it (it wraps other exceptions raised
in tools in a ``UserError``). Failures whose policy is ``"skip"`` are collected in
``WiredRun.failures`` and logged (by the host); the run goes on.

``Runner.run_streamed`` is refused (an ``AgentsException``) rather than run without its
plugins: a model stream cannot be replaced or changed by ``before_model`` /
``after_model``. The SDK runs on asyncio only, and so does this adapter: open the host
on asyncio.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents import (
    Agent,
    FunctionTool,
    GuardrailFunctionOutput,
    InputGuardrail,
    InputGuardrailTripwireTriggered,
    Model,
    ModelProvider,
    OutputGuardrail,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    RunContextWrapper,
    Runner,
    RunResult,
)
from agents.exceptions import AgentsException
from agents.guardrail import InputGuardrailResult, OutputGuardrailResult
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.lifecycle import RunHooksBase

from .. import specs
from ..errors import FAILURE_TYPES, PluginFailure
from ..reports import FailureReport, Outcome
from . import _openai_convert as convert

if TYPE_CHECKING:
    from ..host import PluginHost

__all__ = ["AgentsPluginFailure", "WiredRun", "agents_failure", "run", "wire"]


# ---------------------------------------------------------------------- failures
class AgentsPluginFailure(AgentsException):
    """Mixed into every ``PluginFailure`` the adapter raises, so that the SDK, which
    lets its own ``AgentsException`` through and wraps anything else raised in a tool
    in a ``UserError``, hands the plugbox error to the caller of ``Runner.run`` as it
    is. Catch ``plugbox.errors.PluginFailure`` (or ``PluginCrashed``...) as usual."""


def _sdk_type(cls: type[PluginFailure]) -> type[PluginFailure]:
    return type(
        cls.__name__,
        (cls, AgentsPluginFailure),
        {"__module__": __name__, "__doc__": cls.__doc__, "__qualname__": cls.__name__},
    )


_FAILURE_CLASSES: list[type[PluginFailure]] = [PluginFailure, *FAILURE_TYPES.values()]
_SDK_TYPES: dict[type[PluginFailure], type[PluginFailure]] = {
    cls: _sdk_type(cls) for cls in _FAILURE_CLASSES
}


def agents_failure(failure: PluginFailure) -> PluginFailure:
    """``failure`` as an instance of its class mixed with ``AgentsPluginFailure``
    (the same report); one that already is, as it is."""
    if isinstance(failure, AgentsPluginFailure):
        return failure
    cls = _SDK_TYPES.get(type(failure)) or _SDK_TYPES[PluginFailure]
    converted = cls(failure.report)
    return converted.with_traceback(failure.__traceback__)


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
        self.hooks: RunHooksBase[Any, Any] = _Hooks(self, hooks)
        self.agent: Agent[Any] = self._wire_agent(agent, {})
        base = run_config if run_config is not None else RunConfig()
        model = base.model
        self.run_config: RunConfig = replace(
            base,
            model=_PlugboxModel(model, self) if isinstance(model, Model) else model,
            model_provider=_PlugboxProvider(base.model_provider, self),
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
            model=_PlugboxModel(model, self) if isinstance(model, Model) else model,
        )
        done[id(agent)] = clone
        clone.handoffs = [
            self._wire_agent(h, done) if isinstance(h, Agent) else h for h in agent.handoffs
        ]
        return clone

    def _wire_tool(self, tool: FunctionTool) -> FunctionTool:
        wrapped = copy.copy(tool)
        wrapped.on_invoke_tool = _ToolInvoker(self, wrapped, wrapped.on_invoke_tool)
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


# ---------------------------------------------------------------------- tools
class _ToolInvoker:
    """A function tool's ``on_invoke_tool`` with ``before_tool`` / ``after_tool`` /
    ``on_tool_error`` around the original."""

    def __init__(self, run: WiredRun, tool: FunctionTool, invoke: Any) -> None:
        self.run = run
        self.tool = tool
        self.invoke = invoke

    async def __call__(self, ctx: Any, input: str) -> Any:
        run = self.run
        tool = {"name": self.tool.name, "description": self.tool.description}
        parsed = convert.args_of(input)
        args: dict[str, Any] = parsed if isinstance(parsed, dict) else {"input": parsed}
        original = json.dumps(args, sort_keys=True)
        context = run.tool_context(getattr(ctx, "tool_call_id", None))
        try:
            out = await run.call("before_tool", tool=tool, args=args, context=context)
            if out.value is not None:
                return out.value
            if json.dumps(args, sort_keys=True) != original:
                input = json.dumps(args)
                if getattr(ctx, "_function_tool_arguments", None) is not None:
                    ctx._function_tool_arguments = None  # prepared for the old arguments
            try:
                result = await self.invoke(ctx, input)
            except AgentsPluginFailure:
                raise
            except Exception as exc:
                error = {"type": type(exc).__name__, "message": str(exc)}
                out = await run.call(
                    "on_tool_error", tool=tool, args=args, error=error, context=context
                )
                if out.value is None:
                    raise
                return out.value
            shown = convert.plain(result)
            before = json.dumps(shown, sort_keys=True, default=str)
            out = await run.call("after_tool", tool=tool, args=args, result=shown, context=context)
            if out.value is not None:
                return out.value
            if json.dumps(out.args["result"], sort_keys=True, default=str) != before:
                return out.args["result"]
            return result
        finally:
            run.keep_state(context)


# ---------------------------------------------------------------------- models
class _PlugboxProvider(ModelProvider):
    """The run's model provider: every model it gives is wrapped (``_PlugboxModel``)."""

    def __init__(self, inner: ModelProvider, run: WiredRun) -> None:
        self.inner = inner
        self.run = run

    def get_model(self, model_name: str | None) -> Model:
        return _PlugboxModel(self.inner.get_model(model_name), self.run, model_name)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class _PlugboxModel(Model):
    """A model with ``before_model`` / ``after_model`` / ``on_model_error`` around it."""

    def __init__(self, inner: Model, run: WiredRun, name: str | None = None) -> None:
        self.inner = inner
        self.run = run
        self.name = name or str(getattr(inner, "model", "") or type(inner).__name__)

    def __getattr__(self, name: str) -> Any:  # anything else the SDK asks of the model
        if name == "inner":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        cleanup = getattr(self.inner, "_cleanup_on_run_end", None)
        if cleanup is not None:
            await cleanup(owner)

    def get_retry_advice(self, request: Any) -> Any:
        advice = getattr(self.inner, "get_retry_advice", None)
        return advice(request) if advice is not None else None

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        run = self.run
        items = run.message_for_model(
            [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        )
        request = convert.request_from(self.name, system_instructions, items, tools, handoffs)
        out = await run.call("before_model", request=request.data)
        if out.value is not None:
            return convert.model_response_from(out.value)
        if request.changed():
            system_instructions, items = request.rebuilt()
        try:
            response = await self.inner.get_response(
                system_instructions,
                items,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                *args,
                **kwargs,
            )
        except AgentsPluginFailure:
            raise
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
            out = await run.call("on_model_error", request=request.data, error=error)
            if out.value is None:
                raise
            return convert.model_response_from(out.value)
        shown = convert.response_from(response)
        before = json.dumps(shown, sort_keys=True, default=str)
        out = await run.call("after_model", request=request.data, response=shown)
        if out.value is not None:
            return convert.model_response_from(out.value, response)
        if json.dumps(out.args["response"], sort_keys=True, default=str) != before:
            return convert.model_response_from(out.args["response"], response)
        return response

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise AgentsException(
            "plugbox.adapters.openai_agents wires Runner.run; a streamed run "
            "(Runner.run_streamed) is refused rather than run without its plugins: a model "
            "stream cannot be replaced or changed by before_model / after_model"
        )


# ---------------------------------------------------------------------- run hooks
class _Hooks(RunHooksBase[Any, Any]):
    """Run hooks: ``before_agent`` at each agent's start, every callback an
    ``on_event`` event; then the caller's own hooks, if any."""

    def __init__(self, run: WiredRun, inner: RunHooksBase[Any, Any] | None) -> None:
        self.run = run
        self.inner = inner

    async def _then(self, name: str, *args: Any) -> None:
        if self.inner is not None:
            await getattr(self.inner, name)(*args)

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        await self.run.before_agent(agent)
        await self.run.emit("agent_start", {"agent": agent.name})
        await self._then("on_agent_start", context, agent)

    async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
        await self.run.emit("agent_end", {"agent": agent.name, "output": output})
        await self.run.after_agent(agent, output)
        await self._then("on_agent_end", context, agent, output)

    async def on_llm_start(
        self, context: Any, agent: Any, system_prompt: str | None, input_items: list[Any]
    ) -> None:
        messages = [convert.message_of(item) for item in input_items]
        await self.run.emit(
            "llm_start", {"agent": agent.name, "system_prompt": system_prompt, "messages": messages}
        )
        await self._then("on_llm_start", context, agent, system_prompt, input_items)

    async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
        await self.run.emit(
            "llm_end", {"agent": agent.name, "response": convert.response_from(response)}
        )
        await self._then("on_llm_end", context, agent, response)

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        await self.run.emit("handoff", {"from": from_agent.name, "to": to_agent.name})
        await self._then("on_handoff", context, from_agent, to_agent)

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        await self.run.emit(
            "tool_start",
            {
                "agent": agent.name,
                "tool": getattr(tool, "name", type(tool).__name__),
                "tool_call_id": getattr(context, "tool_call_id", None),
                "args": convert.args_of(getattr(context, "tool_arguments", None)),
            },
        )
        await self._then("on_tool_start", context, agent, tool)

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        await self.run.emit(
            "tool_end",
            {
                "agent": agent.name,
                "tool": getattr(tool, "name", type(tool).__name__),
                "tool_call_id": getattr(context, "tool_call_id", None),
                "result": result,
            },
        )
        await self._then("on_tool_end", context, agent, tool, result)


# ---------------------------------------------------------------------- entry points
def wire(
    host: PluginHost,
    agent: Agent[Any],
    *,
    run_config: RunConfig | None = None,
    hooks: RunHooksBase[Any, Any] | None = None,
) -> WiredRun:
    """Wire one run of ``agent`` to ``host``'s plugins (a ``PluginHost`` on
    ``specs.AGENT``, open on asyncio).

    Returns a ``WiredRun``: pass its ``agent``, ``hooks`` and ``run_config`` to
    ``Runner.run``. ``agent``, ``run_config`` and ``hooks`` (your own run hooks, called
    after the adapter's) are not changed. Use one ``WiredRun`` per run: it holds the
    run's context, events and failures (a second run through it is refused). Without
    a ``run_config``, ``await wired.aclose()`` after the run closes the model provider
    made for it. Raises ValueError when the host lacks an AGENT hook.
    """
    return WiredRun(host, agent, run_config, hooks)


async def run(
    host: PluginHost,
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    *,
    run_config: RunConfig | None = None,
    hooks: RunHooksBase[Any, Any] | None = None,
    **kwargs: Any,
) -> RunResult:
    """``Runner.run(agent, input, ...)`` with ``host``'s plugins wired in (``wire``);
    other keyword arguments (``context``, ``max_turns``...) go to ``Runner.run``."""
    wired = wire(host, agent, run_config=run_config, hooks=hooks)
    try:
        return await Runner.run(
            wired.agent, input, hooks=wired.hooks, run_config=wired.run_config, **kwargs
        )
    finally:
        await wired.aclose()
