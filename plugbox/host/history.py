"""The failure reports a host keeps: a history per plugin bounded in count and bytes,
and running totals per plugin that are never dropped."""

from __future__ import annotations

import heapq
import sys
from collections import Counter, deque
from dataclasses import dataclass, field

from ..reports import Cause, FailureCounts, FailureReport

#: what a report costs beyond its strings: the object, its tuple, a history entry
_REPORT_OVERHEAD = sys.getsizeof(
    FailureReport(plugin="", version="", hook="", cause="raised", detail="")
)
_ENTRY_OVERHEAD = _REPORT_OVERHEAD + 128


def report_size(report: FailureReport) -> int:
    """The bytes ``report`` holds in memory, estimated from its strings and objects
    (shared strings counted as its own: an upper bound)."""
    size = _ENTRY_OVERHEAD + sys.getsizeof(report.stderr_tail)
    for text in (report.plugin, report.version, report.hook, report.detail, report.signal):
        size += sys.getsizeof(text)
    for text in (report.exc_type, report.exc_message, report.traceback):
        if text is not None:
            size += sys.getsizeof(text)
    return size + sum(sys.getsizeof(line) for line in report.stderr_tail)


@dataclass(slots=True)
class _Kept:
    """One plugin's history: (sequence number, report, size) oldest first, and totals."""

    entries: deque[tuple[int, FailureReport, int]] = field(default_factory=deque)
    bytes: int = 0
    total: int = 0
    dropped: int = 0
    by_cause: Counter[Cause] = field(default_factory=Counter)


class ReportHistory:
    """Every plugin's recent failure reports, and how many it has had of each cause.

    ``record`` keeps a plugin's newest reports within the ``keep`` count and ``keep_bytes``
    it is given (its ``Limits.report_history`` and ``report_history_kb``), dropping the
    oldest first, and at most ``max_reports`` across plugins (the oldest of any plugin
    goes first). Totals count every report recorded, dropped ones included.
    """

    def __init__(self, max_reports: int) -> None:
        self.max_reports = max_reports
        self._plugins: dict[str, _Kept] = {}
        self._seq = 0
        self._kept = 0

    def record(self, report: FailureReport, keep: int, keep_bytes: int) -> None:
        """Count ``report`` and keep it, dropping the oldest beyond the bounds."""
        kept = self._plugins.get(report.plugin)
        if kept is None:
            kept = self._plugins[report.plugin] = _Kept()
        kept.total += 1
        kept.by_cause[report.cause] += 1
        size = report_size(report)
        kept.entries.append((self._seq, report, size))
        self._seq += 1
        kept.bytes += size
        self._kept += 1
        while kept.entries and (len(kept.entries) > keep or kept.bytes > keep_bytes):
            self._drop_oldest(kept)
        while self._kept > max(self.max_reports, 0):
            self._drop_oldest(min(self._holding(), key=lambda k: k.entries[0][0]))

    def reports(self) -> list[FailureReport]:
        """The reports kept, of every plugin, oldest first."""
        return [report for _, report, _ in heapq.merge(*(k.entries for k in self._holding()))]

    def counts(self, plugin: str) -> FailureCounts | None:
        """The totals of ``plugin``'s reports; None if it never had one."""
        kept = self._plugins.get(plugin)
        if kept is None:
            return None
        return FailureCounts(
            plugin=plugin,
            total=kept.total,
            by_cause=dict(kept.by_cause),
            dropped=kept.dropped,
            kept=len(kept.entries),
            kept_bytes=kept.bytes,
        )

    def _holding(self) -> list[_Kept]:
        return [kept for kept in self._plugins.values() if kept.entries]

    def _drop_oldest(self, kept: _Kept) -> None:
        _, _, size = kept.entries.popleft()
        kept.bytes -= size
        kept.dropped += 1
        self._kept -= 1


__all__ = ["ReportHistory", "report_size"]
