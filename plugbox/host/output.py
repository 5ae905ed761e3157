"""A worker's stdout and stderr: split into lines, logged with a rate limit, tail kept.

Each stream goes to the stdlib logger ``plugbox.plugin.<name>`` (stdout at INFO,
stderr at WARNING), at most ``rate`` lines a second after a burst of ``burst``; lines
over the limit are counted and summarized (at most once a second), never queued, so a
flood cannot starve the host. The last lines of each stream are kept for failure
reports.
"""

from __future__ import annotations

import logging
import time
from collections import deque

MAX_LINE = 4096


class OutputCapture:
    """Line splitter, rate-limited logger and tail for one stream of one worker."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        *,
        tail_lines: int = 20,
        rate: float = 200.0,
        burst: int = 400,
    ) -> None:
        self.logger = logger
        self.level = level
        self.tail: deque[str] = deque(maxlen=max(tail_lines, 1))
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._partial = b""
        self._last_summary = 0.0
        self.dropped = 0
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        """Take a chunk read from the pipe."""
        self.bytes += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial[:MAX_LINE])
            self._partial = b""
        for raw in lines:
            self._line(raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r"))

    def close(self) -> None:
        """The pipe ended: flush a last unterminated line and any drop summary."""
        if self._partial:
            self._line(self._partial[:MAX_LINE].decode("utf-8", "replace"))
            self._partial = b""
        self._summarize()

    def _line(self, line: str) -> None:
        self.tail.append(line)
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            if self.dropped and now - self._last_summary >= 1.0:
                self._summarize()
            self._tokens -= 1
            self.logger.log(self.level, "%s", line)
        else:
            self.dropped += 1

    def _summarize(self) -> None:
        self._last_summary = time.monotonic()
        if self.dropped:
            self.logger.warning(
                "(%d lines of plugin output dropped by the rate limit)", self.dropped
            )
            self.dropped = 0
