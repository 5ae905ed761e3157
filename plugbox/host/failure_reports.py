"""A supervised plugin's FailureReports: from how its worker ended or the Error it
sent, and for its quarantine."""

from __future__ import annotations

import time
from typing import Protocol

from ..protocol import Error
from ..reports import Cause, FailureReport, signal_name
from . import _linux
from .causes import Death
from .worker_process import WorkerProcess


class Reported(Protocol):
    """What a report says of the plugin: a ``SupervisedPlugin``."""

    name: str
    version: str
    restarts: int


def failure_report(
    plugin: Reported,
    worker: WorkerProcess | None,
    hook: str,
    cause: Cause,
    detail: str,
    death: Death | None,
    duration: float = 0.0,
    exc: Error | None = None,
) -> FailureReport:
    """The report of a failure of ``plugin`` in ``hook``: ``death`` says how its worker
    ended (None: it lives, and its peak RSS and CPU time are read now), ``exc`` the
    Error it sent, if any."""
    pid = worker.pid if worker is not None else None
    peak, cpu = 0, 0.0
    if death is not None:
        peak, cpu = death.peak_rss_kb, death.cpu_time
    elif pid is not None:
        peak, cpu = _linux.peak_rss_kb(pid), _linux.cpu_time(pid)
    return FailureReport(
        plugin=plugin.name,
        version=plugin.version,
        hook=hook,
        cause=cause,
        detail=detail,
        pid=pid,
        exit_code=death.exit_code if death is not None else None,
        signal=signal_name(death.signal) if death is not None else None,
        duration=duration,
        peak_rss_kb=peak,
        cpu_time=cpu,
        stderr_tail=tuple(worker.stderr.tail) if worker is not None else (),
        restarts=plugin.restarts,
        exc_type=exc.exc_type if exc else None,
        exc_message=exc.message if exc else None,
        traceback=exc.traceback if exc else None,
        killed=bool(death is not None and death.kill_reason is not None),
        time=time.time(),
    )


def quarantine_report(
    plugin: str, version: str, last: FailureReport, failures: int, window: float, restarts: int
) -> FailureReport:
    """The report that quarantines ``plugin``: ``failures`` within ``window`` seconds,
    the ``last`` of them just recorded."""
    return FailureReport(
        plugin=plugin,
        version=version,
        hook=last.hook,
        cause="quarantined",
        detail=(
            f"quarantined after {failures} failures within {window:g} s "
            f"(last: {last.cause}: {last.detail}); host.reset({plugin!r}) "
            f"lets it run again"
        ),
        pid=last.pid,
        restarts=restarts,
        time=time.time(),
    )


def refused_report(quarantine: FailureReport, hook: str, restarts: int) -> FailureReport:
    """The report of a call to ``hook`` refused because the plugin is quarantined."""
    return FailureReport(
        plugin=quarantine.plugin,
        version=quarantine.version,
        hook=hook,
        cause="quarantined",
        detail=quarantine.detail,
        restarts=restarts,
        time=time.time(),
    )


def describe(error: Error) -> str:
    """'ValueError: bad input', or just 'MemoryError' when the message is empty."""
    return f"{error.exc_type}: {error.message}" if error.message else error.exc_type
