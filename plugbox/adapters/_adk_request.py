"""An ADK ``LlmRequest`` as the AGENT hooks' ``request`` argument, and back.

``RequestView.data`` is ``{"model", "messages", "tools"}``: the system instruction (if
any) is the first message, role ``system``; a model turn that calls tools is an
assistant message with ``tool_calls``; each function response is a ``tool`` message.
The view remembers where each message came from, so ``apply`` writes what the plugins
changed back onto the request: an unchanged message keeps its original parts (images,
thought signatures and all), a changed one is rebuilt around its non-text parts, a new
one becomes a new ``Content``.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from google.adk.models.llm_request import LlmRequest
from google.genai import types

from ._adk_convert import (
    adk_role_of,
    is_response,
    message_of,
    parts_of,
    plain,
    role_of,
    text_of,
    text_of_message,
)

log = logging.getLogger("plugbox.adapters.adk")


def _key(message: Any) -> str:
    return json.dumps(message, sort_keys=True, default=repr)


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
        responses = [p for p in parts if is_response(p)]
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
        others = [p for p in parts if not is_response(p)]
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
    return bool(parts) and all(is_response(p) for p in parts)
