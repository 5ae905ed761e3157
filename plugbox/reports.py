"""What a call returns (``Outcome``) and what a failure leaves (``FailureReport``)."""

from __future__ import annotations

import base64
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: how a plugin failed: every value ``FailureReport.cause`` takes.
Cause = Literal["raised", "crashed", "timeout", "memory", "cpu", "protocol", "quarantined"]

#: what each ``Cause`` means.
CAUSES: dict[Cause, str] = {
    "raised": "the plugin's hook raised an exception",
    "crashed": "the worker died by a signal or exited on its own",
    "timeout": "the call passed its deadline and the worker was killed",
    "memory": "the worker ran out of memory",
    "cpu": "the worker used up its CPU seconds",
    "protocol": "the worker broke the wire protocol and was killed, or answered with a "
    "value the next plugin cannot take",
    "quarantined": "the plugin failed too often and is not called",
}


#: the setting that refused what made a call fail: every value ``FailureReport.refused``
#: takes (the setting named is the one that would allow it).
Refusal = Literal[
    "Sandbox.network",
    "Sandbox.processes",
    "Sandbox.scratch",
    "Limits.open_files",
    "Limits.file_size_mb",
]

#: what each ``Refusal`` means.
REFUSALS: dict[Refusal, str] = {
    "Sandbox.network": "a connection, socket or name lookup: the network is off",
    "Sandbox.processes": "a new process (fork, exec, subprocess, os.system): processes are off",
    "Sandbox.scratch": "a write outside the scratch directory, the one the plugin may write",
    "Limits.open_files": "an open past the limit on open files (EMFILE)",
    "Limits.file_size_mb": "a write past the limit on a file's size (EFBIG)",
}


def signal_name(signum: int | None) -> str | None:
    """'SIGSEGV' for 11; None for None."""
    if signum is None:
        return None
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True, kw_only=True, slots=True)
class FailureReport:
    """One plugin failure, as the host saw it.

    ``cause`` is a ``Cause`` (``CAUSES`` says what each means); ``detail`` says it in
    words. For ``raised`` the plugin's exception is in ``exc_type``, ``exc_message`` and
    ``traceback``. ``pid``, ``exit_code`` / ``signal`` (a name such as ``"SIGSEGV"``),
    ``peak_rss_kb`` and ``cpu_time`` describe the worker when it died (zero or None when
    it did not).
    ``refused`` is set when the plugin's exception came of a refusal of the sandbox or
    a limit (itself, or one it caused: an ``httpx.ConnectError`` from a refused lookup):
    the setting that would allow what was refused, a ``Refusal`` (``REFUSALS`` says
    what each means), and the detail says so in words.
    ``stderr_tail`` holds the last lines the plugin wrote to stderr; ``restarts`` how
    many times its worker had been restarted before this failure. What a worker sent is
    capped in bytes (stderr tail, exception type, message, traceback, detail); a cut is
    marked in the text with how much was cut (``docs/failures.md``).
    """

    plugin: str
    version: str
    hook: str
    cause: Cause
    detail: str
    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    duration: float = 0.0
    peak_rss_kb: int = 0
    cpu_time: float = 0.0
    stderr_tail: tuple[str, ...] = ()
    restarts: int = 0
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    refused: Refusal | None = None
    killed: bool = False
    backoff: float = 0.0
    time: float = 0.0

    def __post_init__(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"unknown failure cause {self.cause!r}")
        if self.refused is not None and self.refused not in REFUSALS:
            raise ValueError(f"unknown refusal {self.refused!r}")

    def summary(self) -> str:
        """One line: which plugin, which hook, what happened. Line breaks in the detail
        (a plugin's exception message) are escaped, so it stays one line in a log."""
        where = f"plugin {self.plugin!r} (version {self.version or '?'}) in {self.hook}"
        detail = self.detail.replace("\r", "\\r").replace("\n", "\\n")
        return f"{where}: {self.cause}: {detail}"


@dataclass(frozen=True, kw_only=True, slots=True)
class FailureCounts:
    """Running totals of one plugin's failure reports (``host.failure_counts(name)``).

    The host keeps a bounded history of reports per plugin (``host.reports``); these
    totals count every report ever recorded, those the history has let go included:
    ``total`` reports, ``by_cause`` how many had each cause, ``dropped`` how many the
    history no longer holds, ``kept`` and ``kept_bytes`` what it holds now (its
    estimated size in memory). ``total == kept + dropped`` always holds.
    """

    plugin: str
    total: int = 0
    by_cause: Mapping[Cause, int] = field(default_factory=dict)
    dropped: int = 0
    kept: int = 0
    kept_bytes: int = 0


@dataclass(slots=True)
class Outcome:
    """The result of ``host.call``.

    ``value`` is the combined result (per the hook's mode), ``args`` the arguments as
    the plugins left them, ``failures`` the reports of plugins skipped during this
    call, and ``called`` the names of the plugins that answered, in the order they
    were added (an observe hook's plugins too, which run at once).
    """

    value: Any = None
    args: dict[str, Any] = field(default_factory=dict)
    failures: list[FailureReport] = field(default_factory=list)
    called: list[str] = field(default_factory=list)


def bytes_as_json(value: bytes | bytearray | memoryview) -> dict[str, str]:
    """Bytes as plugbox writes them in JSON (audit records, ``plugbox run``'s output):
    ``{"$bytes": base64}``, which a reader tells from a string and decodes back."""
    return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
