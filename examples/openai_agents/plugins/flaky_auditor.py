"""An audit plugin with a bug in native code: its ``on_event`` segfaults (reads address
0) on every ``tool_end`` event, and records the others.

``on_event`` is an observe point (mode ``chain``, on failure ``skip``): the host reports
the crash (cause ``crashed``, signal ``SIGSEGV``), the event goes on as the plugin got
it, the run goes on, and the next call starts a fresh worker.
"""

from __future__ import annotations

import ctypes
from typing import Any


class FlakyAuditorPlugin:
    name = "flaky_auditor"
    version = "0.1.0"

    def __init__(self) -> None:
        self.seen = 0

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "tool_end":
            ctypes.string_at(0)  # SIGSEGV: the worker dies; the host sees why
        self.seen += 1
