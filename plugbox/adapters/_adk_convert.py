"""Plain data for the Google ADK adapter: ADK objects to the AGENT hooks' shapes and back
(``plugbox.adapters.adk``).

The AGENT hooks take plain msgpack data by convention (README, "Agent lifecycle
hooks"). ADK speaks Gemini's types: ``types.Content`` (a role, ``"user"`` or
``"model"``, and parts: text, function calls, function responses, images...),
``LlmRequest`` (model, contents, a config holding the system instruction and the tool
declarations), ``LlmResponse`` and ``Event``. This module converts one way and back:

- ``message_of`` / ``content_of``: a ``Content`` as ``{"role", "content": text}`` and
  back; ADK's ``"model"`` role is ``"assistant"``;
- ``RequestView``: an ``LlmRequest`` as ``{"model", "messages", "tools"}`` (the system
  instruction is the first message, role ``system``; a model turn that calls tools is
  an assistant message with ``tool_calls``; each function response is a ``tool``
  message), remembering where each message came from, so ``apply`` writes what the
  plugins changed back onto the request: an unchanged message keeps its original
  parts (images, thought signatures and all), a changed one is rebuilt around its
  non-text parts, a new one becomes a new ``Content``;
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
import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.adk.events.event import Event
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types

from ._plain import plain as plain  # re-exported: convert.plain

log = logging.getLogger("plugbox.adapters.adk")

#: the ``Event.custom_metadata`` key that holds an event's tags.
TAGS_KEY = "tags"


# ---------------------------------------------------------------------- plain data
def _key(message: Any) -> str:
    return json.dumps(message, sort_keys=True, default=repr)


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


def _is_text(part: types.Part) -> bool:
    return part.text is not None and not part.thought


def _is_call(part: types.Part) -> bool:
    return part.function_call is not None


def _is_response(part: types.Part) -> bool:
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
        elif isinstance(part, types.Part) and _is_text(part):
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
    kept = [p for p in base if not (_is_text(p) or _is_call(p) or _is_response(p))]
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


# ---------------------------------------------------------------------- requests
def _messages_of(
    contents: Sequence[types.Content],
) -> tuple[list[dict[str, Any]], list[tuple[int, list[types.Part]]]]:
    """Messages for contents, and for each message the content index and parts it
    was made from. A content holding function responses gives one ``tool`` message
    per response (and one more message for any other parts)."""
    messages: list[dict[str, Any]] = []
    origins: list[tuple[int, list[types.Part]]] = []
    for index, content in enumerate(contents):
        parts = list(content.parts or [])
        responses = [p for p in parts if _is_response(p)]
        if not responses:
            messages.append(message_of(content))
            origins.append((index, parts))
            continue
        for part in responses:
            response = part.function_response
            assert response is not None
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": response.id,
                    "name": response.name,
                    "content": plain(response.response),
                }
            )
            origins.append((index, [part]))
        others = [p for p in parts if not _is_response(p)]
        if others:
            messages.append({"role": role_of(content.role), "content": text_of(others)})
            origins.append((index, others))
    return messages, origins


def _declarations(request: LlmRequest) -> list[types.FunctionDeclaration]:
    found: list[types.FunctionDeclaration] = []
    for tool in (request.config.tools or []) if request.config else []:
        if isinstance(tool, types.Tool):
            found.extend(tool.function_declarations or [])
    return found


def tool_of_declaration(declaration: types.FunctionDeclaration) -> dict[str, Any]:
    """A function declaration as ``{"name", "description", "parameters"}``."""
    schema = declaration.parameters_json_schema
    if schema is None and declaration.parameters is not None:
        schema = declaration.parameters.model_dump(mode="json", exclude_none=True)
    return {
        "name": declaration.name,
        "description": declaration.description or "",
        "parameters": plain(schema) if schema is not None else {},
    }


class RequestView:
    """An ``LlmRequest`` as the ``request`` argument, and how to apply it back.

    ``data`` is ``{"model", "messages", "tools"}``: the system instruction (if any) as
    the first message, role ``system``; each content as messages (see
    ``_messages_of``); each function declaration as a tool.
    """

    def __init__(self, request: LlmRequest) -> None:
        config = request.config
        instruction = config.system_instruction if config else None
        self.system = text_of(instruction)
        self.has_system = bool(instruction)
        self.contents = list(request.contents or [])
        self.messages, self.origins = _messages_of(self.contents)
        self.tool_names = [d.name for d in _declarations(request)]
        system = [{"role": "system", "content": self.system}] if self.has_system else []
        self.data: dict[str, Any] = {
            "model": request.model or "",
            "messages": system + copy.deepcopy(self.messages),
            "tools": [tool_of_declaration(d) for d in _declarations(request)],
        }
        self.snapshot = copy.deepcopy(self.data)

    def apply(self, request: LlmRequest, new: Any) -> list[str]:
        """Write what the plugins changed in ``new`` (the request as they left it)
        onto ``request``; returns the names of the parts changed (``model``,
        ``system``, ``messages``, ``tools``)."""
        if not isinstance(new, Mapping) or new == self.snapshot:
            return []
        changed: list[str] = []
        model = new.get("model")
        if isinstance(model, str) and model != self.snapshot["model"]:
            request.model = model
            changed.append("model")
        messages = new.get("messages")
        if isinstance(messages, list):
            system = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "system"]
            others = [
                m for m in messages if not (isinstance(m, Mapping) and m.get("role") == "system")
            ]
            if system or self.has_system:
                text = "\n\n".join(text_of_message(m) for m in system)
                if text != self.system or (not system and self.has_system):
                    request.config.system_instruction = text or None
                    changed.append("system")
            if others != self.messages:
                request.contents = self._contents(others)
                changed.append("messages")
        tools = new.get("tools")
        if isinstance(tools, list) and tools != self.snapshot["tools"]:
            self._apply_tools(request, tools)
            changed.append("tools")
        return changed

    def _contents(self, new: list[Any]) -> list[types.Content]:
        """The contents for ``new`` messages (system messages taken out)."""
        # Each piece: (content index it came from or None, ADK role, parts, unchanged)
        pieces: list[tuple[int | None, str, list[types.Part], bool]] = []
        old_keys = [_key(m) for m in self.messages]
        new_keys = [_key(m) for m in new]
        matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                for k in range(i2 - i1):
                    index, parts = self.origins[i1 + k]
                    pieces.append((index, self.contents[index].role or "user", parts, True))
            elif tag == "replace" and i2 - i1 == j2 - j1:  # changed one by one
                for k in range(i2 - i1):
                    index, parts = self.origins[i1 + k]
                    message = new[j1 + k]
                    role = (
                        adk_role_of(message.get("role"))
                        if isinstance(message, Mapping)
                        else self.contents[index].role or "user"
                    )
                    pieces.append((index, role, parts_of(message, parts), False))
            elif tag in ("replace", "insert"):
                for message in new[j1:j2]:
                    role = (
                        adk_role_of(message.get("role")) if isinstance(message, Mapping) else "user"
                    )
                    pieces.append((None, role, parts_of(message), False))
        contents: list[types.Content] = []
        groups: list[tuple[int | None, str, list[types.Part], list[bool]]] = []
        for origin, role, parts, same in pieces:
            last = groups[-1] if groups else None
            tool_batch = (
                origin is None
                and last is not None
                and last[0] is None
                and _all_responses(parts)
                and _all_responses(last[2])
            )
            if (
                last is not None
                and last[1] == role
                and ((origin is not None and last[0] == origin) or tool_batch)
            ):
                last[2].extend(parts)
                last[3].append(same)
            else:
                groups.append((origin, role, list(parts), [same]))
        for origin, role, parts, unchanged in groups:
            if not parts:
                continue
            whole = (
                origin is not None
                and all(unchanged)
                and sum(1 for o in self.origins if o[0] == origin) == len(unchanged)
            )
            contents.append(
                self.contents[origin]
                if whole and origin is not None
                else types.Content(role=role, parts=parts)
            )
        return contents

    def _apply_tools(self, request: LlmRequest, tools: list[Any]) -> None:
        names = {t.get("name") for t in tools if isinstance(t, Mapping)}
        added = sorted(str(n) for n in names - set(self.tool_names))
        if added:
            log.warning(
                "plugins added tools %s to a model request: ignored (ADK can only "
                "call the tools its agent has)",
                ", ".join(added),
            )
        if not request.config or not request.config.tools:
            return
        kept: list[Any] = []
        for tool in request.config.tools:
            if isinstance(tool, types.Tool) and tool.function_declarations:
                declarations = [d for d in tool.function_declarations if d.name in names]
                if not declarations:
                    continue
                tool = tool.model_copy(update={"function_declarations": declarations})
            kept.append(tool)
        request.config.tools = kept or None


def _all_responses(parts: Sequence[types.Part]) -> bool:
    return bool(parts) and all(_is_response(p) for p in parts)


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
    if any(_is_call(p) for p in parts):
        return "tool_call"
    if any(_is_response(p) for p in parts):
        return "tool_result"
    if event.error_code or event.error_message:
        return "error"
    if any(_is_text(p) for p in parts):
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
            parts = [p for p in (base.parts or [] if base else []) if not _is_text(p)]
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
