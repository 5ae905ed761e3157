"""The Linux-only calls the worker makes (prctl), behind one module, and the few
low-level helpers its start uses (small /proc files, signal dispositions).

On other systems every prctl here is a no-op that returns False, and the caller
reports the layer as absent.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return bool(_libc.prctl(option, arg, 0, 0, 0) == 0)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent thread dies."""
    return _prctl(PR_SET_PDEATHSIG, signum)


def set_child_subreaper() -> bool:
    """Make orphaned descendants of this process reparent to it rather than to init."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_dumpable(on: bool) -> bool:
    """Whether same-uid processes may ptrace this one and read its /proc files."""
    return _prctl(4, 1 if on else 0)  # PR_SET_DUMPABLE


def set_no_new_privs() -> bool:
    """Forbid gaining privileges through execve (setuid binaries, file capabilities)."""
    return _prctl(PR_SET_NO_NEW_PRIVS, 1)


#: the C function behind ``signal.signal`` (module ``_signal``, which ``signal`` imports)
_set_disposition: Callable[[int, int], object] = getattr(
    sys.modules.get("_signal"), "signal", signal.signal
)


def set_disposition(signum: int, handler: int) -> None:
    """``signal.signal(signum, handler)`` for ``SIG_DFL`` or ``SIG_IGN``, without the
    enum conversions ``signal.signal`` wraps around the call (and the ValueError it
    raises and catches when the old handler is a function): in a just-forked process
    they cost a tenth of a millisecond, the call itself a few microseconds."""
    _set_disposition(int(signum), int(handler))


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where the kernel or Python lacks pidfds."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def parent_of(pid: int) -> int | None:
    """A live process's parent pid (from /proc/<pid>/stat); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def own_children() -> list[int]:
    """Pids of this process's children: /proc/self/task/*/children where the kernel has
    it (CONFIG_PROC_CHILDREN), else the parent field of every /proc/<pid>/stat."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    try:
        for tid in tasks:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        return pids
    except FileNotFoundError:
        pass
    except OSError:
        return pids
    me = os.getpid()
    return [
        int(name) for name in os.listdir("/proc") if name.isdigit() and parent_of(int(name)) == me
    ]


def read_file(path: str, size: int = 4096) -> bytes:
    """Up to ``size`` bytes of a small file (a /proc entry), in one read: without the
    io module's buffered and text layers, which cost a just-forked worker far more than
    the read (their code and objects are first written after the fork)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to an existing file (a /proc entry) in one write; OSError if the
    kernel refuses it or takes only part of it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def _statm(field: int) -> int:
    """A field of /proc/self/statm (in pages) as KiB; 0 where unknown."""
    try:
        pages = int(read_file("/proc/self/statm").split()[field])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * (os.sysconf("SC_PAGE_SIZE") // 1024)


def address_space_kb() -> int:
    """This process's virtual memory size in KiB (0 where unknown)."""
    return _statm(0)


def resident_kb() -> int:
    """This process's resident set size in KiB (0 where unknown)."""
    return _statm(1)
