"""A plugin for tests/adapters/test_openai_agents.py that segfaults (SIGSEGV, reading
address 0) mid-run: in ``on_event`` on the event type ``config["event"]``, and in
``before_model`` when a user message contains ``config["word"]``. Deterministic per
input, so a restarted worker behaves the same."""

import ctypes


class OaiCrashPlugin:
    name = "oai-crash"
    version = "1.0.0"

    def initialize(self, config):
        self.event = config.get("event")
        self.word = config.get("word")

    def on_event(self, event):
        if event.get("type") == self.event:
            ctypes.string_at(0)

    def before_model(self, request):
        for message in request.get("messages", []):
            if (
                self.word
                and message.get("role") == "user"
                and self.word in str(message.get("content"))
            ):
                ctypes.string_at(0)
