"""Plain data for the Google ADK adapter: ADK's messages, responses and events as the
AGENT hooks' shapes, and back (requests: ``_adk_request``).

ADK speaks Gemini's types: ``types.Content`` (a role, ``"user"`` or ``"model"``, and
parts: text, function calls, function responses, images...), ``LlmResponse`` and
``Event``. Here:

- ``message_of`` / ``content_of``: a ``Content`` as ``{"role", "content": text}`` and
  back; ADK's ``"model"`` role is ``"assistant"``;
- ``response_of`` / ``apply_response`` / ``llm_response_of``: an ``LlmResponse`` as
  ``{"role", "content", "tool_calls"}`` and back;
- ``EventView``: an ``Event`` as ``{"id", "invocation_id", "author", "type",
  "content", "tags", ...}``; ``apply`` writes tags to ``custom_metadata["tags"]`` and
  a changed text or author onto the event;
- ``plain``: any value (pydantic models, dataclasses, sets...) as data that can cross
  the process boundary.

Nothing here calls a plugin; ``plugbox.adapters.adk`` does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.adk.events.event import Event
from google.adk.models.llm_response import LlmResponse
from google.genai import types

from ._plain import plain as plain  # re-exported: convert.plain

#: the ``Event.custom_metadata`` key that holds an event's tags.
TAGS_KEY = "tags"


# ---------------------------------------------------------------------- messages
def role_of(adk_role: str | None) -> str:
    """ADK's role as the AGENT hooks' role: ``"model"`` is ``"assistant"``."""
    if adk_role == "model":
        return "assistant"
    return adk_role or "user"


def adk_role_of(role: Any) -> str:
    """A message's role as ADK's: ``"assistant"`` is ``"model"``, ``"tool"`` (a
    function response) and ``"system"`` are ``"user"``."""
    if role in ("assistant", "model"):
        return "model"
    return "user"


def is_text(part: types.Part) -> bool:
    return part.text is not None and not part.thought


def is_call(part: types.Part) -> bool:
    return part.function_call is not None


def is_response(part: types.Part) -> bool:
    return part.function_response is not None


def text_of(parts: Iterable[types.Part] | str | Any) -> str:
    """The text of a system instruction or of parts: text parts (not thoughts) joined."""
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    if isinstance(parts, types.Content):
        parts = parts.parts or []
    if isinstance(parts, types.Part):
        parts = [parts]
    texts: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, types.Part) and is_text(part):
            texts.append(part.text or "")
    return "".join(texts)


def call_of(call: types.FunctionCall) -> dict[str, Any]:
    """A function call as ``{"id", "name", "args"}``."""
    return {"id": call.id, "name": call.name, "args": plain(call.args or {})}


def _result_of(response: types.FunctionResponse) -> dict[str, Any]:
    return {"id": response.id, "name": response.name, "response": plain(response.response)}


def message_of(content: types.Content | None) -> dict[str, Any]:
    """A ``Content`` as one message ``{"role", "content"}`` (text parts joined), with
    ``tool_calls`` when it calls tools."""
    if content is None:
        return {"role": "user", "content": ""}
    parts = content.parts or []
    message: dict[str, Any] = {"role": role_of(content.role), "content": text_of(parts)}
    calls = [call_of(p.function_call) for p in parts if p.function_call is not None]
    if calls:
        message["tool_calls"] = calls
    return message


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"result": value}


def _call_part(call: Any) -> types.Part | None:
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
        return None
    args = call.get("args")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = {"input": args}
    call_id = call.get("id")
    return types.Part(
        function_call=types.FunctionCall(
            id=call_id if isinstance(call_id, str) else None,
            name=call["name"],
            args=_as_dict(args if args is not None else {}),
        )
    )


def parts_of(message: Any, base: Sequence[types.Part] = ()) -> list[types.Part]:
    """A message (a dict; a str is its text, other data its JSON) as parts. ``base`` is
    the parts it was made from: those that are neither text, function calls nor
    function responses (images, files, thoughts...) are kept, in front."""
    if isinstance(message, str):
        message = {"content": message}
    elif not isinstance(message, Mapping):  # any other data: as JSON text
        message = {"content": text_of_data(message)}
    kept = [p for p in base if not (is_text(p) or is_call(p) or is_response(p))]
    parts = list(kept)
    if message.get("role") == "tool":
        call_id = message.get("tool_call_id")
        name = message.get("name")
        if not isinstance(name, str):
            old = next((p.function_response for p in base if p.function_response), None)
            name = old.name if old is not None else None
        parts.append(
            types.Part(
                function_response=types.FunctionResponse(
                    id=call_id if isinstance(call_id, str) else None,
                    name=name,
                    response=_as_dict(message.get("content")),
                )
            )
        )
        return parts
    content = message.get("content")
    text = content if isinstance(content, str) else text_of_data(content)
    if text:
        parts.append(types.Part(text=text))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        parts.extend(p for p in (_call_part(c) for c in calls) if p is not None)
    return parts


def text_of_data(content: Any) -> str:
    """Message content that is not a str as text: the text parts of a list of
    ``{"type": "text", "text": ...}``, else JSON."""
    if content is None:
        return ""
    if isinstance(content, list) and all(isinstance(c, Mapping) for c in content):
        return "".join(str(c.get("text", "")) for c in content)
    return json.dumps(content, default=str)


def content_of(
    message: Any, *, role: str | None = None, base: types.Content | None = None
) -> types.Content:
    """A message (or a str) as a ``Content``; ``role`` (ADK's) overrides the
    message's; ``base``'s non-text parts are kept."""
    if role is None:
        role = adk_role_of(message.get("role")) if isinstance(message, Mapping) else "model"
    return types.Content(role=role, parts=parts_of(message, base.parts or [] if base else []))


def text_of_message(message: Any) -> str:
    """A message's text content (a str message is its own text)."""
    if isinstance(message, str):
        return message
    if not isinstance(message, Mapping):
        return ""
    content = message.get("content")
    return content if isinstance(content, str) else text_of_data(content)


# ---------------------------------------------------------------------- responses
def response_of(response: LlmResponse) -> dict[str, Any]:
    """An ``LlmResponse`` as ``{"role": "assistant", "content", "tool_calls"}``, with
    ``partial`` for a streamed fragment and ``error`` (``{"type", "message"}``) for an
    error response."""
    data = message_of(response.content)
    data["role"] = "assistant"
    data.setdefault("tool_calls", [])
    if response.partial:
        data["partial"] = True
    if response.error_code or response.error_message:
        data["error"] = {
            "type": str(response.error_code or ""),
            "message": str(response.error_message or ""),
        }
    return data


def apply_response(response: LlmResponse, before: dict[str, Any], after: Any) -> bool:
    """Write a response's text and tool calls, as plugins changed them in place, onto
    ``response``; True if anything changed."""
    if not isinstance(after, Mapping) or after == before:
        return False
    if (after.get("content"), after.get("tool_calls")) == (
        before.get("content"),
        before.get("tool_calls"),
    ):
        return False
    response.content = content_of(after, role="model", base=response.content)
    return True


def llm_response_of(value: Any) -> LlmResponse:
    """A plugin's return value (a response dict, or a str: its text) as an
    ``LlmResponse``."""
    if (
        isinstance(value, Mapping)
        and isinstance(value.get("error"), Mapping)
        and not value.get("content")
        and not value.get("tool_calls")
    ):
        error = value["error"]
        return LlmResponse(
            error_code=str(error.get("type") or "PLUGIN_ERROR"),
            error_message=str(error.get("message") or ""),
        )
    return LlmResponse(content=content_of(value, role="model"))


# ---------------------------------------------------------------------- events
def event_type(event: Event) -> str:
    """What an event is: ``user_message``, ``tool_call``, ``tool_result``, ``error``,
    ``model_response`` (text) or ``event`` (anything else: state changes, transfers)."""
    parts = event.content.parts or [] if event.content else []
    if event.author == "user":
        return "user_message"
    if any(is_call(p) for p in parts):
        return "tool_call"
    if any(is_response(p) for p in parts):
        return "tool_result"
    if event.error_code or event.error_message:
        return "error"
    if any(is_text(p) for p in parts):
        return "model_response"
    return "event"


class EventView:
    """An ``Event`` as the ``event`` argument, and how to apply it back.

    ``data`` is ``{"id", "invocation_id", "author", "type", "content" (the text),
    "tags", "final", "partial"}`` with ``tool_calls`` (``[{"id", "name", "args"}]``) or
    ``tool_results`` (``[{"id", "name", "response"}]``) when it holds them.
    """

    def __init__(self, event: Event) -> None:
        parts = event.content.parts or [] if event.content else []
        metadata = event.custom_metadata or {}
        tags = metadata.get(TAGS_KEY)
        self.data: dict[str, Any] = {
            "id": event.id,
            "invocation_id": event.invocation_id,
            "author": event.author,
            "type": event_type(event),
            "content": text_of(parts),
            "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
            "final": bool(event.is_final_response()),
            "partial": bool(event.partial),
        }
        calls = [call_of(p.function_call) for p in parts if p.function_call is not None]
        if calls:
            self.data["tool_calls"] = calls
        results = [
            _result_of(p.function_response) for p in parts if p.function_response is not None
        ]
        if results:
            self.data["tool_results"] = results
        self.snapshot = copy.deepcopy(self.data)

    def apply(self, event: Event, new: Any) -> list[str]:
        """Write the tags, text and author plugins changed onto ``event``; returns the
        names of the fields changed. Other changes are not ADK's to take (an event's
        tool calls have been made)."""
        if not isinstance(new, Mapping) or new == self.snapshot:
            return []
        changed: list[str] = []
        tags = new.get("tags")
        if isinstance(tags, list) and tags != self.snapshot["tags"]:
            event.custom_metadata = {**(event.custom_metadata or {}), TAGS_KEY: plain(tags)}
            changed.append("tags")
        text = new.get("content")
        if text != self.snapshot["content"]:
            base = event.content
            parts = [p for p in (base.parts or [] if base else []) if not is_text(p)]
            body = text if isinstance(text, str) else text_of_data(text)
            event.content = types.Content(
                role=base.role if base else "model",
                parts=([types.Part(text=body)] if body else []) + parts,
            )
            changed.append("content")
        author = new.get("author")
        if isinstance(author, str) and author and author != self.snapshot["author"]:
            event.author = author
            changed.append("author")
        return changed
