"""The plugin the benchmarks load: echoes, observes, and crashes on request.

``initialize(config)`` may rename it (``{"name": "bench-7"}``) so one file serves the
50 plugins of the fan-out figure.
"""

import os
import sys
import time


class BenchPlugin:
    name = "bench"
    version = "1.0.0"

    def initialize(self, config):
        self.name = config.get("name", self.name)

    def echo(self, payload):
        return payload

    async def aecho(self, payload):
        return payload

    def observe(self, payload):
        return None

    def crash(self, code):
        # The moment of death on CLOCK_MONOTONIC (one clock for every process on Linux),
        # left on stderr: the host hands the tail back in the FailureReport.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        sys.stderr.write(f"bench-crash-at {now}\n")
        sys.stderr.flush()
        os._exit(code)
