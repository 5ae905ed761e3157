"""A plugin for tests/host/test_audit.py: ``ask(query, state)`` in first_result mode.

``config``: ``name``, ``answer`` (returned for ordinary queries; None by default).
``query`` ``"touch"`` changes ``state`` in place; ``"crash:NAME"`` / ``"hang:NAME"``
make the plugin named NAME exit or hang; ``"marker"`` writes ``hook-ran`` into the
worker's scratch directory (its cwd).
"""

import os
import time


class AuditedPlugin:
    name = "audited"
    version = "1.4.2"

    def initialize(self, config):
        self.name = config.get("name", self.name)
        self.answer = config.get("answer")

    def ask(self, query, state):
        if query == "touch":
            state["seen_by"] = [*state.get("seen_by", []), self.name]
            return None
        if query == f"crash:{self.name}":
            os._exit(3)
        if query == f"hang:{self.name}":
            time.sleep(3600)
        if query == "marker":
            with open("hook-ran", "w") as f:
                f.write(self.name)
            return "marked"
        return self.answer
