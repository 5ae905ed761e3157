"""The SDK objects a ``WiredRun`` puts around a run: function tools, models and run
hooks that call the AGENT hooks before and after the SDK's own work."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from agents import Agent, FunctionTool, Model, ModelProvider
from agents.exceptions import AgentsException
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.lifecycle import RunHooksBase

from ..reports import Outcome
from . import _openai_convert as convert
from ._openai_failures import AgentsPluginFailure


class RunCalls(Protocol):
    """What the wrappers ask of the run they belong to (``WiredRun``)."""

    async def call(self, hook: str, **args: Any) -> Outcome: ...

    async def emit(self, kind: str, content: Any) -> dict[str, Any]: ...

    def tool_context(self, call_id: str | None) -> dict[str, Any]: ...

    def keep_state(self, context: Mapping[str, Any]) -> None: ...

    def message_for_model(self, items: list[Any]) -> list[Any]: ...

    async def before_agent(self, agent: Agent[Any]) -> None: ...

    async def after_agent(self, agent: Agent[Any], output: Any) -> None: ...


# ---------------------------------------------------------------------- tools
class ToolInvoker:
    """A function tool's ``on_invoke_tool`` with ``before_tool`` / ``after_tool`` /
    ``on_tool_error`` around the original."""

    def __init__(self, run: RunCalls, tool: FunctionTool, invoke: Any) -> None:
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
class PlugboxProvider(ModelProvider):
    """The run's model provider: every model it gives is wrapped (``PlugboxModel``)."""

    def __init__(self, inner: ModelProvider, run: RunCalls) -> None:
        self.inner = inner
        self.run = run

    def get_model(self, model_name: str | None) -> Model:
        return PlugboxModel(self.inner.get_model(model_name), self.run, model_name)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class PlugboxModel(Model):
    """A model with ``before_model`` / ``after_model`` / ``on_model_error`` around it."""

    def __init__(self, inner: Model, run: RunCalls, name: str | None = None) -> None:
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
class PlugboxRunHooks(RunHooksBase[Any, Any]):
    """Run hooks: ``before_agent`` at each agent's start, every callback an
    ``on_event`` event; then the caller's own hooks, if any."""

    def __init__(self, run: RunCalls, inner: RunHooksBase[Any, Any] | None) -> None:
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
