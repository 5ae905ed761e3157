"""Plain data for the OpenAI Agents SDK adapter: SDK objects to the AGENT hooks' shapes
and back (``plugbox.adapters.openai_agents``).

The AGENT hooks take plain msgpack data by convention (docs/plugins.md,
"specs.AGENT"): a request is ``{"model", "messages": [{"role", "content"}], "tools"}``, a
response ``{"content", "tool_calls": [{"id", "name", "args"}]}``. The SDK speaks the
Responses API: ``system_instructions`` plus a list of input items, and a
``ModelResponse`` of output items. This module converts one way and back:

- ``request_from``: system instructions (the first message, role ``system``) and input
  items as messages, remembering each item, so ``items_from`` can rebuild the model's
  input after plugins changed it in place: an unchanged message gives back its
  original item untouched (images, ids and all), a changed or new one becomes a new
  item;
- ``response_from`` / ``model_response_from``: output items as a response and back;
- ``plain``: any value (pydantic models, dataclasses, tuples...) as data that can cross
  the process boundary.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from agents.items import ModelResponse
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from ._plain import plain as plain  # re-exported: convert.plain

#: roles a message rebuilt from plain data may have as an input item of its own.
_MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})


def _get(item: Any, key: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def text_of(content: Any) -> str:
    """The text of a message's content: a str, or the text parts of a list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [_get(part, "text") for part in content]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def args_of(arguments: Any) -> Any:
    """A tool call's JSON arguments as data (a str that is not JSON, as it is)."""
    if not isinstance(arguments, str):
        return plain(arguments)
    try:
        return plain(json.loads(arguments)) if arguments.strip() else {}
    except ValueError:
        return arguments


def message_of(item: Any) -> dict[str, Any]:
    """One input item as a message: ``{"role", "content"}``, a function call as an
    assistant message with ``tool_calls``, a call's output as a ``tool`` message, any
    other item as ``{"role": <its type>, "content": ""}``."""
    kind = _get(item, "type")
    role = _get(item, "role")
    if kind in (None, "message") and isinstance(role, str):
        return {"role": role, "content": text_of(_get(item, "content"))}
    if kind == "function_call":
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": _get(item, "call_id"),
                    "name": _get(item, "name"),
                    "args": args_of(_get(item, "arguments")),
                }
            ],
        }
    if kind == "function_call_output":
        output = _get(item, "output")
        return {
            "role": "tool",
            "tool_call_id": _get(item, "call_id"),
            "content": output if isinstance(output, str) else plain(output),
        }
    return {"role": str(kind or "item"), "content": ""}


def _item_of(message: Any) -> list[dict[str, Any]]:
    """A message a plugin added or changed, as input items (possibly none)."""
    if not isinstance(message, Mapping):
        return []
    role = message.get("role")
    content = message.get("content")
    items: list[dict[str, Any]] = []
    if role == "tool":
        output = content if isinstance(content, str) else json.dumps(content, default=str)
        return [
            {
                "type": "function_call_output",
                "call_id": str(message.get("tool_call_id")),
                "output": output,
            }
        ]
    if role not in _MESSAGE_ROLES:
        return []
    text = content if isinstance(content, str) else text_of(content)
    calls = message.get("tool_calls") or []
    if text or not calls:
        items.append({"role": role, "content": text})
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, Mapping):
            args = call.get("args", {})
            items.append(
                {
                    "type": "function_call",
                    "call_id": str(call.get("id")),
                    "name": str(call.get("name")),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                }
            )
    return items


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclasses.dataclass
class Request:
    """A model request as plain data, with what is needed to rebuild the SDK's input."""

    data: dict[str, Any]
    instructions: str | None
    items: list[Any]
    messages: list[dict[str, Any]]
    """the messages as they were built, one per item (``items``), before plugins ran."""

    def changed(self) -> bool:
        """Whether plugins changed the messages (in place)."""
        return _key(self.data.get("messages")) != _key(self._original())

    def _original(self) -> list[dict[str, Any]]:
        head = (
            [] if self.instructions is None else [{"role": "system", "content": self.instructions}]
        )
        return [*head, *self.messages]

    def rebuilt(self) -> tuple[str | None, list[Any]]:
        """System instructions and input items as plugins left the messages: unchanged
        messages give back their original item; the first message, when it is a system
        message not taken from an item, is the instructions."""
        messages = self.data.get("messages")
        if not isinstance(messages, list):
            messages = []
        unused: dict[str, list[int]] = {}
        for index, message in enumerate(self.messages):
            unused.setdefault(_key(message), []).append(index)
        instructions: str | None = None
        rest = list(messages)
        if (
            rest
            and isinstance(rest[0], Mapping)
            and rest[0].get("role") == "system"
            and (self.instructions is not None or not unused.get(_key(rest[0])))
        ):
            instructions = text_of(rest[0].get("content")) or None
            rest = rest[1:]
        items: list[Any] = []
        for message in rest:
            spare = unused.get(_key(message))
            if spare:
                items.append(self.items[spare.pop(0)])
            else:
                items.extend(_item_of(message))
        return instructions, items


