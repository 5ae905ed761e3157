"""The pid and mount namespaces: the plugin runs as pid 2 under a minimal init.

After ``unshare(CLONE_NEWPID)`` only the caller's children enter the new namespace,
so the worker forks twice::

    outer   the pid the launcher started: waits for init, then exits as the plugin did
      init  pid 1 of the new namespace: reaps, and relays the plugin's exit status
        worker  pid 2: the plugin, its channel, its sandbox

Why not run the plugin as pid 1: a namespace's init ignores every signal it has no
handler for unless the kernel forces it, so a plugin's own ``os.kill(getpid(), SIGKILL)``,
SIGXCPU at its CPU limit or ``abort()`` would not end it the way it ends any process.

What ties them together: init has a parent-death SIGKILL, so killing the outer process
(what the host does) kills init; init exits as soon as the plugin's process does; and
when init ends the kernel kills every process left in the namespace, so nothing the
plugin started (daemons, double forks) survives it. The outer process mirrors the
plugin's status (exit code, or death by the same signal), so the host classifies the
plugin's own death; its rusage covers init and the plugin, reaped beneath it.

The host does not wait for that chain (init's exit, then the outer's, then the
launcher's reap): init writes the plugin's wait status and rusage on a pipe to the
host (``exit_report_fd``, ``plugbox.protocol._exit_report``) the moment it reaps it.

In the worker, a fresh mount namespace gets its own /proc, showing only the namespace's
processes (``mount_private_proc``), and, where the worker's user cannot reach the
interpreter's directories by their paths, a read-only copy of them at those paths, so
that a plugin with processes can run the interpreter (``clone_trees``, ``mount_trees``).
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import os
import resource
import select
import signal
import stat
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

from ...protocol import pack_exit_report
from .. import _linux

CLONE_NEWPID = 0x20000000
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_RDONLY, MS_REMOUNT, MS_REC, MS_PRIVATE = 1, 32, 0x4000, 1 << 18
#: the new mount API's calls: the same numbers on every architecture
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_FDCWD, AT_EMPTY_PATH, MOVE_MOUNT_F_EMPTY_PATH = 1, -100, 0x1000, 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
#: the exit status of an outer process whose init vanished without a word
EXIT_NO_STATUS = 70


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unshare(flags: int) -> bool:
    """``unshare(flags)``; whether it took."""
    return bool(sys.platform.startswith("linux") and _libc().unshare(flags) == 0)


def _quiet(keep: tuple[int, ...] = ()) -> None:
    """Shed what the worker holds: the channel, stdio, and Python's signal handlers."""
    faulthandler.disable()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        _linux.set_disposition(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)
    low = 0
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def split(exit_report_fd: int | None = None) -> int:
    """Fork init and the worker (after ``unshare(CLONE_NEWPID)``). Returns in the worker
    only: its pid as the host sees it. The outer process and init never return. Init
    writes the worker's exit report (``protocol._exit_report``) on ``exit_report_fd``
    as soon as it reaps it: the host has it before init and the outer process end."""
    host_pid = os.getpid()
    status_r, status_w = os.pipe()
    alive_r, alive_w = os.pipe()  # the outer holds the write end while it lives
    init = os.fork()
    if init:
        os.close(status_w)
        os.close(alive_r)
        _outer(init, status_r, alive_w, reported=exit_report_fd is not None)
    os.close(status_r)
    os.close(alive_w)
    _linux.set_parent_death_signal(signal.SIGKILL)
    # the outer may have died before the line above: its end of the pipe says so
    if select.select([alive_r], [], [], 0)[0]:
        os._exit(EXIT_NO_STATUS)
    os.close(alive_r)
    worker = os.fork()
    if worker:
        _init(worker, status_w, exit_report_fd)
    os.close(status_w)
    # init ending ends the namespace anyway; this says the same for the worker itself
    _linux.set_parent_death_signal(signal.SIGKILL)
    return _host_pid(host_pid)


