"""A plugin that misbehaves: its ``on_event`` raises on tool events, and its
``before_model`` kills its own worker when the user says "crash".

The AGENT set's defaults decide what that does to a run: a failing ``on_event`` plugin
is skipped (logged; the event goes on as it was), a failing ``before_model`` fails the
run (fail closed: the host raises the typed ``PluginFailure``, here ``PluginCrashed``).
"""

from __future__ import annotations

import os
from typing import Any


class MisbehavingPlugin:
    name = "misbehaving"
    version = "0.0.1"

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "tool_result":
            raise RuntimeError(f"cannot stand tool results ({event.get('id')})")

    def before_model(self, request: dict[str, Any]) -> None:
        for message in request.get("messages", []):
            if message.get("role") == "user" and "crash" in str(message.get("content")):
                os.abort()  # SIGABRT: the worker dies; the host sees it, reports it
