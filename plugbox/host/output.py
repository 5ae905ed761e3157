"""A worker's output: its stdout and stderr, read from their pipes, and the Log records
it sends, each logged as one escaped line under a rate limit, what is over it dropped
and counted; the last lines of each stream are kept for failure reports.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass

import anyio

from ..protocol import Log
from .tasks import HostTasks

#: characters of an output line, and of a Log record's text, the host logs or keeps
MAX_LINE = 4096
MAX_RECORD = 16 * 1024
MAX_LOGGER_NAME = 200
#: the tail of a stream kept for reports, in bytes (it is also bounded in lines)
TAIL_BYTES = 32 * 1024
#: Log records kept before the Handshake names the plugin (they are logged then): a
#: plugin's import-time warnings are a few records; 64 KiB bounds what a worker that
#: never shakes hands can make the host hold.
EARLY_RECORDS = 256
EARLY_BYTES = 64 * 1024
#: the rate limit of one worker's output lines and Log records together: records and
#: bytes (of text) a second, and the bursts allowed above them
RATE_RECORDS, BURST_RECORDS = 200.0, 1000.0
RATE_BYTES, BURST_BYTES = 256.0 * 1024, 1024.0 * 1024
#: while a worker floods, its drops are reported at most this often (seconds)
REPORT_EVERY = 5.0
#: After reading a chunk in which something was dropped, the host leaves the pipe or
#: channel unread for this many times as long as the chunk took to take in (at least
#: FLOOD_PAUSE, at most MAX_FLOOD_PAUSE seconds): a flood costs the host a small share
#: of a core, and the flooding worker waits for its writes. The pause follows the
#: chunk's cost alone, so a plugin that prints a lot in a call (8 MB of lines in
#: 130 chunks) is slowed by about as much as its output costs, not by a fixed wait
#: per chunk that would outlast its call's deadline.
FLOOD_SHARE = 20
FLOOD_PAUSE = 0.001
MAX_FLOOD_PAUSE = 1.0

# every C0 control (newline included), DEL and C1 control, and the Unicode line and
# paragraph separators: escaped, so one record is one line and cannot forge another
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape(text: str) -> str:
    """``text`` on one line: newlines, other control characters and line separators
    escaped (``\\n``, ``\\xNN``), so what a plugin writes cannot forge a log line."""
    return text.translate(_ESCAPES)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def pause_after(started: float) -> float:
    """How long to leave a flooding stream unread after taking in a chunk since
    ``started`` (``time.monotonic()``)."""
    took = time.monotonic() - started
    return min(max(FLOOD_SHARE * took, FLOOD_PAUSE), MAX_FLOOD_PAUSE)


def _same_file(fd: int, stat: os.stat_result) -> bool:
    """Whether ``fd`` is still open on the file ``stat`` describes."""
    try:
        now = os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (stat.st_dev, stat.st_ino)


@dataclass
class Drops:
    """What a worker's output lost: lines and Log records over the rate limit, and
    Log records over the cap of those kept before the Handshake (with their bytes)."""

    lines: int = 0
    line_bytes: int = 0
    records: int = 0
    record_bytes: int = 0
    early: int = 0
    early_bytes: int = 0

    def describe(self) -> str:
        """'3 output lines (12 bytes) and 5 log records (40 bytes)'; '' if none."""
        parts = []
        if self.lines:
            parts.append(f"{self.lines} output lines ({self.line_bytes} bytes)")
        if self.records:
            parts.append(f"{self.records} log records ({self.record_bytes} bytes)")
        return " and ".join(parts)


class Budget:
    """A token bucket: records and bytes a second, with bursts."""

    def __init__(self) -> None:
        self.records = BURST_RECORDS
        self.bytes = BURST_BYTES
        self._last = time.monotonic()

    def refill(self, now: float) -> None:
        """Add what the time since the last refill earned."""
        elapsed = now - self._last
        if elapsed > 0:
            self._last = now
            self.records = min(BURST_RECORDS, self.records + elapsed * RATE_RECORDS)
            self.bytes = min(BURST_BYTES, self.bytes + elapsed * RATE_BYTES)

    def take(self, size: int) -> bool:
        """Spend one record of ``size`` bytes, if the bucket holds it."""
        if self.records >= 1 and self.bytes >= size:
            self.records -= 1
            self.bytes -= size
            return True
        return False


class OutputCapture:
    """One stream of one worker: line splitter, logger (through its worker's rate
    limit) and tail, bounded in lines and in bytes."""

    def __init__(self, output: WorkerOutput, level: int, *, tail_lines: int = 20) -> None:
        self.output = output
        self.level = level
        self._tail: deque[str] = deque(maxlen=max(tail_lines, 1))
        self._tail_bytes = 0
        self._partial = b""
        self.bytes = 0

    @property
    def tail(self) -> list[str]:
        """The last lines (escaped), after a line saying what the worker's output lost
        to the rate limit, if it lost anything."""
        dropped = self.output.drops.describe()
        lines = list(self._tail)
        if not dropped:
            return lines
        return [f"[plugbox: {dropped} of this worker dropped from the log]", *lines]

    def feed(self, data: bytes, now: float) -> bool:
        """Take a chunk read from the pipe at ``now``; whether lines were dropped. Only
        the lines the rate limit lets through and the last ones (for the tail) are
        decoded: a flood of lines costs a few passes over the bytes, not one per line."""
        self.bytes += len(data)
        if self._partial:
            data = self._partial + data
            self._partial = b""
        end = data.rfind(b"\n")
        rest = data[end + 1 :]
        if len(rest) <= MAX_LINE:
            self._partial = rest
            rest = b""
        if end < 0:
            return self._take([rest[:MAX_LINE]], 1, len(rest), now) if rest else False
        whole = data[:end]
        n = whole.count(b"\n") + 1
        if rest:  # a line over MAX_LINE without its end: logged cut
            whole += b"\n" + rest[:MAX_LINE]
            n += 1
        budget = self.output.budget
        budget.refill(now)
        head = min(n, int(budget.records))
        tail = min(n, self._tail.maxlen or 1)
        if n <= head + tail:
            lines = whole.split(b"\n")
        else:
            first = whole.split(b"\n", head)[:head] if head else []
            lines = first + whole.rsplit(b"\n", tail)[-tail:]
        return self._take(lines, n, len(whole) + 1, now, head)

    def _take(self, lines: list[bytes], n: int, size: int, now: float, head: int = 1) -> bool:
        """Log the first ``head`` of ``lines`` (the first of ``n`` lines, ``size``
        bytes, read) that the rate limit allows, keep the last ones in the tail."""
        output = self.output
        logger, level, budget = output.logger, self.level, output.budget
        budget.refill(now)
        logged = logged_bytes = 0
        texts = [escape(line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")) for line in lines]
        enabled = logger.isEnabledFor(level)  # (what the host does not log counts too)
        for text in texts[:head]:
            if not budget.take(len(text)):
                break
            if enabled:
                logger.log(level, "%s", text)
            logged += 1
            logged_bytes += len(text) + 1
        for text in texts[-(self._tail.maxlen or 1) :]:  # the last lines (see ``feed``)
            self._keep(text)
        if logged < n:
            output.drops.lines += n - logged
            output.drops.line_bytes += max(size - logged_bytes, 0)
            output.dropped(now)
            return True
        return False

    def _keep(self, text: str) -> None:
        tail = self._tail
        if len(tail) == tail.maxlen:
            self._tail_bytes -= len(tail[0])
        tail.append(text)
        self._tail_bytes += len(text)
        while self._tail_bytes > TAIL_BYTES and len(tail) > 1:
            self._tail_bytes -= len(tail.popleft())

    def close(self) -> None:
        """The pipe ended: take a last unterminated line."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self._take([partial[:MAX_LINE]], 1, len(partial), time.monotonic())


