"""plugbox inside Google ADK: sandboxed plugins on a real ADK ``Runner``.

Install with ``pip install 'plugbox[adk]'``. Open a ``PluginHost`` on
``plugbox.specs.AGENT``, add plugins, and give the runner one ``PlugboxPlugin``::

    from google.adk.apps import App
    from google.adk.runners import Runner
    from plugbox import PluginHost, specs
    from plugbox.adapters.adk import PlugboxPlugin, run_async

    async with PluginHost(specs.AGENT) as host:
        await host.add("plugbox.plugins.global_instruction", config={"instruction": "..."})
        app = App(name="app", root_agent=agent, plugins=[PlugboxPlugin(host)])
        runner = Runner(app=app, session_service=session_service)
        async for event in run_async(runner, user_id=..., session_id=..., new_message=...):
            ...

``PlugboxPlugin`` is an ADK ``BasePlugin``: ADK calls it like any other plugin, in the
order plugins were given, and it forwards each callback to the host's AGENT hook of the
same meaning, with ADK's objects converted to the hooks' plain data
(``plugbox.adapters._adk_convert``) and what the sandboxed plugins changed applied back:

- ``on_user_message`` -> ``on_user_message``: a return, or a change in place, is the
  user message ADK stores and runs with;
- ``before_run`` -> ``before_run``: a return ends the run with that output;
- ``before_agent`` -> ``before_agent``: a return is the agent's answer, the agent is
  skipped;
- ``after_agent`` -> ``after_agent`` (``output``: the agent's last answer): a return, or
  a change to ``output``, is a new answer;
- ``before_model`` -> ``before_model``: changes to ``request`` (system instruction,
  messages, model; tools removed) reach the model; a return is the response and the
  model is not called;
- ``after_model`` -> ``after_model`` (``request``: as the model got it): a return
  replaces the response; a change in place is applied to its text and tool calls;
- ``on_model_error`` -> ``on_model_error``: a return is the response instead of the error;
- ``before_tool`` -> ``before_tool``: changes to ``args`` reach the tool; a return is the
  result and the tool is not called;
- ``after_tool`` -> ``after_tool``: a return, or a change to ``result``, is the result;
- ``on_tool_error`` -> ``on_tool_error``: a return is the result instead of the error;
- ``on_event`` -> ``on_event``: tags go to ``event.custom_metadata["tags"]``, a changed
  text or author onto the event (before ADK 2.x stores and yields it; ADK 1.x stores
  it first);
- ``after_run`` -> ``after_run`` (observe; ``output``: the run's last answer).

Changes to ``context["state"]`` are written to ADK's session state (through ADK's state
delta, so they persist; removing a key is not carried over). A hook no added plugin
implements costs nothing: its arguments are not even converted. Not applied, because
ADK has used them by then: a change to ``message`` in ``before_run`` and
``before_agent`` (the session holds it already: change it in ``on_user_message``; a
warning is logged), to an event's tool calls or results, and tools a plugin adds to a
request. ADK's notification-only ``on_agent_error`` and ``on_run_error`` callbacks
(2.x) have no AGENT hook and are not forwarded.

Failures follow the hook's policy (``specs.AGENT``: ``on_event`` and ``after_run`` skip,
the others raise). A skipped failure is logged by the host, in ``host.reports``, and the
run goes on. A raised one fails the run: ADK wraps any exception a plugin raises in a
``RuntimeError`` ("Error in plugin 'plugbox' during ..."), with the plugbox
``PluginFailure`` as its ``__cause__``; iterate with ``run_async`` here, or wrap the
iteration in ``with unwrap_plugin_failures():``, and the ``PluginFailure`` itself
(``PluginCrashed``, ``PluginTimeout``...) is what is raised. Either way the worker that
failed was killed or restarted by the host; the framework's process goes on.

The plugin does not own the host: ADK's ``Runner.close()`` leaves it open; close it
yourself (``async with``). ADK runs on asyncio, so open the host on asyncio, on the
loop that runs the agent. For ADK's blocking ``Runner.run`` (which runs the agent on a
loop of its own, in another thread), pass a ``plugbox.SyncPluginHost`` instead (ADK
1.x's ``Runner.run`` drops an error raised in the run, a plugin failure included; 2.x
re-raises it).

Tested with google-adk 1.14.0 and 2.13.0 (``tests/adapters/test_adk.py``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.events.event import Event
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins.base_plugin import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.genai import types

from ..errors import PluginFailure
from ..host import PluginHost, SyncPluginHost
from ..reports import Outcome
from . import _adk_convert as convert

if TYPE_CHECKING:
    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.runners import Runner
    from google.adk.tools.tool_context import ToolContext

__all__ = ["TAGS_KEY", "PlugboxPlugin", "plugin_failure_in", "run_async", "unwrap_plugin_failures"]

log = logging.getLogger("plugbox.adapters.adk")

#: the ``Event.custom_metadata`` key where an event's tags go.
TAGS_KEY = convert.TAGS_KEY

_MAX_REMEMBERED = 1024  # model requests and state changes kept for runs in flight


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
        # per (invocation, agent): the last model request, for after_model's ``request``
        self._requests: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        # per invocation: state changes made where ADK has no state delta, carried
        # onto the next event so they persist
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()

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

    # ------------------------------------------------------------------ context
    @staticmethod
    def _context(
        ic: InvocationContext,
        state: Mapping[str, Any] | None = None,
        agent_name: str | None = None,
        tool_call_id: str | None = None,
    ) -> dict[str, Any]:
        if agent_name is None:
            agent = getattr(ic, "agent", None)
            agent_name = getattr(agent, "name", "") or ""
        session = ic.session
        context: dict[str, Any] = {
            "invocation_id": ic.invocation_id,
            "agent_name": agent_name,
            "state": convert.plain(dict(session.state if state is None else state)),
            "user_id": getattr(ic, "user_id", None) or session.user_id,
            "session_id": session.id,
            "app_name": session.app_name,
        }
        if tool_call_id is not None:
            context["tool_call_id"] = tool_call_id
        return context

    def _callback_context(
        self, cc: CallbackContext, tool_call_id: str | None = None
    ) -> dict[str, Any]:
        return self._context(_invocation_of(cc), cc.state.to_dict(), cc.agent_name, tool_call_id)

    @staticmethod
    def _state_changes(before: dict[str, Any], context: Any) -> dict[str, Any]:
        state = context.get("state") if isinstance(context, Mapping) else None
        if not isinstance(state, Mapping):
            return {}
        old = before.get("state") or {}
        return {k: v for k, v in state.items() if k not in old or old[k] != v}

    def _keep_state(
        self,
        before: dict[str, Any],
        context: Any,
        cc: CallbackContext | None = None,
        ic: InvocationContext | None = None,
    ) -> None:
        """Write the plugins' changes to ``context["state"]`` to ADK's state: through a
        callback context's state (ADK records the delta), else into the session and
        onto the next event of the invocation."""
        changes = self._state_changes(before, context)
        if not changes:
            return
        if cc is not None:
            for key, value in changes.items():
                cc.state[key] = value
            return
        if ic is not None:
            self._defer_state(ic, changes)

    def _defer_state(self, ic: InvocationContext, changes: dict[str, Any]) -> None:
        """State changes made where ADK records no delta: in the session now, and kept
        for the invocation's next callback context or unstored event to carry."""
        ic.session.state.update(changes)
        self._remember(self._pending, ic.invocation_id, {}).update(changes)

    def _carry_state(self, cc: CallbackContext) -> None:
        """Hand the invocation's deferred state changes to a callback context: ADK
        records them in its delta and stores them with the agent's next event."""
        pending = self._pending.pop(cc.invocation_id, None)
        for key, value in (pending or {}).items():
            cc.state[key] = value

    @staticmethod
    def _remember(table: OrderedDict[Any, Any], key: Any, value: Any) -> Any:
        """``table[key]`` (``value`` if it has none), the newest of at most
        ``_MAX_REMEMBERED`` entries (runs that fail leave theirs behind)."""
        current = table.setdefault(key, value)
        table.move_to_end(key)
        while len(table) > _MAX_REMEMBERED:
            table.popitem(last=False)
        return current

    def _keep_request(self, cc: CallbackContext, request: dict[str, Any]) -> None:
        key = (cc.invocation_id, cc.agent_name)
        self._requests.pop(key, None)
        self._remember(self._requests, key, request)

    def _forget(self, invocation_id: str) -> None:
        self._pending.pop(invocation_id, None)
        for key in [k for k in self._requests if k[0] == invocation_id]:
            del self._requests[key]

    # ------------------------------------------------------------------ run
    async def on_user_message_callback(
        self, *, invocation_context: InvocationContext, user_message: types.Content
    ) -> types.Content | None:
        """AGENT ``on_user_message``: a return or a change replaces the user message."""
        if not self._wants("on_user_message"):
            return None
        message = convert.message_of(user_message)
        before = copy.deepcopy(message)
        context = self._context(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("on_user_message", message=message, context=context)
        self._keep_state(ctx_before, out.args.get("context"), ic=invocation_context)
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
        context = self._context(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_run", message=message, context=context)
        self._keep_state(ctx_before, out.args.get("context"), ic=invocation_context)
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
            output = _last_answer(invocation_context, author=None)
            await self._call(
                "after_run",
                message=message,
                output=output,
                context=self._context(invocation_context),
            )
        finally:
            self._forget(invocation_context.invocation_id)

    async def on_run_error_callback(
        self, *, invocation_context: InvocationContext, error: Exception
    ) -> None:
        """Forget what was kept for the failed run (no AGENT hook)."""
        self._forget(invocation_context.invocation_id)

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
        unstored = not event.partial and not _stored(ic, event)
        pending = self._pending.pop(ic.invocation_id, None) if unstored else None
        if pending:
            event.actions.state_delta = {**pending, **event.actions.state_delta}
        if not self._wants("on_event"):
            return None
        view = convert.EventView(event)
        context = self._context(invocation_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("on_event", event=view.data, context=context)
        final = out.value if isinstance(out.value, Mapping) else out.args.get("event")
        view.apply(event, final)
        changes = self._state_changes(ctx_before, out.args.get("context"))
        if changes and unstored:
            event.actions.state_delta = {**event.actions.state_delta, **changes}
        elif changes:
            self._defer_state(ic, changes)
        return None

    # ------------------------------------------------------------------ agents
    async def before_agent_callback(
        self, *, agent: BaseAgent, callback_context: CallbackContext
    ) -> types.Content | None:
        """AGENT ``before_agent``: a return is the agent's answer; the agent is skipped."""
        self._carry_state(callback_context)
        if not self._wants("before_agent"):
            return None
        message = convert.message_of(callback_context.user_content)
        before = copy.deepcopy(message)
        context = self._callback_context(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "before_agent", agent=_agent_of(agent), message=message, context=context
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=callback_context)
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
        self._carry_state(callback_context)
        ic = _invocation_of(callback_context)
        self._requests.pop((ic.invocation_id, agent.name), None)
        if not self._wants("after_agent"):
            return None
        output = _last_answer(ic, author=agent.name)
        before = copy.deepcopy(output)
        context = self._callback_context(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_agent",
            agent=_agent_of(agent),
            message=convert.message_of(callback_context.user_content),
            output=output,
            context=context,
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=callback_context)
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
        self._carry_state(callback_context)
        if not self._wants("before_model", "after_model"):
            return None
        view = convert.RequestView(llm_request)
        if not self._wants("before_model"):  # only after_model: it gets the request
            self._keep_request(callback_context, view.snapshot)
            return None
        context = self._callback_context(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_model", request=view.data, context=context)
        self._keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if view.apply(llm_request, out.args.get("request")):
            view = convert.RequestView(llm_request)
        self._keep_request(callback_context, view.snapshot)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        return None

    async def after_model_callback(
        self, *, callback_context: CallbackContext, llm_response: LlmResponse
    ) -> LlmResponse | None:
        """AGENT ``after_model``: a return replaces the response; changes in place are
        applied to it."""
        self._carry_state(callback_context)
        if not self._wants("after_model"):
            return None
        request = self._requests.get(
            (callback_context.invocation_id, callback_context.agent_name), {}
        )
        response = convert.response_of(llm_response)
        before = copy.deepcopy(response)
        context = self._callback_context(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_model", request=copy.deepcopy(request), response=response, context=context
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        convert.apply_response(llm_response, before, out.args.get("response"))
        return None

    async def on_model_error_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest, error: Exception
    ) -> LlmResponse | None:
        """AGENT ``on_model_error``: a return is the response instead of the error."""
        self._carry_state(callback_context)
        if not self._wants("on_model_error"):
            return None
        context = self._callback_context(callback_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "on_model_error",
            request=convert.RequestView(llm_request).data,
            error=_error_of(error),
            context=context,
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=callback_context)
        if out.value is not None:
            return convert.llm_response_of(out.value)
        return None

    # ------------------------------------------------------------------ tools
    def _tool_context(self, tool_context: ToolContext) -> dict[str, Any]:
        return self._callback_context(
            tool_context, getattr(tool_context, "function_call_id", None) or ""
        )

    async def before_tool_callback(
        self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
    ) -> dict[str, Any] | None:
        """AGENT ``before_tool``: changes to ``args`` reach the tool; a return is the
        result and the tool is not called."""
        self._carry_state(tool_context)
        if not self._wants("before_tool"):
            return None
        args = convert.plain(tool_args)
        before = copy.deepcopy(args)
        context = self._tool_context(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call("before_tool", tool=_tool_of(tool), args=args, context=context)
        self._keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        _update_in_place(tool_args, before, out.args.get("args"))
        if out.value is not None:
            return _result(out.value)
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
        self._carry_state(tool_context)
        if not self._wants("after_tool"):
            return None
        data = convert.plain(result)
        before = copy.deepcopy(data)
        context = self._tool_context(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "after_tool",
            tool=_tool_of(tool),
            args=convert.plain(tool_args),
            result=data,
            context=context,
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        if out.value is not None:
            return _result(out.value)
        after = out.args.get("result")
        if after == before:
            return None
        if isinstance(result, dict) and isinstance(after, dict):
            _update_in_place(result, before, after)
            return None
        return _result(after)

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
        self._carry_state(tool_context)
        if not isinstance(error, Exception) or not self._wants("on_tool_error"):
            return None
        context = self._tool_context(tool_context)
        ctx_before = copy.deepcopy(context)
        out = await self._call(
            "on_tool_error",
            tool=_tool_of(tool),
            args=convert.plain(tool_args),
            error=_error_of(error),
            context=context,
        )
        self._keep_state(ctx_before, out.args.get("context"), cc=tool_context)
        if out.value is not None:
            return _result(out.value)
        return None


# ---------------------------------------------------------------------- helpers
def _invocation_of(cc: Any) -> InvocationContext:
    ic: InvocationContext = cc._invocation_context
    return ic


def _agent_of(agent: BaseAgent) -> dict[str, Any]:
    data: dict[str, Any] = {"name": agent.name, "description": agent.description or ""}
    model = getattr(agent, "model", None)
    if isinstance(model, str):
        data["model"] = model
    elif model is not None and isinstance(getattr(model, "model", None), str):
        data["model"] = model.model
    return data


def _tool_of(tool: BaseTool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": tool.name, "description": tool.description or ""}
    try:
        declaration = tool._get_declaration()
    except Exception:  # a tool that cannot declare itself is named, not described
        declaration = None
    if declaration is not None:
        data["parameters"] = convert.tool_of_declaration(declaration)["parameters"]
    if getattr(tool, "is_long_running", False):
        data["long_running"] = True
    return data


def _error_of(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__, "message": str(error)}


def _result(value: Any) -> dict[str, Any]:
    """A plugin's return as a tool result: ADK's tool results are dicts."""
    value = convert.plain(value)
    return value if isinstance(value, dict) else {"result": value}


def _update_in_place(target: MutableMapping[str, Any], before: Any, after: Any) -> None:
    """Apply to ``target`` the keys that changed between ``before`` and ``after``."""
    if not isinstance(after, Mapping) or after == before:
        return
    old = before if isinstance(before, Mapping) else {}
    for key in [k for k in target if k not in after and k in old]:
        del target[key]
    for key, value in after.items():
        if key not in old or old[key] != value:
            target[key] = value


def _stored(ic: InvocationContext, event: Event) -> bool:
    """Whether ``event`` is in the session already (ADK 1.x stores it before
    ``on_event``)."""
    for stored in reversed(ic.session.events[-8:]):
        if stored is event or (event.id and stored.id == event.id):
            return True
    return False


def _last_answer(ic: InvocationContext, author: str | None) -> dict[str, Any]:
    """The last text the invocation's agents (or ``author``) answered with."""
    for event in reversed(ic.session.events):
        if event.invocation_id != ic.invocation_id or event.author == "user":
            continue
        if author is not None and event.author != author:
            continue
        if event.partial or not event.content:
            continue
        text = convert.text_of(event.content)
        if text:
            return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": ""}


# ---------------------------------------------------------------------- failures
def plugin_failure_in(exc: BaseException) -> PluginFailure | None:
    """The ``PluginFailure`` that caused ``exc`` (``exc`` itself, its ``__cause__`` or
    ``__context__`` chain, or within an exception group), or None."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PluginFailure):
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None


@contextmanager
def unwrap_plugin_failures() -> Iterator[None]:
    """Raise the plugbox ``PluginFailure`` behind an exception ADK wrapped it in.

    ADK turns any exception a plugin raises into a ``RuntimeError``; around an ADK
    run (``async for ... in runner.run_async(...)`` or ``runner.run(...)``) this
    re-raises the ``PluginFailure`` (with its ``report``) instead. Other exceptions
    pass unchanged.
    """
    try:
        yield
    except Exception as exc:
        failure = plugin_failure_in(exc)
        if failure is None or failure is exc:
            raise
        raise failure from None


async def run_async(runner: Runner, /, **kwargs: Any) -> AsyncIterator[Event]:
    """``runner.run_async(**kwargs)``'s events; a plugin failure that failed the run
    is raised as the plugbox ``PluginFailure`` (see ``unwrap_plugin_failures``)."""
    with unwrap_plugin_failures():
        async with aclosing(runner.run_async(**kwargs)) as events:
            async for event in events:
                yield event
