"""A supervised plugin's restart policy: the backoff after failures in a row, and
quarantine after too many failures (or, with ``Limits.max_raises``, raises) in a window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from ..errors import FAILURE_TYPES
from ..reports import FailureReport
from .failure_reports import quarantine_report, refused_report
from .options import PluginOptions
from .standby import Standby


class FailureAccounting:
    """The failure counts of ``SupervisedPlugin`` and what they decide: how long the
    next start waits, and when the plugin is quarantined until ``reset()``."""

    options: PluginOptions
    name: str
    version: str
    restarts: int
    record: Callable[[FailureReport], None]
    standby: Standby
    failures_in_row: int
    last_failure_at: float
    recent_failures: deque[float]
    recent_raises: deque[float]  # counted with Limits.max_raises only
    quarantine: FailureReport | None

    def backoff(self) -> float:
        """Seconds to wait before the next start, after ``failures_in_row`` failures."""
        limits = self.options.limits
        if self.failures_in_row == 0:
            return 0.0
        # the exponent is capped: 2.0 ** 1024 overflows, and a plugin that never meets
        # quarantine (failures spaced past its window) may fail that often in a row
        doubling = 2.0 ** min(self.failures_in_row - 1, 64)
        return float(min(limits.backoff_initial * doubling, limits.backoff_max))

    def _count_failure(self, report: FailureReport) -> FailureReport:
        """Record a failure that killed the worker; returns the report as recorded
        (with the backoff the next start will wait)."""
        now = time.monotonic()
        self.failures_in_row += 1
        self.last_failure_at = now
        report = replace(report, backoff=self.backoff())
        self.record(report)
        window = self.options.limits.failure_window
        self.recent_failures.append(now)
        while self.recent_failures and now - self.recent_failures[0] > window:
            self.recent_failures.popleft()
        if len(self.recent_failures) >= self.options.limits.max_failures:
            n = len(self.recent_failures)
            self._quarantine(
                quarantine_report(self.name, self.version, report, n, window, self.restarts)
            )
        return report

    def _count_raise(self, report: FailureReport) -> bool:
        """Count a raise (``report``, recorded) toward ``Limits.max_raises``: whether it
        quarantined the plugin (its caller then stops the worker)."""
        limits = self.options.limits
        if limits.max_raises is None or self.quarantine is not None:
            return False
        now = time.monotonic()
        raises = self.recent_raises
        raises.append(now)
        while raises and (now - raises[0] > limits.raise_window or len(raises) > limits.max_raises):
            raises.popleft()
        if len(raises) < limits.max_raises:
            return False
        self._quarantine(
            quarantine_report(
                self.name,
                self.version,
                report,
                len(raises),
                limits.raise_window,
                self.restarts,
                counted="raises",
                setting=f"Limits.max_raises={limits.max_raises}",
            )
        )
        return True

    def _quarantine(self, report: FailureReport) -> None:
        self.quarantine = report
        self.record(report)
        self.standby.drop_soon()  # no restart until reset()

    def _check_quarantine(self, hook: str) -> None:
        if self.quarantine is not None:
            report = refused_report(self.quarantine, hook, self.restarts)
            raise FAILURE_TYPES["quarantined"](report)

    def reset(self) -> None:
        """Lift a quarantine and forget the failure history."""
        self.quarantine = None
        self.recent_failures.clear()
        self.recent_raises.clear()
        self.failures_in_row = 0
