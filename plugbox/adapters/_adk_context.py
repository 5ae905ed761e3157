"""What ``PlugboxPlugin`` hands the AGENT hooks besides messages (the run's context,
agents, tools, errors), and what it keeps between an invocation's callbacks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from google.adk.agents.base_agent import BaseAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.events.event import Event
from google.adk.tools.base_tool import BaseTool

from . import _adk_convert as convert
from ._adk_request import tool_of_declaration

if TYPE_CHECKING:
    from google.adk.agents.invocation_context import InvocationContext
    from google.adk.tools.tool_context import ToolContext

_MAX_REMEMBERED = 1024  # model requests and state changes kept for runs in flight


# ---------------------------------------------------------------------- contexts
def context_of(
    ic: InvocationContext,
    state: Mapping[str, Any] | None = None,
    agent_name: str | None = None,
    tool_call_id: str | None = None,
) -> dict[str, Any]:
    """The hooks' ``context``: the invocation, agent, session and a copy of its state
    (``state`` when given: a callback context's view of it)."""
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


def callback_context_of(cc: CallbackContext, tool_call_id: str | None = None) -> dict[str, Any]:
    """The hooks' ``context`` in a callback that has a callback context."""
    return context_of(invocation_of(cc), cc.state.to_dict(), cc.agent_name, tool_call_id)


def tool_context_of(tool_context: ToolContext) -> dict[str, Any]:
    """The hooks' ``context`` in a tool callback: with the tool call's id."""
    return callback_context_of(tool_context, getattr(tool_context, "function_call_id", None) or "")


def state_changes(before: dict[str, Any], context: Any) -> dict[str, Any]:
    """The keys of ``context["state"]`` the plugins set or changed, with their values."""
    state = context.get("state") if isinstance(context, Mapping) else None
    if not isinstance(state, Mapping):
        return {}
    old = before.get("state") or {}
    return {k: v for k, v in state.items() if k not in old or old[k] != v}


class RunMemory:
    """What the plugin keeps per invocation between callbacks: each agent's last model
    request (``after_model``'s ``request``), and state changes made where ADK records no
    delta, carried onto the invocation's next event so they persist."""

    def __init__(self) -> None:
        # per (invocation, agent): the last model request, for after_model's ``request``
        self.requests: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        # per invocation: state changes made where ADK has no state delta, carried
        # onto the next event so they persist
        self.pending: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def keep_state(
        self,
        before: dict[str, Any],
        context: Any,
        cc: CallbackContext | None = None,
        ic: InvocationContext | None = None,
    ) -> None:
        """Write the plugins' changes to ``context["state"]`` to ADK's state: through a
        callback context's state (ADK records the delta), else into the session and
        onto the next event of the invocation."""
        changes = state_changes(before, context)
        if not changes:
            return
        if cc is not None:
            for key, value in changes.items():
                cc.state[key] = value
            return
        if ic is not None:
            self.defer_state(ic, changes)

    def defer_state(self, ic: InvocationContext, changes: dict[str, Any]) -> None:
        """State changes made where ADK records no delta: in the session now, and kept
        for the invocation's next callback context or unstored event to carry."""
        ic.session.state.update(changes)
        _remember(self.pending, ic.invocation_id, {}).update(changes)

    def carry_state(self, cc: CallbackContext) -> None:
        """Hand the invocation's deferred state changes to a callback context: ADK
        records them in its delta and stores them with the agent's next event."""
        pending = self.pending.pop(cc.invocation_id, None)
        for key, value in (pending or {}).items():
            cc.state[key] = value

    def keep_request(self, cc: CallbackContext, request: dict[str, Any]) -> None:
        """Keep the request an agent's model got, for ``after_model``."""
        key = (cc.invocation_id, cc.agent_name)
        self.requests.pop(key, None)
        _remember(self.requests, key, request)

    def forget(self, invocation_id: str) -> None:
        """Drop what was kept for an invocation that ended."""
        self.pending.pop(invocation_id, None)
        for key in [k for k in self.requests if k[0] == invocation_id]:
            del self.requests[key]


def _remember(table: OrderedDict[Any, Any], key: Any, value: Any) -> Any:
    """``table[key]`` (``value`` if it has none), the newest of at most
    ``_MAX_REMEMBERED`` entries (runs that fail leave theirs behind)."""
    current = table.setdefault(key, value)
    table.move_to_end(key)
    while len(table) > _MAX_REMEMBERED:
        table.popitem(last=False)
    return current


# ---------------------------------------------------------------------- agents, tools
def invocation_of(cc: Any) -> InvocationContext:
    """The invocation context behind a callback context."""
    ic: InvocationContext = cc._invocation_context
    return ic


def agent_of(agent: BaseAgent) -> dict[str, Any]:
    """An agent as the hooks' ``agent``: name, description, and model when named."""
    data: dict[str, Any] = {"name": agent.name, "description": agent.description or ""}
    model = getattr(agent, "model", None)
    if isinstance(model, str):
        data["model"] = model
    elif model is not None and isinstance(getattr(model, "model", None), str):
        data["model"] = model.model
    return data


def tool_of(tool: BaseTool) -> dict[str, Any]:
    """A tool as the hooks' ``tool``: name, description, parameters when declared."""
    data: dict[str, Any] = {"name": tool.name, "description": tool.description or ""}
    try:
        declaration = tool._get_declaration()
    except Exception:  # a tool that cannot declare itself is named, not described
        declaration = None
    if declaration is not None:
        data["parameters"] = tool_of_declaration(declaration)["parameters"]
    if getattr(tool, "is_long_running", False):
        data["long_running"] = True
    return data


def error_of(error: BaseException) -> dict[str, Any]:
    """An exception as the hooks' ``error``: its type's name and its message."""
    return {"type": type(error).__name__, "message": str(error)}


def tool_result(value: Any) -> dict[str, Any]:
    """A plugin's return as a tool result: ADK's tool results are dicts."""
    value = convert.plain(value)
    return value if isinstance(value, dict) else {"result": value}


def update_in_place(target: MutableMapping[str, Any], before: Any, after: Any) -> None:
    """Apply to ``target`` the keys that changed between ``before`` and ``after``."""
    if not isinstance(after, Mapping) or after == before:
        return
    old = before if isinstance(before, Mapping) else {}
    for key in [k for k in target if k not in after and k in old]:
        del target[key]
    for key, value in after.items():
        if key not in old or old[key] != value:
            target[key] = value


def is_stored(ic: InvocationContext, event: Event) -> bool:
    """Whether ``event`` is in the session already (ADK 1.x stores it before
    ``on_event``)."""
    for stored in reversed(ic.session.events[-8:]):
        if stored is event or (event.id and stored.id == event.id):
            return True
    return False


def last_answer(ic: InvocationContext, author: str | None) -> dict[str, Any]:
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
