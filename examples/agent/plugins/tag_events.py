"""Tag every event (audit, debugging).

``on_event`` adds ``config["tag"]`` (default ``"plugin_demo"``) to the event's
``tags`` list, in place; the event is a mutable argument, so the next plugin and the
caller see the tag. It returns None: the event is not replaced.
"""

from __future__ import annotations

from typing import Any


class TagPlugin:
    name = "tag"
    version = "1.0.0"

    def initialize(self, config: dict[str, Any]) -> None:
        self.tag = str(config.get("tag", "plugin_demo"))

    def on_event(self, event: dict[str, Any]) -> None:
        tags = event.setdefault("tags", [])
        if self.tag not in tags:
            tags.append(self.tag)
