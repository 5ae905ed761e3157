"""A plugin that intercepts every message of the PIPELINE hooks and logs it (through
``logging``, which its worker forwards to the host as ``plugbox.plugin.message-logger``)
and, with ``config={"path": ...}``, appends it to that file as one JSON line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TextIO

log = logging.getLogger("message-logger")

#: how much of a message the log line shows (the JSON file keeps it whole).
PREVIEW_CHARS = 80


def _preview(value: Any) -> str:
    text = repr(value)
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 3] + "..."
    return text


class MessageLoggerPlugin:
    """Logs every message that passes through the pipeline; changes nothing.

    ``pre_process`` sees each message first; ``process`` sees it in the chain and
    returns None, so the chain passes it on unchanged; ``post_process`` sees it with the
    chain's output. Plain Python: it imports nothing from plugbox, and the same class
    works in-process (``await plugin.initialize({}); plugin.process("hi")``).
    """

    name = "message-logger"
    version = "1.0.0"

    def __init__(self) -> None:
        self.path: str | None = None
        self._file: TextIO | None = None
        self.count = 0

    async def initialize(self, config: dict[str, Any]) -> None:
        """Called once, when the plugin is loaded; ``config["path"]`` is optional."""
        path = config.get("path")
        if path:
            self.path = str(path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        log.info("ready (writing JSON lines to %s)", self.path or "nowhere: log only")

    # ------------------------------------------------------------------ hooks
    def pre_process(self, input_data: Any) -> None:
        self._record("pre_process", input=input_data)

    def process(self, input_data: Any) -> None:
        self._record("process", input=input_data)
        return None  # observe only: the chain passes input_data on unchanged

    def post_process(self, input_data: Any, output: Any) -> None:
        self._record("post_process", input=input_data, output=output)

    # ------------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        """Called once when the host closes the plugin."""
        log.info("closing after %d messages", self.count)
        if self._file is not None:
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ helpers
    def _record(self, hook: str, **fields: Any) -> None:
        self.count += 1
        shown = " ".join(f"{key}={_preview(value)}" for key, value in fields.items())
        log.info("#%d %s %s", self.count, hook, shown)
        if self._file is not None:
            entry = {"n": self.count, "time": time.time(), "hook": hook, **fields}
            self._file.write(json.dumps(entry, default=repr) + "\n")
            self._file.flush()
