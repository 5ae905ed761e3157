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


def memfd_kb(proc: str, seen: set[tuple[int, int]]) -> int:
    """KiB held in the memfds open in the process whose /proc directory is ``proc``
    (their pages, mapped or not: what ``st_blocks`` of the fd's file counts), leaving
    out and adding to ``seen`` (device, inode) those already counted. Raises
    PermissionError where the process's fds are closed to this process (a process of
    another uid, or one made non-dumpable, to a host that is not root)."""
    fds = f"{proc}/fd"
    try:
        names = os.listdir(fds)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    total = 0
    for name in names:
        link = f"{fds}/{name}"
        try:
            if not os.readlink(link).startswith("/memfd:"):
                continue
            st = os.stat(link)
        except OSError:
            continue  # closed since the listing
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_blocks // 2  # 512-byte blocks
    return total


#: kcmp(2)'s comparison of two processes' fd tables
KCMP_FILES = 2


def own_fd_tables(pid: int) -> list[str]:
    """The /proc directories of the threads of ``pid`` whose fd table is not its own
    (a thread cloned without CLONE_FILES): each one's fds are listed apart. kcmp(2)
    tells, one call a thread; where it cannot, each thread is listed."""
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task") if int(name) != pid]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return []
    if not tids:
        return []
    libc, number = _libc(), _kcmp_number()
    found = []
    for tid in tids:
        if libc is None or number is None or libc.syscall(number, pid, tid, KCMP_FILES, 0, 0):
            found.append(f"/proc/{pid}/task/{tid}")
    return found


def _kcmp_number() -> int | None:
    try:
        from ..worker.sandbox.syscalls import native_arch

        return native_arch().syscalls.get("kcmp")
    except (ImportError, RuntimeError):
        return None


def tmpfs_used_kb(path: str) -> int:
    """KiB used in the filesystem at ``path`` (a tmpfs: its pages); 0 if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def pids_in(proc_root: str) -> list[int]:
    """The pids a /proc mount lists (a pid namespace's own /proc lists its own)."""
    return [int(name) for name in os.listdir(proc_root) if name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every descendant of ``root`` (its children's children...): from each thread's
    /proc children list where the kernel has one (CONFIG_PROC_CHILDREN), else from the
    parent field of every /proc/<pid>/stat (one read per process on the machine)."""
    if not _CHILDREN_LISTS:
        _CHILDREN_LISTS.append(os.path.exists(f"/proc/self/task/{os.getpid()}/children"))
    if _CHILDREN_LISTS[0]:
        found: list[int] = []
        todo = [root]
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue  # gone
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                        children = [int(child) for child in f.read().split()]
                except (OSError, ValueError):
                    continue
                found += children
                todo += children
        return found
    children_of: dict[int, list[int]] = {}
    try:
        pids = pids_in("/proc")
    except FileNotFoundError:
        return []  # no /proc
    for pid in pids:
        parent = parent_of(pid)
        if parent is not None:
            children_of.setdefault(parent, []).append(pid)
    found = []
    todo = list(children_of.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children_of.get(pid, ()))
    return found


#: whether this kernel lists each thread's children in /proc (known on first use)
_CHILDREN_LISTS: list[bool] = []
