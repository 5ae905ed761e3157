"""Built-in plugin ``global_instruction``: one system instruction on every model request.

    await host.add("plugbox.plugins.global_instruction",
                   config={"instruction": "You must follow security policies."})

``before_model`` changes the request in place (``request`` is a mutable argument of
``plugbox.specs.AGENT``'s ``before_model``), so the next plugin and the model see it:

- if the request's first message is a system message with text content, the
  instruction is merged into it, in front (separated by a blank line);
- otherwise a system message with the instruction is prepended to the messages.

A request that already starts with the instruction is left alone, so a retried
request does not get it twice. The plugin never short-circuits (it returns None).
``config["name"]`` renames it, to add several instances to one host.
"""

from __future__ import annotations

from typing import Any


class GlobalInstructionPlugin:
    """Puts ``config["instruction"]`` at the start of every model request."""

    name = "global_instruction"
    version = "1.0.0"

    def __init__(self) -> None:
        self.instruction = ""

    def initialize(self, config: dict[str, Any]) -> None:
        """``config``: ``instruction`` (a non-empty str, required), ``name``."""
        instruction = config.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(
                "global_instruction needs config={'instruction': '...'}, a non-empty str"
            )
        self.instruction = instruction
        self.name = str(config.get("name") or self.name)

    def before_model(self, request: dict[str, Any]) -> None:
        """Put the instruction first in ``request["messages"]``, in place."""
        if not isinstance(request, dict):
            return None
        messages = request.get("messages")
        if not isinstance(messages, list):
            messages = request["messages"] = []
        first = messages[0] if messages else None
        if isinstance(first, dict) and first.get("role") == "system":
            content = first.get("content")
            if isinstance(content, str):
                if not content.startswith(self.instruction):
                    first["content"] = (
                        f"{self.instruction}\n\n{content}" if content else self.instruction
                    )
                return None
        messages.insert(0, {"role": "system", "content": self.instruction})
        return None
