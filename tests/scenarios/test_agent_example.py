"""examples/agent/agent_loop.py runs as documented: every step it shows happens, and it
exits 0 (it checks its own expectations and exits 1 when one is not met)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LOOP = Path(__file__).parents[2] / "examples" / "agent" / "agent_loop.py"


def test_the_agent_loop_example() -> None:
    done = subprocess.run(
        [sys.executable, str(LOOP)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for shown in [
        "the model gets 2 messages, the first: system: 'You must follow security policies.'",
        "before_tool: arguments rewritten {'city': 'Paris', 'units': 'fahrenheit'} -> "
        "{'city': 'Paris', 'units': 'celsius'}",
        "event inv-1-2 tool_result, tags ['plugin_demo']; misbehaving failed (RuntimeError: "
        "cannot stand tool results (inv-1-2)), skipped",
        "before_model: short-circuited by 'policy', the model was not called",
        "=> Blocked by plugin policy. (model calls in this run: 0)",
        "after_model: 'redact' replaced the response",
        "=> 6 times 7 is 42. (debug: api_key=[redacted])",
        "=> the run raised PluginCrashed: plugin 'misbehaving' in before_model, crashed by SIGABRT",
        "=> You're welcome.",
        "lifecycle: tool weather ended after ",
    ]:
        assert shown in out, shown
    assert "expectation" not in out
