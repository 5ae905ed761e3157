"""Plugins that attack what the host keeps of their failures: every report a host
records, with its stderr tail, exception type, message and traceback.

``process(input_data)`` raises on every call, after making its report as large as it
can: fresh stderr, or an Error frame carrying megabytes of text. ``HealthyPlugin`` is
the bystander that keeps serving beside them.
"""

import os
import sys


def _fresh(n):
    """``n`` characters of text no other call wrote (hex of random bytes)."""
    return os.urandom(n // 2 + 1).hex()[:n]


class StderrRaiserPlugin:
    """Fills its stderr tail with fresh, long lines, then raises: each report would
    hold the whole tail (lines of up to the host's longest line)."""

    name = "stderr-raiser"
    version = "1.0.0"

    def initialize(self, config):
        if config.get("name"):
            self.name = config["name"]
        self.message = config.get("message", "raised after a screenful of stderr")
        self.lines = int(config.get("lines", 40))
        self.width = int(config.get("width", 4095))
        # multi-byte text costs the host more per character than ASCII
        self.wide = bool(config.get("wide", False))

    def process(self, input_data):
        for _ in range(self.lines):
            line = _fresh(self.width)
            if self.wide:
                line = line.translate(str.maketrans("0123456789abcdef", "\U0001f600" * 16))
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        raise ValueError(self.message)


class HugeErrorPlugin:
    """Raises with an Error frame as large as the frame cap allows.

    ``via="patch"``: replaces the worker's ``error_reply`` (the plugin runs in the worker
    process, so it may) with one that sends megabytes of message and traceback.
    ``via="qualname"``: no patching; the exception's class has a name of megabytes, which
    the worker's own Error reply carries as its type.
    """

    name = "huge-error"
    version = "1.0.0"

    def initialize(self, config):
        self.via = config.get("via", "patch")
        self.mb = float(config.get("mb", 15))
        if self.via == "patch":
            from plugbox.protocol import Error
            from plugbox.worker import serve

            size = int(self.mb * (1 << 20))

            def error_reply(call_id, exc):
                # the frame cap bounds the three together: a type name, a message and
                # a traceback of megabytes, fresh on each call
                return Error(
                    id=call_id,
                    exc_type="Huge" + _fresh(256 * 1024),
                    message=_fresh(size // 4),
                    traceback="Traceback (most recent call last):\n" + _fresh(size * 3 // 4),
                )

            serve.error_reply = error_reply

    def process(self, input_data):
        if self.via == "qualname":
            cls = type("Huge" + _fresh(int(self.mb * (1 << 20))), (Exception,), {})
            raise cls("a type name of megabytes")
        raise ValueError("the real error, replaced on the way out")


class HealthyPlugin:
    """The bystander: answers every call."""

    name = "healthy"
    version = "1.0.0"

    def process(self, input_data):
        return {"healthy": input_data}
