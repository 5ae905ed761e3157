"""Built-in plugin ``message_logger``: every message an agent run carries, logged.

    await host.add("plugbox.plugins.message_logger", config={"path": "/tmp/messages.jsonl"})

It is ``plugbox/demo/plugins/message_logger.py`` (written for ``specs.PIPELINE``) adapted to
``plugbox.specs.AGENT``. It logs every message a run carries:

- ``on_user_message``: the user's message;
- ``after_model``: the model's response (its text and the tool calls it asks for);
- ``after_tool``: each tool's result;
- ``after_run``: the run's final output.

Each message is logged through stdlib ``logging`` (logger ``message-logger``; the host
shows it under ``plugbox.plugin.message-logger``), shortened to ``preview`` characters,
and with ``config={"path": ...}`` appended whole to that file as one JSON line
(``{"n", "time", "hook", "invocation_id", ...}``). The file must be writable by the
worker's user (``nobody`` when the host runs as root). It changes nothing: every hook
returns None.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TextIO

log = logging.getLogger("message-logger")


def _preview(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, dict) else message


class MessageLoggerPlugin:
    """Logs every user message, model response, tool result and final output."""

    name = "message-logger"
    version = "1.0.0"

    def __init__(self) -> None:
        self.path: str | None = None
        self.preview = 80
        self.count = 0
        self._file: TextIO | None = None

    def initialize(self, config: dict[str, Any]) -> None:
        """``config``: ``path`` (a JSON-lines file, optional), ``preview``, ``name``."""
        self.name = str(config.get("name") or self.name)
        self.preview = int(config.get("preview", self.preview))
        path = config.get("path")
        if path:
            self.path = str(path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        log.info("ready (writing JSON lines to %s)", self.path or "nowhere: log only")

    # ------------------------------------------------------------------ hooks
    def on_user_message(self, message: Any, context: Any) -> None:
        """Log the user's message."""
        self._record("on_user_message", context, "user", message=message)

    def after_model(self, response: Any, context: Any) -> None:
        """Log the model's response and the tool calls it asks for."""
        calls = response.get("tool_calls") if isinstance(response, dict) else None
        text = _content(response)
        if calls:
            asked = ", ".join(
                f"{c.get('name')}({c.get('args')})" for c in calls if isinstance(c, dict)
            )
            text = f"{text or ''} [tool calls: {asked}]".strip()
        self._record("after_model", context, "model", text, response=response)

    def after_tool(self, tool: Any, result: Any, context: Any) -> None:
        """Log a tool's result."""
        name = tool.get("name") if isinstance(tool, dict) else tool
        self._record("after_tool", context, f"tool {name}", result, tool=tool, result=result)

    def after_run(self, output: Any, context: Any) -> None:
        """Log the run's final output."""
        self._record("after_run", context, "output", output=output)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Called once when the host closes the plugin."""
        log.info("closing after %d messages", self.count)
        if self._file is not None:
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ helpers
    def _record(self, hook: str, context: Any, who: str, shown: Any = None, **fields: Any) -> None:
        self.count += 1
        if shown is None:
            shown = _content(next(iter(fields.values())))
        invocation = context.get("invocation_id") if isinstance(context, dict) else None
        log.info("#%d %s: %s", self.count, who, _preview(shown, self.preview))
        if self._file is not None:
            entry = {
                "n": self.count,
                "time": time.time(),
                "hook": hook,
                "invocation_id": invocation,
                **fields,
            }
            self._file.write(json.dumps(entry, default=repr) + "\n")
            self._file.flush()
