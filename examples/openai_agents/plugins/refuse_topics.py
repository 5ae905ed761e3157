"""A policy plugin on ``before_run``: a user message that mentions one of
``config["topics"]`` (default ``["launch codes"]``) ends the run before it starts.

Under the OpenAI Agents SDK adapter, ``before_run`` runs in an input guardrail that
runs before the first agent; a non-None return trips it, so ``Runner.run`` raises the
SDK's own ``InputGuardrailTripwireTriggered``, whose ``output_info`` carries the hook,
this plugin's name and the value it returned. No model or tool is called.
"""

from __future__ import annotations

from typing import Any


class RefuseTopicsPlugin:
    name = "refuse_topics"
    version = "1.0.0"

    def initialize(self, config: dict[str, Any]) -> None:
        self.topics = [str(t).lower() for t in config.get("topics", ["launch codes"])]

    def before_run(self, message: dict[str, Any]) -> dict[str, Any] | None:
        text = str(message.get("content", "")).lower()
        for topic in self.topics:
            if topic in text:
                return {"role": "assistant", "content": f"I can't help with {topic}."}
        return None
