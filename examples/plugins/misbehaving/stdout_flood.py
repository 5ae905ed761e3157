"""Misbehaving plugin: floods stdout, then behaves.

``process`` prints 200,000 lines and then returns None normally (so the chain passes
its input on unchanged). A worker's stdout never touches the channel: the host reads
it from a pipe and logs it under ``plugbox.plugin.stdout-flood`` with a rate limit,
counting and summarizing the lines over the limit, so the flood can neither corrupt
the protocol nor drown the host's log.

The host must report no failure for it: the call succeeds (no FailureReport).
"""

LINES = 200_000


class StdoutFloodPlugin:
    name = "stdout-flood"
    version = "0.1.0"

    def process(self, input_data):
        for i in range(LINES):
            print(f"stdout-flood line {i}: {input_data!r}")
        return None
