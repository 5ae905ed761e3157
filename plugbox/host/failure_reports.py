"""A supervised plugin's FailureReports: from how its worker ended or the Error it
sent, and for its quarantine; what a worker sent is capped in bytes as it is put in."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from ..protocol import Error
from ..reports import REFUSALS, Cause, FailureReport, Refusal, signal_name
from . import _linux
from .causes import Death
from .worker_process import WorkerProcess

#: the most one report keeps of each text a worker gave it, in UTF-8 bytes (a cut is
#: marked in the text, saying how much was cut): the stderr tail (its newest lines),
#: the traceback (its start and, most of it, its end), the exception's message and
#: type name, and the detail (which may quote the message)
STDERR_TAIL_BYTES = 16 * 1024
TRACEBACK_BYTES = 64 * 1024
MESSAGE_BYTES = 8 * 1024
EXC_TYPE_BYTES = 256
DETAIL_BYTES = 12 * 1024
#: the most kept of the words a worker gave for a refusal (``Error.details``)
REFUSAL_BYTES = 1024
#: the ``Refusal`` values, as the host's own strings (not the worker's)
_REFUSALS: dict[str, Refusal] = {name: name for name in REFUSALS}


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
    refused, words = refusal(exc)
    if words and words not in detail:
        detail = f"{detail} ({words})"
    return FailureReport(
        plugin=plugin.name,
        version=plugin.version,
        hook=hook,
        cause=cause,
        detail=capped(detail, DETAIL_BYTES, "a detail"),
        pid=pid,
        exit_code=death.exit_code if death is not None else None,
        signal=signal_name(death.signal) if death is not None else None,
        duration=duration,
        peak_rss_kb=peak,
        cpu_time=cpu,
        stderr_tail=stderr_tail(worker.stderr.tail) if worker is not None else (),
        restarts=plugin.restarts,
        exc_type=capped(exc.exc_type, EXC_TYPE_BYTES, "an exception type") if exc else None,
        exc_message=capped(exc.message, MESSAGE_BYTES, "a message") if exc else None,
        traceback=capped(exc.traceback, TRACEBACK_BYTES, "a traceback", 0.25) if exc else None,
        refused=refused,
        killed=bool(death is not None and death.kill_reason is not None),
        time=time.time(),
    )


def quarantine_report(
    plugin: str,
    version: str,
    last: FailureReport,
    failures: int,
    window: float,
    restarts: int,
    counted: str = "failures",
    setting: str = "",
) -> FailureReport:
    """The report that quarantines ``plugin``: ``failures`` within ``window`` seconds,
    the ``last`` of them just recorded. ``counted`` names what was counted, ``setting``
    the setting that made them count (``"Limits.max_raises=3"``)."""
    why = f"{setting}; " if setting else ""
    return FailureReport(
        plugin=plugin,
        version=version,
        hook=last.hook,
        cause="quarantined",
        detail=capped(
            f"quarantined after {failures} {counted} within {window:g} s "
            f"({why}last: {last.cause}: {last.detail}); host.reset({plugin!r}) "
            f"lets it run again",
            DETAIL_BYTES,
            "a detail",
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


def refusal(error: Error | None) -> tuple[Refusal | None, str]:
    """The setting that refused what made the plugin raise ``error``, as its worker
    named it (``Error.details["refused"]``; None unless it is one of ``REFUSALS``), and
    the worker's words naming it (capped; "" without a refusal)."""
    if error is None:
        return None, ""
    refused = _REFUSALS.get(error.details.get("refused", ""))
    if refused is None:
        return None, ""
    return refused, capped(error.details.get("refusal", ""), REFUSAL_BYTES, "a refusal")


def describe(error: Error) -> str:
    """'ValueError: bad input', or just 'MemoryError' when the message is empty (each
    capped as a report keeps it)."""
    exc_type = capped(error.exc_type, EXC_TYPE_BYTES, "an exception type")
    if not error.message:
        return exc_type
    return f"{exc_type}: {capped(error.message, MESSAGE_BYTES, 'a message')}"


def capped(text: str, limit: int, what: str, head_share: float = 1.0) -> str:
    """``text`` if it takes at most ``limit`` bytes in UTF-8; else its start (the
    ``head_share`` of ``limit``) and its end, with a marker between saying how many
    characters were cut. The work is bounded by ``limit``, whatever the text's size."""
    if _fits(text, limit):
        return text
    budget = max(limit - 160, 0)  # room for the marker
    head = _head(text, int(budget * head_share))
    tail = _tail(text, budget - int(budget * head_share))
    cut = len(text) - len(head) - len(tail)
    marker = f"[... {cut:,} characters cut: a report keeps at most {limit:,} bytes of {what}]"
    return "\n".join(part for part in (head, marker, tail) if part)


def stderr_tail(lines: Iterable[str]) -> tuple[str, ...]:
    """The newest of a worker's stderr ``lines`` that fit in ``STDERR_TAIL_BYTES`` (the
    newest one cut if it alone is over); a first line says how many earlier were cut."""
    newest = tuple(lines)
    kept: list[str] = []
    room = STDERR_TAIL_BYTES
    for line in reversed(newest):
        size = len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))
        if size > room:
            if not kept:
                kept.append(capped(line, room, "stderr"))
            break
        kept.append(line)
        room -= size
    else:
        return newest
    cut = len(newest) - len(kept)
    if cut:
        kept.append(
            f"[... {cut} earlier line{'s' if cut != 1 else ''} cut: a report keeps at most "
            f"{STDERR_TAIL_BYTES:,} bytes of stderr]"
        )
    return tuple(reversed(kept))


def _fits(text: str, limit: int) -> bool:
    """Whether ``text`` takes at most ``limit`` bytes in UTF-8, encoding at most
    ``limit`` characters of it to tell."""
    n = len(text)
    if n * 4 <= limit or (n <= limit and text.isascii()):
        return True
    return n <= limit and len(text.encode("utf-8", "surrogatepass")) <= limit


def _head(text: str, limit: int) -> str:
    """The longest start of ``text`` within ``limit`` UTF-8 bytes, whole characters."""
    return text[:limit].encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def _tail(text: str, limit: int) -> str:
    """The longest end of ``text`` within ``limit`` UTF-8 bytes, whole characters."""
    if limit <= 0:
        return ""
    raw = text[-limit:].encode("utf-8", "surrogatepass")
    return raw[max(len(raw) - limit, 0) :].decode("utf-8", "ignore")
