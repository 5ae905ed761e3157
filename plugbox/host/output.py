"""A worker's stdout and stderr: read from their pipes until both end, split into
lines, logged with a rate limit, tail kept.

Each stream goes to the stdlib logger ``plugbox.plugin.<name>`` (stdout at INFO,
stderr at WARNING), at most ``rate`` lines a second after a burst of ``burst``; lines
over the limit are counted and summarized (at most once a second), never queued, so a
flood cannot starve the host. The last lines of each stream are kept for failure
reports.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque

import anyio

from .tasks import HostTasks

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


class WorkerOutput:
    """A worker's stdout and stderr, each read from its pipe into an OutputCapture;
    ``drained`` is set once both pipes have ended."""

    def __init__(self, logger: logging.Logger, *, tail_lines: int) -> None:
        self.stdout = OutputCapture(logger, logging.INFO, tail_lines=tail_lines)
        self.stderr = OutputCapture(logger, logging.WARNING, tail_lines=tail_lines)
        self.drained = anyio.Event()
        self._open = 2

    def start(self, tg: HostTasks, stdout: int, stderr: int) -> None:
        """Start reading the pipes ``stdout`` and ``stderr`` (non-blocking fds)."""
        tg.start_soon(self._read, stdout, self.stdout)
        tg.start_soon(self._read, stderr, self.stderr)

    def name_logger(self, logger: logging.Logger) -> None:
        """Log both streams to ``logger`` from now on."""
        self.stdout.logger = logger
        self.stderr.logger = logger

    async def _read(self, fd: int, capture: OutputCapture) -> None:
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                capture.feed(data)
        except anyio.ClosedResourceError:
            pass
        finally:
            capture.close()
            self._open -= 1
            if self._open == 0:
                self.drained.set()
