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
processes (``mount_private_proc``).
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import os
import resource
import select
import signal
import sys
from typing import NoReturn

from ...protocol import pack_exit_report
from .. import _linux

CLONE_NEWPID = 0x20000000
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
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
        _outer(init, status_r, alive_w)
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


def _outer(init: int, status_r: int, alive_w: int) -> NoReturn:
    try:
        _quiet(keep=(status_r, alive_w))
        data = b""
        while chunk := os.read(status_r, 8):
            data += chunk
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
    finally:
        os._exit(0)  # the kernel now kills whatever is left in the namespace


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
