"""Quotas the kernel keeps per user namespace, set in the worker's own: its threads and
processes (RLIMIT_NPROC) and its inotify instances and watches, so that no worker's use
counts against another worker's quota, or its host's."""

from __future__ import annotations

import ctypes
import os
import resource
import sys

from .. import _linux
from . import pidns

#: inotify instances and watches a worker may hold (``/proc/sys/user/max_inotify_*`` of
#: its user namespace): a file watcher takes one instance per watched tree and one watch
#: per directory in it; without them a worker could take its uid's whole quota (128
#: instances by default), which its host shares when it is not root
INOTIFY = {"max_inotify_instances": 8, "max_inotify_watches": 1024}
CAP_SYS_RESOURCE = 24
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def limit_inotify() -> bool:
    """Lower the inotify limits of the user namespace this process has just made (it
    holds every capability in it), then give up CAP_SYS_RESOURCE, which the limits can
    be raised with: the plugin cannot take them back, with or without Landlock. The
    kernel counts each instance and watch in this namespace and in every one above it,
    so these are the worker's alone. Whether it took."""
    try:
        for name, value in INOTIFY.items():
            _linux.write_file(f"/proc/sys/user/{name}", b"%d" % value)
    except OSError:
        return False
    return drop_capability(CAP_SYS_RESOURCE)


def drop_capability(cap: int) -> bool:
    """Take ``cap`` out of this process's effective, permitted and inheritable sets."""
    libc = pidns._libc()
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return False
    word, keep = cap // 32, ~(1 << (cap % 32)) & 0xFFFFFFFF
    data[word].effective &= keep
    data[word].permitted &= keep
    data[word].inheritable &= keep
    return bool(libc.capset(ctypes.byref(header), data) == 0)


def nproc_per_namespace() -> bool:
    """Whether this kernel counts RLIMIT_NPROC per user namespace and uid (its ucounts,
    Linux 5.14+); before, it counted every process of the uid on the machine."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        release = os.uname().release.split("-")[0].split(".")
        major, minor = int(release[0]), int(release[1])
    except (ValueError, IndexError):
        return False
    return (major, minor) >= (5, 14)


def limit_threads(threads: int | None, user_namespace: bool) -> bool:
    """Cap this process's threads and processes at ``threads`` (RLIMIT_NPROC, soft and
    hard), only inside its own user namespace, where the kernel counts them per
    namespace: elsewhere the count is the uid's across the machine (other workers', or
    the host's own), so nothing is set. Root is exempt from the limit: not in force.
    Whether it took."""
    if threads is None or not user_namespace or os.geteuid() == 0:
        return False
    if not nproc_per_namespace():
        return False
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        if hard != resource.RLIM_INFINITY:
            threads = min(threads, hard)
        resource.setrlimit(resource.RLIMIT_NPROC, (threads, threads))
    except (ValueError, OSError):
        return False
    return True
