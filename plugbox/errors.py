"""plugbox's exceptions, all under ``PlugboxError``.

``PluginLoadError`` and its subclasses ``PluginVersionError`` (a version pin is not
met) and ``PluginIntegrityError`` (a hash pin is not met) come from ``host.add``. Everything that
goes wrong while a plugin serves a call is a ``PluginFailure`` carrying a
``FailureReport`` (``exc.report``) that says what happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from .reports import Cause, FailureReport

__all__ = [
    "LockFileError",
    "PlugboxError",
    "PluginCPUExceeded",
    "PluginCrashed",
    "PluginFailure",
    "PluginIntegrityError",
    "PluginLoadError",
    "PluginMemoryExceeded",
    "PluginProtocolError",
    "PluginQuarantined",
    "PluginRaised",
    "PluginTimeout",
    "PluginVersionError",
]


class PlugboxError(Exception):
    """Base of every error plugbox raises on purpose."""


class LockFileError(PlugboxError):
    """A lock file cannot be read or written (missing, not JSON, wrong shape)."""


class PluginLoadError(PlugboxError):
    """A plugin could not be loaded: ``ref`` names it, ``reason`` says why.

    ``report`` is set when a worker was started and failed (crashed, timed out, ran out
    of memory) while loading; None when the host refused before starting one.
    """

    def __init__(self, ref: str, reason: str, *, report: FailureReport | None = None) -> None:
        super().__init__(f"cannot load plugin {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason
        self.report = report


class PluginVersionError(PluginLoadError):
    """A plugin's version does not satisfy the version it was pinned to.

    ``pin`` is the pin as given (``"~=1.2"``, or ``"== 1.2.0 (plugbox.lock)"``);
    ``found`` maps what was found to its value: ``"declared"`` (the plugin class's
    ``version``) and, for a plugin imported from an installed distribution,
    ``"distribution"`` (``"name 1.2.3"``). The worker was shut down; no hook was called.
    """

    def __init__(self, ref: str, pin: str, found: dict[str, str], problem: str) -> None:
        super().__init__(ref, problem)
        self.pin = pin
        self.found = dict(found)


class PluginIntegrityError(PluginLoadError):
    """A plugin's files do not hash to the sha256 they were pinned to.

    ``expected`` and ``actual`` are hex digests of ``what`` (a file, a package
    directory); ``checked_by`` is ``"host"`` (before any worker started) or
    ``"worker"`` (on the bytes the worker was about to load). A worker raises it too,
    and sends its fields to the host as data (``Error.details``).
    """

    def __init__(
        self, ref: str, expected: str, actual: str, *, checked_by: str, what: str = ""
    ) -> None:
        super().__init__(
            ref,
            f"integrity check failed ({checked_by}): sha256 of "
            f"{what or 'its code'} is {actual}, expected {expected}",
        )
        self.expected = expected
        self.actual = actual
        self.checked_by = checked_by
        self.what = what


class PluginFailure(PlugboxError):
    """A plugin failed while serving a call; ``report`` says how."""

    #: the ``FailureReport.cause`` this class stands for ("failure": any of them)
    cause: ClassVar[Cause | Literal["failure"]] = "failure"

    def __init__(self, report: FailureReport) -> None:
        super().__init__(report.summary())
        self.report = report


class PluginRaised(PluginFailure):
    """The plugin's hook raised; the report holds its type, message and traceback.

    The worker lives on.
    """

    cause = "raised"


class PluginCrashed(PluginFailure):
    """The worker died on its own: an exit code or a signal (the report says which)."""

    cause = "crashed"


class PluginTimeout(PluginFailure):
    """The call passed its wall-clock deadline; the worker's process tree was killed."""

    cause = "timeout"


class PluginMemoryExceeded(PluginFailure):
    """The worker ran out of its address space or went over its RSS cap."""

    cause = "memory"


class PluginCPUExceeded(PluginFailure):
    """The worker used up its CPU seconds (SIGXCPU, or SIGKILL at the hard limit)."""

    cause = "cpu"


class PluginProtocolError(PluginFailure):
    """The worker broke the wire protocol (garbage, oversize frame, unknown id, a
    closed channel, a restart claiming another name or version); it was killed. Or the
    plugin answered with a value the next plugin cannot take; its worker lives on."""

    cause = "protocol"


class PluginQuarantined(PluginFailure):
    """The plugin failed too often and is not called until ``host.reset(name)``."""

    cause = "quarantined"


#: the exception class for each ``FailureReport.cause``.
FAILURE_TYPES: dict[Cause, type[PluginFailure]] = {
    cls.cause: cls
    for cls in (
        PluginRaised,
        PluginCrashed,
        PluginTimeout,
        PluginMemoryExceeded,
        PluginCPUExceeded,
        PluginProtocolError,
        PluginQuarantined,
    )
}
