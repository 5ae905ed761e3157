"""A plugin for the standby-worker tests: it says when its module was imported and its
initialize ran (CLOCK_MONOTONIC, one clock for every process on the machine) and which
text of it runs, and exits on demand. Its initialize takes the config's ``sleep``
seconds, fails while the file the config names as ``fail_if`` exists, and logs a
record when the config says ``log``; ``process("log")`` logs one too."""

import logging
import os
import time

LOADED_AT = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
TEXT = "first"


class StandbyPlugin:
    name = "standby"
    version = "1.0"

    def initialize(self, config):
        time.sleep(config.get("sleep", 0))  # a slow load, for a caller to give up on
        marker = config.get("fail_if")
        if marker and os.path.exists(marker):
            raise RuntimeError(f"told to fail by {marker}")
        self.initialized_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if config.get("log"):
            logging.getLogger("standby").warning("initialized at %d", self.initialized_at)

    def process(self, input_data):
        if input_data == "exit":
            os._exit(3)
        if input_data == "log":
            logging.getLogger("standby").warning("called after %d", self.initialized_at)
        return {"loaded_at": LOADED_AT, "initialized_at": self.initialized_at, "text": TEXT}
