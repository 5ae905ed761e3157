"""Landlock through ctypes: a read-only filesystem but for the given paths, TCP denied,
signals and abstract unix sockets scoped to the worker.

Landlock is an unprivileged LSM: a process builds a *ruleset* (which access rights it
"handles", i.e. denies unless a rule allows them), adds rules, and restricts itself with
it, irreversibly, for itself and every process it starts later. What the running kernel
offers grows with its ABI version, and ``restrict`` uses what is there:

==== ====== ========================================================================
ABI  kernel what ``restrict`` handles
==== ====== ========================================================================
1    5.13   filesystem: execute, read/write files, read dirs, remove, make* (13 rights)
2    5.19   + REFER (rename/link across directories)
3    6.2    + TRUNCATE
4    6.7    + TCP bind/connect (``deny_tcp``: handled with no rule, so all denied)
5    6.10   + IOCTL_DEV (ioctl on device files)
6    6.12   + scopes: signals and abstract unix sockets stay inside the domain
7    6.15   (audit logging flags; not used)
8           LANDLOCK_RESTRICT_SELF_TSYNC: every thread restricted, not only the caller
==== ====== ========================================================================

Below ABI 8 only the calling thread (and what it starts later) is restricted: call
``restrict`` before starting threads. Landlock checks access when a file is opened, so
fds opened before (the channel, stdio) keep working. Everything not under a
``read_only`` or ``read_write`` path becomes unreadable, including the interpreter's own
files and ``/dev/null``: the caller passes every path the worker still needs.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from .seccomp import set_no_new_privs

SYS_LANDLOCK_CREATE_RULESET = 444  # the same on x86_64 and aarch64 (and generic)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RESTRICT_SELF_TSYNC = 1 << 3

ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
# 4..12: REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO,
# MAKE_BLOCK, MAKE_SYM
ACCESS_FS_ABI1 = (1 << 13) - 1
ACCESS_FS_REFER = 1 << 13
ACCESS_FS_TRUNCATE = 1 << 14
ACCESS_FS_IOCTL_DEV = 1 << 15
#: the rights a rule on a non-directory may carry (others are EINVAL there).
ACCESS_FS_FILE = (
    ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_TRUNCATE
    | ACCESS_FS_IOCTL_DEV
)
ACCESS_FS_READ_ONLY = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
#: what a ``write_files`` rule allows: read, write and truncate (``open(path, "w")``
#: truncates), neither execute nor device ioctls
ACCESS_FS_READ_WRITE_FILE = ACCESS_FS_READ_FILE | ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE

ACCESS_NET_BIND_TCP = 1 << 0
ACCESS_NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1


class RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr (ABI 6 layout; pass a shorter size to older ABIs)."""

    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    """struct landlock_path_beneath_attr (packed: 12 bytes)."""

    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class Restriction(TypedDict):
    """What ``restrict`` put in force."""

    abi: int  # the kernel's Landlock ABI (0: none)
    filesystem: bool  # reads and writes limited to the given paths
    tcp: bool  # TCP bind and connect denied
    signals: bool  # signals only to processes in the domain
    abstract_unix: bool  # abstract unix sockets only to processes in the domain
    scopes: bool  # every requested scope in force (False if none requested)
    all_threads: bool  # every thread restricted (ABI 8 TSYNC), not only the caller


@functools.cache
def _syscall() -> Callable[..., Any]:
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    return fn


def _call(nr: int, *args: object) -> int:
    rc = int(_syscall()(ctypes.c_long(nr), *args))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is absent or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        return _call(
            SYS_LANDLOCK_CREATE_RULESET,
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            return 0
        raise


def fs_rights(abi: int) -> int:
    """Every filesystem access right ABI ``abi`` knows."""
    if abi < 1:
        return 0
    rights = ACCESS_FS_ABI1
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= ACCESS_FS_IOCTL_DEV
    return rights


def _add_path(ruleset: int, path: str, access: int) -> None:
    """Allow ``access`` beneath ``path``; a path that does not exist (or that cannot be
    reached) is skipped, as it grants nothing."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):  # what os.path.exists() says False for, in one call
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= ACCESS_FS_FILE
        attr = PathBeneathAttr(access, fd)
        _call(
            SYS_LANDLOCK_ADD_RULE,
            ctypes.c_int(ruleset),
            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(attr),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(fd)


def restrict(
    read_only: Sequence[str],
    read_write: Sequence[str],
    deny_tcp: bool = True,
    scope_signals: bool = True,
    scope_abstract_unix: bool = True,
    write_files: Sequence[str] = (),
) -> Restriction:
    """Restrict this process (irreversibly) with everything the kernel's Landlock offers.

    Filesystem: every right the ABI knows is handled; ``read_only`` paths (and what is
    beneath them) may be read, listed and executed, ``read_write`` paths get every right,
    and ``write_files`` (single files, such as ``/dev/null``) may be read, written and
    truncated. A path that does not exist is skipped (it grants nothing). ``deny_tcp`` (ABI 4+):
    TCP bind and connect denied everywhere. ``scope_signals`` / ``scope_abstract_unix``
    (ABI 6+): no signal to, and no abstract unix socket connection to, a process outside
    this Landlock domain. Sets no_new_privs first.

    Returns which parts are in force; where the kernel has no Landlock, nothing is
    changed and everything is reported False. Raises OSError if the kernel refuses.
    """
    abi = abi_version()
    if abi < 1:
        return Restriction(
            abi=0,
            filesystem=False,
            tcp=False,
            signals=False,
            abstract_unix=False,
            scopes=False,
            all_threads=False,
        )
    handled_fs = fs_rights(abi)
    handled_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if deny_tcp and abi >= 4 else 0
    scoped = 0
    if abi >= 6:
        scoped = (SCOPE_SIGNAL if scope_signals else 0) | (
            SCOPE_ABSTRACT_UNIX_SOCKET if scope_abstract_unix else 0
        )
    attr = RulesetAttr(handled_fs, handled_net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # the struct as that ABI knows it
    ruleset = _call(
        SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    try:
        for paths, access in (
            (read_only, ACCESS_FS_READ_ONLY),
            (read_write, handled_fs),
            (write_files, ACCESS_FS_READ_WRITE_FILE),
        ):
            for path in paths:
                _add_path(ruleset, path, access & handled_fs)
        set_no_new_privs()
        flags = LANDLOCK_RESTRICT_SELF_TSYNC if abi >= 8 else 0
        _call(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(flags))
    finally:
        os.close(ruleset)
    wanted = (SCOPE_SIGNAL if scope_signals else 0) | (
        SCOPE_ABSTRACT_UNIX_SOCKET if scope_abstract_unix else 0
    )
    return Restriction(
        abi=abi,
        filesystem=True,
        tcp=bool(handled_net),
        signals=bool(scoped & SCOPE_SIGNAL),
        abstract_unix=bool(scoped & SCOPE_ABSTRACT_UNIX_SOCKET),
        scopes=bool(wanted) and scoped == wanted,
        all_threads=abi >= 8,
    )
