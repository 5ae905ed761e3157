"""``PlugboxPlugin``: the ADK plugin that forwards each callback to the AGENT hooks
(what it does with each is in ``plugbox.adapters.adk``)."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.events.event import Event
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins.base_plugin import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.genai import types

from ..host import PluginHost, SyncPluginHost
from ..reports import Outcome
from . import _adk_convert as convert
from ._adk_context import (
    RunMemory,
    agent_of,
    callback_context_of,
    context_of,
    error_of,
    invocation_of,
    is_stored,
    last_answer,
    state_changes,
    tool_context_of,
    tool_of,
    tool_result,
    update_in_place,
)
from ._adk_request import RequestView

if TYPE_CHECKING:
    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.tools.tool_context import ToolContext

log = logging.getLogger("plugbox.adapters.adk")


class PlugboxPlugin(BasePlugin):
    """An ADK plugin that runs every callback through a plugbox host's AGENT hooks.

    ``host`` is an open ``PluginHost`` on ``plugbox.specs.AGENT`` (for
    ``Runner.run_async``, on the same event loop) or a ``SyncPluginHost`` (for any
    loop, ``Runner.run`` included; calls go through a worker thread). ``name`` is the
    ADK plugin's name (unique among a runner's plugins). The host is not closed with
    the runner.
    """

    def __init__(self, host: PluginHost | SyncPluginHost, *, name: str = "plugbox") -> None:
        super().__init__(name=name)
        if not isinstance(host, (PluginHost, SyncPluginHost)):
            raise TypeError(
                f"PlugboxPlugin needs a PluginHost or SyncPluginHost, not {type(host).__name__}"
            )
        if "before_model" not in host.hooks or "on_event" not in host.hooks:
            raise ValueError("PlugboxPlugin needs a host on plugbox.specs.AGENT")
        self.host = host
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._memory = RunMemory()

    # ------------------------------------------------------------------ calling
    def _wants(self, *hooks: str) -> bool:
        """Whether an added plugin implements one of ``hooks``."""
        return any(hook in info.hooks for info in self.host.plugins for hook in hooks)

    async def _call(self, hook: str, **args: Any) -> Outcome:
        host = self.host
        if isinstance(host, SyncPluginHost):
            return await asyncio.to_thread(lambda: host.call(hook, **args))
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this PlugboxPlugin's PluginHost lives on another event loop "
                "(ADK's Runner.run runs the agent on a loop of its own): "
                "use Runner.run_async on the host's loop, or pass a "
                "SyncPluginHost"
            )
        return await host.call(hook, **args)

    # ------------------------------------------------------------------ run
    async def on_user_message_callback(
        self, *, invocation_context: InvocationContext, user_message: types.Content
    ) -> types.Content | None:
        """AGENT ``on_user_message``: a return or a change replaces the user message."""
        if not self._wants("on_user_message"):
            return None
        message = convert.message_of(user_message)
        before = copy.deepcopy(message)
        context = context_of(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("on_user_message", message=message, context=context)
        self._memory.keep_state(ctx_before, out.args.get("context"), ic=invocation_context)
        if out.value is not None:
            return convert.content_of(out.value, role="user")
        message = out.args.get("message", message)
        if message != before:
            return convert.content_of(message, role="user", base=user_message)
        return None

    async def before_run_callback(
        self, *, invocation_context: InvocationContext
    ) -> types.Content | None:
        """AGENT ``before_run``: a return ends the run with that output."""
        if not self._wants("before_run"):
            return None
        message = convert.message_of(invocation_context.user_content)
        before = copy.deepcopy(message)
        context = context_of(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_run", message=message, context=context)
        self._memory.keep_state(ctx_before, out.args.get("context"), ic=invocation_context)
        if out.value is not None:
            return convert.content_of(out.value, role="model")
        if out.args.get("message") != before:
            log.warning(
                "before_run: a change to the user message is ignored under ADK "
                "(it is stored by then; change it in on_user_message)"
            )
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """AGENT ``after_run`` (observe): the user message and the run's last answer."""
        try:
            if not self._wants("after_run"):
                return
            message = convert.message_of(invocation_context.user_content)
            output = last_answer(invocation_context, author=None)
            await self._call(
                "after_run",
                message=message,
                output=output,
                context=context_of(invocation_context),
            )
        finally:
            self._memory.forget(invocation_context.invocation_id)

    async def on_run_error_callback(
        self, *, invocation_context: InvocationContext, error: Exception
    ) -> None:
        """Forget what was kept for the failed run (no AGENT hook)."""
        self._memory.forget(invocation_context.invocation_id)

    async def on_event_callback(
        self, *, invocation_context: InvocationContext, event: Event
    ) -> Event | None:
        """AGENT ``on_event``: tags, text and author are applied to the event in place.

        ADK 2.x calls it before the event is stored, ADK 1.x after (then changes reach
        the event yielded, and the stored one only where the session service keeps the
        same object, as the in-memory one does); deferred state changes ride on an
        event that is still to be stored.
        """
        ic = invocation_context
        unstored = not event.partial and not is_stored(ic, event)
        pending = self._memory.pending.pop(ic.invocation_id, None) if unstored else None
        if pending:
            event.actions.state_delta = {**pending, **event.actions.state_delta}
        if not self._wants("on_event"):
            return None
        view = convert.EventView(event)
        context = context_of(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("on_event", event=view.data, context=context)
        final = out.value if isinstance(out.value, Mapping) else out.args.get("event")
        view.apply(event, final)
        changes = state_changes(ctx_before, out.args.get("context"))
        if changes and unstored:
            event.actions.state_delta = {**event.actions.state_delta, **changes}
        elif changes:
            self._memory.defer_state(ic, changes)
        return None

    # ------------------------------------------------------------------ agents
    async def before_agent_callback(
        self, *, agent: BaseAgent, callback_context: CallbackContext
    ) -> types.Content | None:
        """AGENT ``before_agent``: a return is the agent's answer; the agent is skipped."""
        self._memory.carry_state(callback_context)
        if not self._wants("before_agent"):
            return None
        message = convert.message_of(callback_context.user_content)
        before = copy.deepcopy(message)
        context = callback_context_of(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "before_agent", agent=agent_of(agent), message=message, context=context
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.content_of(out.value, role="model")
        if out.args.get("message") != before:
            log.warning(
                "before_agent: a change to the user message is ignored under ADK "
                "(it is stored by then; change it in on_user_message)"
            )
        return None

    async def after_agent_callback(
        self, *, agent: BaseAgent, callback_context: CallbackContext
    ) -> types.Content | None:
        """AGENT ``after_agent``: a return or a change to ``output`` is a new answer."""
        self._memory.carry_state(callback_context)
        ic = invocation_of(callback_context)
        self._memory.requests.pop((ic.invocation_id, agent.name), None)
        if not self._wants("after_agent"):
            return None
        output = last_answer(ic, author=agent.name)
        before = copy.deepcopy(output)
        context = callback_context_of(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_agent",
            agent=agent_of(agent),
            message=convert.message_of(callback_context.user_content),
            output=output,
            context=context,
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.content_of(out.value, role="model")
        output = out.args.get("output", output)
        if output != before:
            return convert.content_of(output, role="model")
        return None

    # ------------------------------------------------------------------ models
    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        """AGENT ``before_model``: changes reach the model; a return is the response."""
        self._memory.carry_state(callback_context)
        if not self._wants("before_model", "after_model"):
            return None
        view = RequestView(llm_request)
        if not self._wants("before_model"):  # only after_model: it gets the request
            self._memory.keep_request(callback_context, view.snapshot)
            return None
        context = callback_context_of(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_model", request=view.data, context=context)
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if view.apply(llm_request, out.args.get("request")):
            view = RequestView(llm_request)
        self._memory.keep_request(callback_context, view.snapshot)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        return None

    async def after_model_callback(
        self, *, callback_context: CallbackContext, llm_response: LlmResponse
    ) -> LlmResponse | None:
        """AGENT ``after_model``: a return replaces the response; changes in place are
        applied to it."""
        self._memory.carry_state(callback_context)
        if not self._wants("after_model"):
            return None
        request = self._memory.requests.get(
            (callback_context.invocation_id, callback_context.agent_name), {}
        )
        response = convert.response_of(llm_response)
        before = copy.deepcopy(response)
        context = callback_context_of(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_model", request=copy.deepcopy(request), response=response, context=context
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        convert.apply_response(llm_response, before, out.args.get("response"))
        return None

    async def on_model_error_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest, error: Exception
    ) -> LlmResponse | None:
        """AGENT ``on_model_error``: a return is the response instead of the error."""
        self._memory.carry_state(callback_context)
        if not self._wants("on_model_error"):
            return None
        context = callback_context_of(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "on_model_error",
            request=RequestView(llm_request).data,
            error=error_of(error),
            context=context,
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        return None

    # ------------------------------------------------------------------ tools
    async def before_tool_callback(
        self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        """AGENT ``before_tool``: changes to ``args`` reach the tool; a return is the
        result and the tool is not called."""
        self._memory.carry_state(tool_context)
        if not self._wants("before_tool"):
            return None
        args = convert.plain(tool_args)
        before = copy.deepcopy(args)
        context = tool_context_of(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_tool", tool=tool_of(tool), args=args, context=context)
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        update_in_place(tool_args, before, out.args.get("args"))
        if out.value is not None:
            return tool_result(out.value)
        return None

    async def after_tool_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        result: dict[str, Any],
    ) -> dict[str, Any] | None:
        """AGENT ``after_tool``: a return, or a change in place, is the result."""
        self._memory.carry_state(tool_context)
        if not self._wants("after_tool"):
            return None
        data = convert.plain(result)
        before = copy.deepcopy(data)
        context = tool_context_of(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_tool",
            tool=tool_of(tool),
            args=convert.plain(tool_args),
            result=data,
            context=context,
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        if out.value is not None:
            return tool_result(out.value)
        after = out.args.get("result")
        if after == before:
            return None
        if isinstance(result, dict) and isinstance(after, dict):
            update_in_place(result, before, after)
            return None
        return tool_result(after)

    async def on_tool_error_callback(
        self,
        *,
        tool: BaseTool,
        tool_args: dict[str, Any],
        tool_context: ToolContext,
        error: Exception,
    ) -> dict[str, Any] | None:
        """AGENT ``on_tool_error``: a return is the result instead of the error. A
        cancelled call (ADK reports those too) is not forwarded: it cannot be
        recovered."""
        self._memory.carry_state(tool_context)
        if not isinstance(error, Exception) or not self._wants("on_tool_error"):
            return None
        context = tool_context_of(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "on_tool_error",
            tool=tool_of(tool),
            args=convert.plain(tool_args),
            error=error_of(error),
            context=context,
        )
        self._memory.keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        if out.value is not None:
            return tool_result(out.value)
        return None