def _host_pid(fallback: int) -> int:
    """This process's pid in the host's namespace, read before the namespace's own /proc
    hides it: /proc is still the host's, and its ``self`` link names this process as
    that /proc's pid namespace sees it (the first NSpid of /proc/self/status, for one
    syscall rather than the kernel formatting the whole status file)."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return fallback


def _outer(init: int, status_r: int, alive_w: int, *, reported: bool) -> NoReturn:
    try:
        _quiet(keep=(status_r, alive_w))
        data = b""
        while chunk := os.read(status_r, 8):
            data += chunk
        if reported and data:  # by init, to the host: the rest can wait (else it reports)
            _idle()
        while True:
            try:
                _pid, init_status = os.waitpid(init, 0)
                break
            except InterruptedError:
                continue
        status = int.from_bytes(data[:4], "little") if len(data) >= 4 else init_status
        _exit_as(status)
    finally:
        os._exit(EXIT_NO_STATUS)


def _init(worker: int, status_w: int, exit_report_fd: int | None) -> NoReturn:
    try:
        _quiet(keep=(status_w,) if exit_report_fd is None else (status_w, exit_report_fd))
        _rehearse_report()
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                break
            if pid == worker:
                if exit_report_fd is not None:
                    try:
                        os.write(
                            exit_report_fd,
                            pack_exit_report(
                                status, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
                            ),
                        )
                    except OSError:
                        pass  # the host has gone, or closed its end: the outer reports
                os.write(status_w, status.to_bytes(4, "little"))
                break
        _idle()
    finally:
        os._exit(0)  # the kernel now kills whatever is left in the namespace


def _idle() -> None:
    """Run on as an idle-priority process (SCHED_IDLE, which any process may choose for
    itself): once the worker's end is reported, init's and the outer process's exits
    (unmapping a forked interpreter, tearing down the namespaces: about a millisecond of
    CPU together) give way to any other process that wants the CPU, such as the worker
    a restart has just resumed, instead of holding it back."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _rehearse_report() -> None:
    """Run what init runs once the worker has died, on a status it does not send: the
    pages it writes (reference counts of the objects it uses, the result objects) are
    copied from the process it was forked from now, while the worker lives, rather than
    one fault at a time between the worker's death and its exit report (a tenth of a
    millisecond that every death's report waited on)."""
    try:
        _pid, status, usage = os.wait4(-1, os.WNOHANG)
    except OSError:
        return
    pack_exit_report(status, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
    status.to_bytes(4, "little")


def _exit_as(status: int) -> NoReturn:
    """End this process as the one whose wait status is ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            _linux.set_disposition(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_NO_STATUS)


def mount_private_proc(own_proc: bool) -> bool:
    """In a new mount namespace: stop mount propagation both ways and, inside a pid
    namespace (``own_proc``), mount a /proc of the namespace's own, which lists only
    its processes."""
    libc = _libc()
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    if not own_proc:
        return True
    return bool(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0)


class _MountAttr(ctypes.Structure):
    """struct mount_attr (``mount_setattr``)."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _open_to_all(path: str) -> bool:
    """Whether any user may search ``path`` and every directory above it."""
    path = os.path.abspath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not (stat.S_ISDIR(mode) and mode & stat.S_IXOTH):
            return False
        if path == os.sep:
            return True
        path = os.path.dirname(path)


def _syscall(nr: int, *args: object) -> int:
    call = _libc().syscall
    call.restype = ctypes.c_long
    return int(call(ctypes.c_long(nr), *args))


def clone_trees(paths: Iterable[str]) -> list[tuple[str, int]]:
    """As root, before privileges are dropped: for each directory of ``paths`` some user
    may not reach, a detached private, read-only, nosuid, nodev copy of it (``open_tree``
    with OPEN_TREE_CLONE: that directory's mount, not what is mounted beneath it), for
    ``mount_trees`` to put back at its path in the worker's own mount namespace.
    Returns (path, fd) pairs; a kernel without the new mount API (before 5.2) gives none."""
    if not sys.platform.startswith("linux"):
        return []
    trees = []
    for path in paths:
        if _open_to_all(path):
            continue
        fd = _syscall(
            SYS_OPEN_TREE,
            ctypes.c_int(AT_FDCWD),
            os.fsencode(path),
            ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC),
        )
        if fd < 0:
            continue
        # private: a copy of a shared mount would share its mounts with the host's
        attr = _MountAttr(
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, MS_PRIVATE, 0
        )
        _syscall(  # failing (before 5.12), it stays as writable as the original
            SYS_MOUNT_SETATTR,
            ctypes.c_int(fd),
            b"",
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
        trees.append((path, fd))
    return trees


def _closed_above(path: str) -> str | None:
    """The highest directory above ``path`` this process may not search, if any."""
    above = os.path.dirname(os.path.abspath(path))
    closed = None
    while above != os.sep:
        if not os.access(above, os.X_OK):
            closed = above
        above = os.path.dirname(above)
    return closed


def mount_trees(trees: Sequence[tuple[str, int]], mount: bool = True) -> list[str]:
    """In the worker's own mount namespace, as its user: put each tree of
    ``clone_trees`` that this user cannot reach at its path, under a read-only tmpfs on
    the highest directory above it the user may not search, which holds nothing else:
    what else was beneath that directory stays out of reach, as it was. Closes every
    fd (and mounts nothing unless ``mount``). Returns the paths mounted."""
    mounted: list[str] = []
    libc = _libc()
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:
        # where each goes, decided before anything is mounted (a cover opens what it covers)
        unreachable = [(p, fd) for p, fd in sorted(trees) if mount and not os.access(p, os.X_OK)]
        placed = [(p, fd, top) for p, fd in unreachable if (top := _closed_above(p)) is not None]
        covers = []
        for top in dict.fromkeys(top for _p, _fd, top in placed):
            options = b"size=64k,nr_inodes=256,mode=0755"
            if libc.mount(b"tmpfs", os.fsencode(top), b"tmpfs", flags, options) == 0:
                covers.append(top)
        for path, fd, top in placed:
            if top not in covers or os.access(path, os.X_OK):
                continue  # no cover, or reachable through a tree mounted above it
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError:
                continue
            moved = _syscall(
                SYS_MOVE_MOUNT,
                ctypes.c_int(fd),
                b"",
                ctypes.c_int(AT_FDCWD),
                os.fsencode(path),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            if moved == 0:  # (private again, where mount_setattr is missing: before 5.12)
                libc.mount(None, os.fsencode(path), None, MS_PRIVATE, None)
                mounted.append(path)
        for top in covers:
            libc.mount(None, os.fsencode(top), None, MS_REMOUNT | MS_RDONLY | flags, None)
    finally:
        for _path, fd in trees:
            os.close(fd)
    return mounted
