"""Block certain user inputs (a policy plugin).

``before_model`` returns a custom response when a user message contains the blocked
keyword (``config["keyword"]``, default ``"/deny"``). The AGENT set's ``before_model``
is ``first_result``: that response short-circuits the model call, and plugins added
after this one are not called.
"""

from __future__ import annotations

from typing import Any


class PolicyPlugin:
    name = "policy"
    version = "1.0.0"

    def initialize(self, config: dict[str, Any]) -> None:
        self.keyword = str(config.get("keyword", "/deny"))

    def before_model(self, request: dict[str, Any]) -> dict[str, Any] | None:
        for message in request.get("messages", []):
            content = message.get("content")
            if (
                message.get("role") == "user"
                and isinstance(content, str)
                and self.keyword in content
            ):
                return {"role": "assistant", "content": "Blocked by plugin policy.", "done": True}
        return None
