"""Rewrite tool arguments before the tool runs (sanitization).

``before_tool`` changes the tool's arguments in place (trpc's ModifiedArguments): the
next plugin and the tool itself get the rewritten arguments. ``config["overrides"]``
maps a tool name to the arguments to force on it; the default is the guide's
``{"calculator": {"operation": "add", "a": 1, "b": 2}}``. Returning None lets the tool
run (a non-None return would be the tool's result instead).
"""

from __future__ import annotations

from typing import Any

DEFAULT = {"calculator": {"operation": "add", "a": 1, "b": 2}}


class ToolArgsPlugin:
    name = "tool_args"
    version = "1.0.0"

    def initialize(self, config: dict[str, Any]) -> None:
        self.overrides: dict[str, dict[str, Any]] = config.get("overrides", DEFAULT)

    def before_tool(self, tool: dict[str, Any], args: dict[str, Any]) -> None:
        forced = self.overrides.get(tool.get("name", ""))
        if forced:
            args.update(forced)