class WorkerOutput:
    """A worker's stdout and stderr, each read from its pipe into an OutputCapture,
    and its Log records; ``drained`` is set once both pipes have ended. ``now`` is the
    time the reader of the channel set when it read the chunk it is taking in."""

    def __init__(self, logger: logging.Logger, *, tail_lines: int, plugin: str = "?") -> None:
        self.logger = logger
        self.plugin = plugin
        self.budget = Budget()
        self.drops = Drops()
        self._reported = Drops()
        self._reported_at = 0.0
        #: whether Log records were dropped since the channel's reader last looked
        self.flooded = False
        self.now = time.monotonic()
        self._early: list[tuple[int, str, str]] = []  # level, logger, message (clipped)
        self._early_bytes = 0
        self.stdout = OutputCapture(self, logging.INFO, tail_lines=tail_lines)
        self.stderr = OutputCapture(self, logging.WARNING, tail_lines=tail_lines)
        self.drained = anyio.Event()
        self._open = 2

    def start(self, tg: HostTasks, stdout: int, stderr: int) -> None:
        """Start reading the pipes ``stdout`` and ``stderr`` (non-blocking fds)."""
        tg.start_soon(self._read, stdout, self.stdout)
        tg.start_soon(self._read, stderr, self.stderr)

    def name_logger(self, logger: logging.Logger, plugin: str) -> None:
        """Log to ``logger``, as plugin ``plugin``, from now on."""
        self.logger = logger
        self.plugin = plugin

    # ---------------------------------------------------------------- Log records
    def record(self, msg: Log, *, early: bool) -> None:
        """A Log record from the worker: kept (within EARLY_RECORDS and EARLY_BYTES)
        if it came ``early``, before the Handshake; else logged within the rate limit.
        A record dropped sets ``flooded``."""
        size = min(len(msg.message), MAX_RECORD) + min(len(msg.logger), MAX_LOGGER_NAME)
        if early:
            if len(self._early) < EARLY_RECORDS and self._early_bytes + size <= EARLY_BYTES:
                name, text = clip(msg.logger, MAX_LOGGER_NAME), clip(msg.message, MAX_RECORD)
                self._early.append((msg.level, name, text))
                self._early_bytes += size
            else:
                self.drops.early += 1
                self.drops.early_bytes += len(msg.message) + len(msg.logger)
                self.flooded = True
            return
        budget = self.budget
        budget.refill(self.now)
        if budget.take(size):  # (what the host does not log counts too: it was decoded)
            if self.logger.isEnabledFor(msg.level):
                self._log(
                    msg.level, clip(msg.logger, MAX_LOGGER_NAME), clip(msg.message, MAX_RECORD)
                )
        else:
            self.drops.records += 1
            self.drops.record_bytes += len(msg.message) + len(msg.logger)
            self.flooded = True
            self.dropped(self.now)

    def drop_unread(self, count: int, size: int, *, early: bool) -> None:
        """``count`` more Log records (``size`` bytes of frames) were dropped unread,
        ``early`` (before the Handshake) or over the rate limit."""
        if early:
            self.drops.early += count
            self.drops.early_bytes += size
        else:
            self.drops.records += count
            self.drops.record_bytes += size

    def _log(self, level: int, name: str, text: str) -> None:
        self.logger.log(level, "%s: %s", escape(name), escape(text))

    def replay_early(self) -> None:
        """Log the records kept before the Handshake, and say how many were not kept."""
        for level, name, text in self._early:
            if self.logger.isEnabledFor(level):
                self._log(level, name, text)
        self._early.clear()
        self._early_bytes = 0
        if self.drops.early:
            self.logger.warning(
                "%d early log records (%d bytes) from plugin %s dropped",
                self.drops.early,
                self.drops.early_bytes,
                self.plugin,
            )

    # ---------------------------------------------------------------- drops
    def dropped(self, now: float) -> None:
        """Something was dropped at ``now``: report the drops every REPORT_EVERY s."""
        if now - self._reported_at >= REPORT_EVERY:
            self.report_drops(now)

    def report_drops(self, now: float | None = None) -> None:
        """Log what the rate limit dropped since the last report, if anything."""
        drops, seen = self.drops, self._reported
        new = Drops(
            lines=drops.lines - seen.lines,
            line_bytes=drops.line_bytes - seen.line_bytes,
            records=drops.records - seen.records,
            record_bytes=drops.record_bytes - seen.record_bytes,
        )
        if new.lines or new.records:
            self.logger.warning(
                "%s from plugin %s dropped by the rate limit", new.describe(), self.plugin
            )
            self._reported = Drops(**vars(drops))
        self._reported_at = time.monotonic() if now is None else now

    async def _read(self, fd: int, capture: OutputCapture) -> None:
        try:
            pipe = os.fstat(fd)
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
                now = time.monotonic()
                if capture.feed(data, now):  # lines dropped: a flood; let it wait
                    await anyio.sleep(pause_after(now))
                    if not _same_file(fd, pipe):  # closed (its end was judged) meanwhile
                        break
        except (anyio.ClosedResourceError, OSError):
            pass
        finally:
            capture.close()
            self._open -= 1
            if self._open == 0:
                self.report_drops()
                self.drained.set()
