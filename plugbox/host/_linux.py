"""The Linux-only calls the host makes, behind one module (pidfds, /proc reads).

Elsewhere each function degrades: no pidfd (the caller falls back to plain signals and
a waiting thread), zero for figures /proc would have given.
"""

from __future__ import annotations

import os
import signal


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where pidfds are missing."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


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


def kill_group(pgid: int) -> None:
    """SIGKILL a process group (a worker is the leader of its own)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


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


def rss_kb(pid: int) -> int | None:
    """A live process's RSS in KiB; None once it is gone or where /proc is missing."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process(pid).memory_info().rss // 1024)
        except Exception:
            return None


def cpu_time(pid: int) -> float:
    """A live process's user+system CPU seconds; 0.0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return 0.0
