"""Built-in plugin ``logging``: start and end of agent, model and tool calls, timed.

    await host.add("plugbox.plugins.logging")                 # INFO records
    await host.add("plugbox.plugins.logging", config={"level": "DEBUG", "name": "trace"})

Each ``before_agent`` / ``before_model`` / ``before_tool`` logs a start record and
notes the time; the matching ``after_*`` or ``on_*_error`` logs the end with the
duration measured in the worker (``model call of agent assistant ended after 12.3 ms
(answer)``; a failure at WARNING). Calls are matched by what the context says: the
invocation id, the agent's name and, for tools, the tool call id (tools may run in
parallel), else the tool's name. A start whose end never comes (a
run that failed, a call that another plugin short-circuited) is forgotten after
``max_pending`` newer ones. The plugin only observes: it returns None everywhere.

Records go through stdlib ``logging`` (logger ``lifecycle``); the worker forwards them to
the host, where they appear under ``plugbox.plugin.<name>`` (``plugbox.plugin.logging``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

log = logging.getLogger("lifecycle")

Key = tuple[str, str, str]


def _text(value: Any, default: str = "?") -> str:
    return value if isinstance(value, str) and value else default


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


class LoggingPlugin:
    """Logs start and end, with durations, of agent, model and tool calls."""

    name = "logging"
    version = "1.0.0"

    def __init__(self) -> None:
        self.level = logging.INFO
        self.max_pending = 10_000
        self._started: OrderedDict[Key, list[float]] = OrderedDict()

    def initialize(self, config: dict[str, Any]) -> None:
        """``config``: ``level`` (name or number, default INFO), ``name``, ``max_pending``."""
        self.name = str(config.get("name") or self.name)
        level = config.get("level", logging.INFO)
        if isinstance(level, str):
            number = logging.getLevelName(level.upper())
            if not isinstance(number, int):
                raise ValueError(f"unknown logging level {level!r}")
            level = number
        self.level = int(level)
        self.max_pending = int(config.get("max_pending", self.max_pending))

    # ------------------------------------------------------------------ agent
    def before_agent(self, agent: Any, context: Any) -> None:
        """Log the agent's start and note the time."""
        name = _text(_field(agent, "name"))
        self._start(
            ("agent", self._invocation(context), name),
            f"agent {name}",
            f"invocation {self._invocation(context)}",
        )

    def after_agent(self, agent: Any, context: Any) -> None:
        """Log the agent's end with its duration."""
        name = _text(_field(agent, "name"))
        self._end(("agent", self._invocation(context), name), f"agent {name}")

    # ------------------------------------------------------------------ model
    def before_model(self, request: Any, context: Any) -> None:
        """Log the model call's start and note the time."""
        messages = _field(request, "messages")
        count = len(messages) if isinstance(messages, list) else 0
        self._start(
            self._model_key(context),
            f"model call of agent {self._agent(context)}",
            f"model {_text(_field(request, 'model'))}, {count} message{'' if count == 1 else 's'}",
        )

    def after_model(self, response: Any, context: Any) -> None:
        """Log the model call's end with its duration."""
        calls = _field(response, "tool_calls")
        n = len(calls) if isinstance(calls, list) else 0
        detail = f"{n} tool call{'' if n == 1 else 's'}" if n else "answer"
        self._end(self._model_key(context), f"model call of agent {self._agent(context)}", detail)

    def on_model_error(self, error: Any, context: Any) -> None:
        """Log the model call's failure with its duration (WARNING)."""
        self._end(
            self._model_key(context),
            f"model call of agent {self._agent(context)}",
            error=self._error(error),
        )

    # ------------------------------------------------------------------ tools
    def before_tool(self, tool: Any, context: Any) -> None:
        """Log the tool call's start and note the time."""
        call = _text(_field(context, "tool_call_id"), "-")
        self._start(
            self._tool_key(tool, context),
            f"tool {_text(_field(tool, 'name'))}",
            f"agent {self._agent(context)}, call {call}",
        )

    def after_tool(self, tool: Any, context: Any) -> None:
        """Log the tool call's end with its duration."""
        self._end(self._tool_key(tool, context), f"tool {_text(_field(tool, 'name'))}")

    def on_tool_error(self, tool: Any, error: Any, context: Any) -> None:
        """Log the tool call's failure with its duration (WARNING)."""
        self._end(
            self._tool_key(tool, context),
            f"tool {_text(_field(tool, 'name'))}",
            error=self._error(error),
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _invocation(context: Any) -> str:
        return _text(_field(context, "invocation_id"), "-")

    @staticmethod
    def _agent(context: Any) -> str:
        return _text(_field(context, "agent_name"))

    def _model_key(self, context: Any) -> Key:
        return ("model", self._invocation(context), self._agent(context))

    def _tool_key(self, tool: Any, context: Any) -> Key:
        call = _field(context, "tool_call_id")
        which = call if isinstance(call, str) and call else _text(_field(tool, "name"))
        return ("tool", self._invocation(context), which)

    @staticmethod
    def _error(error: Any) -> str:
        if isinstance(error, dict):
            kind, message = error.get("type"), error.get("message")
            return f"{kind}: {message}" if kind and message else str(kind or message)
        return str(error)

    def _start(self, key: Key, what: str, detail: str) -> None:
        self._started.setdefault(key, []).append(time.monotonic())
        self._started.move_to_end(key)
        while len(self._started) > self.max_pending:
            self._started.popitem(last=False)
        log.log(self.level, "%s started (%s)", what, detail)

    def _end(self, key: Key, what: str, detail: str = "", error: str | None = None) -> None:
        starts = self._started.get(key)
        elapsed: float | None = None
        if starts:
            elapsed = (time.monotonic() - starts.pop()) * 1000
            if not starts:
                del self._started[key]
        took = "(its start was not seen)" if elapsed is None else f"after {elapsed:.1f} ms"
        if error is not None:
            log.log(max(self.level, logging.WARNING), "%s failed %s: %s", what, took, error)
        else:
            log.log(self.level, "%s ended %s%s", what, took, f" ({detail})" if detail else "")
