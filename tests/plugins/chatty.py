"""A plugin that talks: stdout, stderr and stdlib logging; its close() logs too."""

import logging
import os
import sys
import time

log = logging.getLogger("chatty")


class ChattyPlugin:
    name = "chatty"
    version = "0.3.0"

    def initialize(self, config):
        self.name = config.get("name", self.name)
        self.hang_on_close = config.get("hang_on_close", False)
        log.warning("%s initialized", self.name)

    def process(self, input_data):
        print(f"stdout line from {self.name}: {input_data}")
        print(f"stderr line from {self.name}", file=sys.stderr)
        os.write(1, b"raw bytes on fd 1\n")
        log.info("info record: %s", input_data)
        log.warning("warning record: %s", input_data)
        sys.stdout.write("no newline at the end")
        return {"echo": input_data, "by": self.name}

    def close(self):
        log.warning("%s closing", self.name)
        if self.hang_on_close:
            time.sleep(3600)
