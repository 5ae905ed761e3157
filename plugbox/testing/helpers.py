"""Assertion helpers, the fault parametrization and the leak check (host side).

- ``each_fault``: parametrizes a test with every ``FAULTS`` entry (argument ``fault``).
- ``assert_report(report, cause=...)``: the report's cause and the fields that cause
  implies (signal, exit code, exception, killed...).
- ``await assert_contained(failure, cause=..., host=...)``: the same, plus the
  containment: the failed worker and everything it started are gone (unless the
  worker was meant to live on), the host is open and, given a ``probe``, still serves.
- ``LeakCheck``: what a test leaves behind (descendant processes, processes in a
  worker's session, fds); the ``plugbox_host`` fixture runs it after each test.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import psutil

from ..errors import PluginFailure
from ..reports import CAUSES, Cause, FailureReport
from .faults import FAULTS, Fault

if TYPE_CHECKING:
    from ..host import PluginHost

F = TypeVar("F", bound=Callable[..., Any])

#: causes after which the worker is gone (killed, or died by itself).
_DEADLY: frozenset[Cause] = frozenset({"crashed", "timeout", "memory", "cpu", "protocol"})


# ---------------------------------------------------------------------- each_fault
def select_faults(only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Fault]:
    """``FAULTS`` entries by name (all by default), minus ``exclude``; an unknown name
    is a ValueError listing the known ones."""
    names = list(FAULTS) if only is None else list(only)
    excluded = set(exclude)
    unknown = [n for n in [*names, *excluded] if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)} (known: {', '.join(FAULTS)})")
    return [FAULTS[n] for n in names if n not in excluded]


@overload
def each_fault(func: F, /) -> F: ...
@overload
def each_fault(
    *, only: Iterable[str] | None = None, exclude: Iterable[str] = (), argname: str = "fault"
) -> Callable[[F], F]: ...
def each_fault(
    func: Any = None,
    /,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    argname: str = "fault",
) -> Any:
    """Run the decorated test once per fault, as ``fault`` (a ``Fault``: ``ref``,
    ``config``, ``cause``, ``limits``, ``sandbox``, ``add_to(host)``); test ids are the
    fault names. ``@each_fault`` or ``@each_fault(only=[...], exclude=[...])``."""
    import pytest

    faults = select_faults(only, exclude)

    def decorate(f: F) -> F:
        mark = pytest.mark.parametrize(argname, faults, ids=[x.name for x in faults])
        return mark(f)  # type: ignore[no-any-return]

    return decorate(func) if func is not None else decorate


# ---------------------------------------------------------------------- assertions
def _as_report(failure: FailureReport | PluginFailure | Any) -> FailureReport:
    if isinstance(failure, PluginFailure):
        return failure.report
    if isinstance(failure, FailureReport):
        return failure
    failures = getattr(failure, "failures", None)  # an Outcome
    if isinstance(failures, list):
        assert len(failures) == 1, f"expected one failure in the outcome, got {failures!r}"
        return _as_report(failures[0])
    raise TypeError(
        f"expected a FailureReport, PluginFailure or Outcome, not {type(failure).__name__}"
    )


def assert_report(
    failure: FailureReport | PluginFailure | Any,
    *,
    cause: Cause | Iterable[Cause],
    plugin: str | None = None,
    hook: str | None = None,
    signal: str | None = None,
    exit_code: int | None = None,
    exc_type: str | None = None,
) -> FailureReport:
    """Check a failure report (or a PluginFailure, or an Outcome with one failure):
    its ``cause`` (one, or any of several), and the fields that cause implies:

    - ``raised``: the exception's type and traceback, a pid, not killed;
    - ``crashed``: a signal or an exit code, not killed by the host;
    - ``timeout``: killed by the host (SIGKILL), a positive duration;
    - ``cpu``: SIGXCPU, or killed by the host's CPU watch;
    - ``memory`` / ``protocol``: a detail naming what happened.

    ``signal``, ``exit_code``, ``exc_type``, ``plugin`` and ``hook`` are checked when
    given. Returns the report.
    """
    report = _as_report(failure)
    allowed = {cause} if isinstance(cause, str) else set(cause)
    unknown = allowed - set(CAUSES)
    assert not unknown, f"unknown cause(s) {sorted(unknown)}: one of {sorted(CAUSES)}"
    assert report.cause in allowed, (
        f"expected cause {' or '.join(sorted(allowed))}, got {report.cause}: {report.summary()}"
    )
    assert report.plugin and report.hook and report.detail, report
    if plugin is not None:
        assert report.plugin == plugin, (report.plugin, plugin)
    if hook is not None:
        assert report.hook == hook, (report.hook, hook)
    c = report.cause
    if c == "raised":
        assert report.exc_type and report.traceback is not None, report
        assert not report.killed and report.signal is None and report.exit_code is None, report
    elif c == "crashed":
        assert report.signal is not None or report.exit_code is not None, report
    elif c == "timeout":
        assert report.killed and report.signal == "SIGKILL", report
        assert report.duration > 0, report
    elif c == "cpu":
        assert report.signal == "SIGXCPU" or report.killed, report
    if signal is not None and c != "raised":
        assert report.signal == signal, f"expected {signal}, got {report.signal}: {report}"
    if exit_code is not None and c == "crashed":
        assert report.exit_code == exit_code, (report.exit_code, exit_code)
    if exc_type is not None and c == "raised":
        assert report.exc_type == exc_type, (report.exc_type, exc_type)
    return report


async def assert_contained(
    failure: FailureReport | PluginFailure | Any,
    *,
    cause: Cause | Iterable[Cause],
    host: PluginHost | None = None,
    probe: tuple[str, Mapping[str, Any]] | None = None,
    grace: float = 2.0,
    **fields: Any,
) -> FailureReport:
    """``assert_report``, then the containment of the failure:

    - for a cause that ends the worker, the worker (``report.pid``) is gone within
      ``grace`` seconds and so is every process of its session (what it forked);
      for ``raised`` the worker lives on;
    - with ``host``: the report is among ``host.reports``, the host is still open and
      its plugin still registered; with ``probe=(hook, args)`` the host answers
      ``host.call(hook, **args)`` (a PluginFailure raised by it fails the assertion).

    Returns the report.
    """
    report = assert_report(failure, cause=cause, **fields)
    if report.pid is not None:
        if report.cause in _DEADLY:
            left = _wait_gone(report.pid, grace)
            assert not left, f"the failed worker {report.pid} or its descendants survive: {left}"
        elif report.cause == "raised":
            assert psutil.pid_exists(report.pid), f"worker {report.pid} died after raising"
    if host is not None:
        assert report in host.reports, "the report is not among host.reports"
        assert not getattr(host, "_closed", False), "the host was closed"
        names = [p.name for p in host.plugins]
        assert report.plugin in names, f"plugin {report.plugin!r} is gone ({names})"
        if probe is not None:
            hook, args = probe
            try:
                await host.call(hook, **dict(args))
            except PluginFailure as exc:
                raise AssertionError(f"the host does not serve {hook} any more: {exc}") from exc
    return report


def _wait_gone(pid: int, grace: float) -> list[str]:
    deadline = time.monotonic() + grace
    while True:
        left = [f"{p}" for p in [pid, *session_members(pid)] if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def session_members(sid: int) -> list[int]:
    """Pids of the live processes in session ``sid`` (a worker's: it calls setsid)."""
    members = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getsid(pid) == sid and pid != sid:
                members.append(pid)
        except OSError:
            continue
    return members


# ---------------------------------------------------------------------- leak check
def _open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:  # the listing's own fd
            continue
        fds.add(fd)
    return fds


def _describe_fd(fd: int) -> str:
    try:
        return f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return str(fd)


def _describe_process(pid: int) -> str:
    try:
        p = psutil.Process(pid)
        return f"{pid} {p.status()} {' '.join(p.cmdline()[:3])[:80]}"
    except psutil.Error:
        return f"{pid} (gone while listing)"


@dataclass
class LeakCheck:
    """A snapshot of this process's descendants and fds; ``leaks()`` lists what is
    new since, and what remains of the workers noted with ``note_workers``."""

    children: set[int] = field(default_factory=set)
    fds: set[int] = field(default_factory=set)
    workers: set[int] = field(default_factory=set)

    @classmethod
    def snapshot(cls) -> LeakCheck:
        me = psutil.Process()
        return cls(children={p.pid for p in me.children(recursive=True)}, fds=_open_fds())

    def note_workers(self, pids: Iterable[int | None]) -> None:
        """Remember worker pids: their sessions are checked too (a daemon that double
        forked out of the process tree still carries its worker's session id)."""
        self.workers.update(p for p in pids if p)

    def leaked_processes(self) -> list[int]:
        me = psutil.Process()
        found = {p.pid for p in me.children(recursive=True)} - self.children
        for worker in self.workers:
            try:  # a worker leads its own session; a reused pid does not
                if os.getsid(worker) == worker and _alive(worker):
                    found.add(worker)
            except OSError:
                pass
            found.update(session_members(worker))
        return sorted(found)

    def leaks(self, *, grace: float = 1.0) -> list[str]:
        """What is left behind, described; waits up to ``grace`` seconds for processes
        that are already dying to be reaped."""
        deadline = time.monotonic() + grace
        while True:
            pids = self.leaked_processes()
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        out = [f"process {_describe_process(pid)}" for pid in pids]
        out += [f"fd {_describe_fd(fd)}" for fd in sorted(_open_fds() - self.fds)]
        return out

    def kill_leftovers(self) -> None:
        """SIGKILL every leaked process (so one leak does not spill into the next test)
        and reap those that are our children."""
        for pid in self.leaked_processes():
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                continue
        for pid in self.leaked_processes():
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def verify(self) -> None:
        """AssertionError listing every leak (after killing the leaked processes)."""
        left = self.leaks()
        if left:
            self.kill_leftovers()
            raise AssertionError(
                "plugbox leak check: left behind after the test:\n  " + "\n  ".join(left)
            )


__all__ = [
    "LeakCheck",
    "assert_contained",
    "assert_report",
    "each_fault",
    "select_faults",
    "session_members",
]
