"""The Linux-only calls the host makes, behind one module (pidfds, /proc reads).

Elsewhere each function degrades: no pidfd (the caller falls back to plain signals and
a waiting thread), zero for figures /proc would have given.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

from ..worker._linux import parent_of as parent_of  # one implementation, both sides
from ..worker._linux import pidfd_open as pidfd_open

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def send_signal(pid: int, pidfd: int | None, signum: int = signal.SIGKILL) -> bool:
    """Signal a process through its pidfd when there is one (no pid-reuse race)."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError, OSError):
        return False
    return True


def has_ended(pidfd: int | None) -> bool:
    """Whether the process behind ``pidfd`` has ended (reaped or not); False when that
    cannot be told (no pidfd)."""
    if pidfd is None:
        return False
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)  # a pidfd reads ready once its process exits
    try:
        return bool(poller.poll(0))
    except OSError:
        return False


def descends_from(pid: int, ancestor: int, generations: int) -> bool:
    """Whether ``ancestor`` is the parent, grandparent... of ``pid``, within
    ``generations`` steps."""
    for _ in range(generations):
        parent = parent_of(pid)
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a worker is the leader of its own)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def get_dumpable() -> bool | None:
    """This process's dumpable flag (None where prctl is missing)."""
    libc = _libc()
    if libc is None:
        return None
    return bool(libc.prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE


def set_dumpable(on: bool) -> bool:
    """Set this process's dumpable flag: off closes /proc/<host>/mem, environ and
    ptrace to processes of the same uid (plugins run as that uid when the host is not
    root)."""
    libc = _libc()
    return libc is not None and libc.prctl(4, 1 if on else 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE


_LIBC: list[object] = []


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    lib = _LIBC[0]
    assert isinstance(lib, ctypes.CDLL)
    return lib


def peak_rss_kb(pid: int) -> int:
    """A live process's peak RSS (VmHWM) in KiB; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name (field 3 on: index 0 is
    the state), read as bytes (``os.read``: none of a text-mode open's layers)."""
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)  # one line of a few hundred bytes
    finally:
        os.close(fd)
    return data.rpartition(b")")[2].split()


def usage(pid: int) -> tuple[int, float] | None:
    """A live process's (RSS in KiB, user+system CPU seconds); None once it is gone.

    One read of /proc/<pid>/stat on Linux; psutil elsewhere.
    """
    try:
        fields = _stat_fields(pid)
        return (int(fields[21]) * _PAGE_KB, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            proc = psutil.Process(pid)
            times = proc.cpu_times()
            return int(proc.memory_info().rss // 1024), times.user + times.system
        except Exception:
            return None


def cpu_time(pid: int) -> float:
    """A live process's user+system CPU seconds; 0.0 if unknown."""
    try:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0