def request_from(
    model: str,
    instructions: str | None,
    input: str | list[Any],
    tools: Sequence[Any],
    handoffs: Sequence[Any],
) -> Request:
    """The request plugins see for one model call (see ``Request``)."""
    items: list[Any] = (
        [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
    )
    messages = [message_of(item) for item in items]
    head = [] if instructions is None else [{"role": "system", "content": instructions}]
    described: list[dict[str, Any]] = [
        {
            "name": str(getattr(t, "name", type(t).__name__)),
            "description": str(getattr(t, "description", "") or ""),
        }
        for t in tools
    ]
    described += [
        {
            "name": str(getattr(h, "tool_name", "")),
            "description": str(getattr(h, "tool_description", "") or ""),
            "handoff": True,
        }
        for h in handoffs
    ]
    data = {"model": model, "messages": [*head, *json.loads(_key(messages))], "tools": described}
    return Request(data=data, instructions=instructions, items=items, messages=messages)


def response_from(response: ModelResponse) -> dict[str, Any]:
    """A ``ModelResponse`` as ``{"content", "tool_calls": [{"id", "name", "args"}]}``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.output:
        kind = _get(item, "type")
        if kind == "message":
            texts.append(text_of(_get(item, "content")))
        elif kind == "function_call":
            calls.append(
                {
                    "id": _get(item, "call_id"),
                    "name": _get(item, "name"),
                    "args": args_of(_get(item, "arguments")),
                }
            )
    return {"content": "".join(texts), "tool_calls": calls}


def model_response_from(value: Any, base: ModelResponse | None = None) -> ModelResponse:
    """A plugin's response (``{"content", "tool_calls"}``, or a str: the text) as a
    ``ModelResponse``. Output items of ``base`` other than messages and function calls
    (reasoning...) are kept, with its usage and ids; without ``base`` usage is zero."""
    if isinstance(value, str):
        value = {"content": value}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"a plugin's model response must be a dict or a str, not {type(value).__name__}"
        )
    content = value.get("content")
    text = content if isinstance(content, str) else text_of(content)
    calls = value.get("tool_calls") or []
    output: list[Any] = [
        item
        for item in (base.output if base is not None else [])
        if _get(item, "type") not in ("message", "function_call")
    ]
    if text or not calls:
        output.append(
            ResponseOutputMessage(
                id=f"msg_plugbox_{uuid.uuid4().hex[:12]}",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
        )
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, Mapping):
            continue
        args = call.get("args", {})
        output.append(
            ResponseFunctionToolCall(
                type="function_call",
                call_id=str(call.get("id") or f"call_plugbox_{uuid.uuid4().hex[:12]}"),
                name=str(call.get("name")),
                arguments=args if isinstance(args, str) else json.dumps(args),
            )
        )
    if base is None:
        return ModelResponse(output=output, usage=Usage(), response_id=None)
    return dataclasses.replace(base, output=output)


def user_message_of(input: str | list[Any]) -> dict[str, Any]:
    """The run's user message: the input when it is a str, else the last user item's
    text (``""`` when there is none)."""
    if isinstance(input, str):
        return {"role": "user", "content": input}
    for item in reversed(input):
        if _get(item, "role") == "user":
            return {"role": "user", "content": text_of(_get(item, "content"))}
    return {"role": "user", "content": ""}


def replace_user_text(items: list[Any], old: str, new: str) -> list[Any]:
    """``items`` with every user message whose text is ``old`` now saying ``new``."""
    out: list[Any] = []
    for item in items:
        if (
            _get(item, "role") == "user"
            and _get(item, "type") in (None, "message")
            and text_of(_get(item, "content")) == old
        ):
            out.append({"role": "user", "content": new})
        else:
            out.append(item)
    return out
