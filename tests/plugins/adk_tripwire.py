"""A plugin for tests/adapters/test_adk.py that misbehaves when the conversation asks it to.

- ``before_model``: the worker segfaults when the last user message contains "segfault";
- ``before_tool``: hangs when the tool is asked about the city "Atlantis";
- ``on_event``: the worker segfaults on a tool result event (only with
  ``config={"events": True}``);
- ``after_run``: hangs when the user message contains "linger".

Otherwise every hook returns None and changes nothing, so the same worker, restarted by
the host after a failure, serves the next run normally.
"""

import ctypes
import time


def _segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


class TripwirePlugin:
    name = "tripwire"
    version = "1.0.0"

    def initialize(self, config):
        self.events = bool(config.get("events", False))

    def before_model(self, request):
        users = [m for m in request.get("messages", []) if m.get("role") == "user"]
        if users and "segfault" in str(users[-1].get("content")):
            _segfault()

    def before_tool(self, args):
        if args.get("city") == "Atlantis":
            time.sleep(3600)

    def on_event(self, event):
        if self.events and event.get("type") == "tool_result":
            _segfault()

    def after_run(self, message):
        if "linger" in str(message.get("content")):
            time.sleep(3600)
