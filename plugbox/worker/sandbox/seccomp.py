"""A seccomp filter for plugbox workers: a small classic-BPF builder and its installer.

The filter is a *denylist* on top of the other layers (namespaces, Landlock, an
unprivileged uid, rlimits): every syscall not named here is allowed. It is built for
the native architecture only (x86_64 or aarch64, little-endian); anywhere else
``build_policy`` raises ``UnsupportedArchitecture`` and ``supported()`` is False.

Program shape (``build_policy``)::

    ld  seccomp_data.arch ; jeq AUDIT_ARCH_<native> ? next : KILL_PROCESS
    ld  seccomp_data.nr   ; (x86_64) jge 0x40000000 ? ERRNO(EPERM)      -- the x32 ABI
    jeq <nr> ? <rule block> : <next rule>  ...  ; ret ALLOW

A foreign-architecture syscall (an i386 ``int 0x80`` on x86_64, say) is the only thing
that kills: its numbers mean other syscalls, so no rule below applies to it. Every other
denial returns ``EPERM``, so Python code sees ``PermissionError``; ``clone3`` returns
``ENOSYS`` so that libc falls back to ``clone``, whose flags the filter can inspect
(``clone3`` passes them in memory, out of a filter's reach).

Arguments compared as 32-bit
----------------------------
BPF loads 32-bit words, and ``seccomp_data.args[i]`` is 64 bits wide. Every argument
this filter compares is a 32-bit one in the kernel (``int``/``pid_t`` pids and socket
families, ``unsigned int`` fcntl and ioctl commands, the ``personality`` value, and
``clone``'s flags, which the legacy clone syscall truncates with ``lower_32_bits``).
The kernel discards the upper half of such an argument, so the filter must too: it
loads only the low word (offset ``16 + 8*i``; both supported architectures are
little-endian) and never looks at the high word. A filter that compared all 64 bits
would be bypassed by setting a high bit: ``fcntl(fd, F_SETOWN | (1 << 32), pid)``
misses a 64-bit ``== F_SETOWN`` test, yet the kernel runs ``F_SETOWN`` (the same class
of bug let sandboxes be escaped through ``ioctl(TIOCSTI | 1 << 32)``). ``fcntl64``
exists only on 32-bit ABIs, which the architecture check already kills.

Pids: ``own_pid`` is fixed when the filter is built, so build it in the process that
installs it (after any pid-namespace fork). Signals and other calls that act on a
process by pid (``kill``, ``tgkill``, ``rt_*sigqueueinfo``, ``prlimit64``, ``sched_set*``,
``setpriority``, ``ioprio_set``, ``migrate_pages``, ``move_pages``) are allowed only on
that pid (or, but for signals, 0: "myself"); with ``self_only=False`` they are left to
Landlock's signal scope, which also covers the worker's own children when processes are
allowed. A signal never goes to pid 0 or below: those name process groups (the worker's
own holds its pid namespace's init and outer process) or every process.
``prctl(PR_SET_PDEATHSIG)`` is refused: the worker set it before the filter, and the
plugin cannot take it back to outlive its host.

Install after the rest of the sandbox is set up (it denies ``unshare``, ``mount`` ...):
``install(build_policy(os.getpid()))``, or ``policy_template().for_pid(os.getpid())``
(``seccomp_template``), the same program from a template built once (in the zygote,
before it forks). The instructions are classic BPF (``bpf``); the syscall numbers are
in ``syscalls``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import socket
import warnings
from collections.abc import Iterable, Sequence

from .bpf import (
    ENOSYS,
    EPERM,
    JEQ,
    JGE,
    JSET,
    OFF_ARCH,
    OFF_NR,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_KILL_PROCESS,
    Insn,
    arg_low,
    assemble,
    jump,
    load,
    ret,
    when_args,
    when_positive,
)
from .syscalls import Arch, UnsupportedArchitecture, native_arch

# --- what the policy compares --------------------------------------------------------
X32_SYSCALL_BIT = 0x40000000

F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
FIOSETOWN, SIOCSPGRP, TIOCSTI, TIOCLINUX = 0x8901, 0x8902, 0x5412, 0x541C
CLONE_THREAD = 0x00010000
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NEW_NAMESPACES = 0x7E020000
PRIO_PROCESS, IOPRIO_WHO_PROCESS = 0, 1
PER_LINUX, PER_QUERY = 0, 0xFFFFFFFF
PR_SET_PDEATHSIG = 1
#: the calls that send a signal to the process (or thread group) their first argument names
_SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")


def socket_block(families: Sequence[int], unix_types: Sequence[int] | None) -> list[Insn]:
    """socket/socketpair: only the address ``families``; AF_UNIX, if ``unix_types`` is
    given, only of those types (each with its SOCK_NONBLOCK/SOCK_CLOEXEC flags)."""
    if unix_types is None or socket.AF_UNIX not in families:
        return when_args([(0, families)], SECCOMP_RET_ALLOW, EPERM)
    others = [f for f in families if f != socket.AF_UNIX]
    unix = when_args([(1, unix_types)], SECCOMP_RET_ALLOW, EPERM)
    total = 2 + len(others) + len(unix)
    allow, deny = total - 2, total - 1  # the unix block ends: ret ALLOW, ret EPERM
    out = [load(arg_low(0))]
    for f in others:
        out.append(jump(JEQ, f, allow - (len(out) + 1), 0))
    out.append(jump(JEQ, socket.AF_UNIX, 0, deny - (len(out) + 1)))
    return [*out, *unix]


#: AF_UNIX socket types that cannot address another process's socket by name:
#: connection-oriented (a send ignores or refuses a destination address), with every
#: combination of the SOCK_NONBLOCK (0x800) and SOCK_CLOEXEC (0x80000) flags.
UNIX_CONNECTED_TYPES = tuple(
    t | flags
    for t in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
    for flags in (0, 0x800, 0x80000, 0x80800)
)


def clone_block(allow_processes: bool) -> list[Insn]:
    """clone: no namespace flags ever; without ``allow_processes``, threads only."""
    if allow_processes:
        return [
            load(arg_low(0)),
            jump(JSET, CLONE_NEW_NAMESPACES, 0, 1),
            ret(EPERM),
            ret(SECCOMP_RET_ALLOW),
        ]
    return [
        load(arg_low(0)),
        jump(JSET, CLONE_NEW_NAMESPACES, 1, 0),
        jump(JSET, CLONE_THREAD, 1, 0),
        ret(EPERM),
        ret(SECCOMP_RET_ALLOW),
    ]


#: Always denied with EPERM, and why each is an escape (or exploit) vector.
DENIED = {
    "ptrace": "read/write another process's memory and registers",
    "process_vm_readv": "read another process's memory",
    "process_vm_writev": "write another process's memory",
    "kcmp": "probe other processes' kernel objects (ptrace-mode access)",
    "pidfd_getfd": "steal an fd from another process",
    "pidfd_open": "handles on other processes (signals, getfd, madvise)",
    "pidfd_send_signal": "signals through a pidfd bypass the kill() pid check",
    "process_madvise": "act on another process's memory through a pidfd",
    "process_mrelease": "reap another process's memory through a pidfd",
    "tkill": "signals a thread id with no process check; libc uses tgkill",
    "add_key": "keyrings are shared by every process of the uid",
    "request_key": "keyrings are shared by every process of the uid",
    "keyctl": "keyrings are shared by every process of the uid",
    "bpf": "large kernel attack surface",
    "perf_event_open": "kernel attack surface and side channels on other processes",
    "userfaultfd": "classic kernel-exploit primitive (stalls copy_from_user)",
    "io_uring_setup": "io_uring runs socket/open/connect ops that seccomp never sees",
    "io_uring_enter": "io_uring runs socket/open/connect ops that seccomp never sees",
    "io_uring_register": "io_uring runs socket/open/connect ops that seccomp never sees",
    "unshare": "new namespaces once the sandbox is built (user ns gives capabilities)",
    "setns": "join another namespace",
    "mount": "rearrange the filesystem view",
    "umount2": "uncover what a mount hides",
    "pivot_root": "change the filesystem root",
    "chroot": "chroot tricks against path-based rules",
    "open_tree": "new mount API",
    "move_mount": "new mount API",
    "fsopen": "new mount API",
    "fsconfig": "new mount API",
    "fsmount": "new mount API",
    "fspick": "new mount API",
    "mount_setattr": "new mount API",
    "open_by_handle_at": "open files by handle around path checks (the 'shocker' escape)",
    "kexec_load": "privileged kernel administration",
    "kexec_file_load": "ditto",
    "init_module": "load kernel code",
    "finit_module": "load kernel code",
    "delete_module": "unload kernel code",
    "reboot": "privileged",
    "swapon": "privileged",
    "swapoff": "privileged",
    "acct": "privileged",
    "syslog": "kernel log: pointers, secrets",
    "modify_ldt": "x86 LDT: kernel attack surface",
    "iopl": "raw port I/O",
    "ioperm": "raw port I/O",
}

#: Calls that act on a process given by pid: allowed only on this process.
_SELF_PID_ARG0 = (
    "prlimit64",
    "sched_setaffinity",
    "sched_setparam",
    "sched_setscheduler",
    "sched_setattr",
    "migrate_pages",
    "move_pages",
)


def build_policy(
    own_pid: int,
    *,
    allow_processes: bool = False,
    socket_families: Iterable[int] = (socket.AF_UNIX,),
    connect: bool = False,
    self_only: bool = True,
    signal_processes: bool = False,
    arch: Arch | None = None,
) -> bytes:
    """Build plugbox's filter and return it encoded (``assemble``'s bytes).

    ``own_pid``: the installing process's pid, the only target of signals and other
    by-pid calls (with ``self_only``). ``allow_processes``: allow fork/vfork/clone and
    execve/execveat (clone with namespace flags stays denied; clone3 always ENOSYS).
    ``socket_families``: the address families socket()/socketpair() may use (default
    AF_UNIX; add AF_INET/AF_INET6 when the network is allowed). ``connect``: allow
    connect() and unix datagram sockets (a networked policy needs them). Without it a
    process cannot reach another's unix socket by its name: connect() is EPERM for every
    socket, and AF_UNIX sockets are only SOCK_STREAM or SOCK_SEQPACKET, whose sends
    take no destination (a datagram socket's sendto/sendmsg would, and a filter cannot
    read the address behind the pointer). Landlock (up to ABI 7) and the network
    namespace do not cover pathname sockets: a world-writable one such as the D-Bus
    system bus is otherwise open. ``signal_processes``: signals to any pid > 0 (where a
    pid namespace or Landlock's scope keeps them to the worker's own processes), the
    other by-pid calls still on this one. ``arch``: build for this architecture (tests).
    """
    arch = arch or native_arch()
    me = own_pid & 0xFFFFFFFF
    families = sorted({int(f) for f in socket_families})
    rules: dict[str, list[Insn]] = {name: [ret(EPERM)] for name in DENIED}
    rules["personality"] = when_args([(0, [PER_LINUX, PER_QUERY])], SECCOMP_RET_ALLOW, EPERM)
    rules["fcntl"] = when_args([(1, [F_SETOWN, F_SETSIG, F_SETOWN_EX])], EPERM, SECCOMP_RET_ALLOW)
    rules["ioctl"] = when_args(
        [(1, [FIOSETOWN, SIOCSPGRP, TIOCSTI, TIOCLINUX])], EPERM, SECCOMP_RET_ALLOW
    )
    for name in ("socket", "socketpair"):
        rules[name] = socket_block(families, None if connect else UNIX_CONNECTED_TYPES)
    if not connect:
        rules["connect"] = [ret(EPERM)]
    rules["clone"] = clone_block(allow_processes)
    rules["clone3"] = [ret(ENOSYS)]
    if not allow_processes:
        for name in ("fork", "vfork", "execve", "execveat"):
            rules[name] = [ret(EPERM)]
    if self_only:

        def only_me(conds: Sequence[tuple[int, Sequence[int]]]) -> list[Insn]:
            return when_args(conds, SECCOMP_RET_ALLOW, EPERM)

        anyone = when_positive(0, SECCOMP_RET_ALLOW, EPERM) if signal_processes else None
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            rules[name] = anyone or only_me([(0, [me])])  # never pid 0: its process group
        for name in _SELF_PID_ARG0:
            rules[name] = only_me([(0, [me, 0])])
        rules["setpriority"] = only_me([(0, [PRIO_PROCESS]), (1, [me, 0])])
        rules["ioprio_set"] = only_me([(0, [IOPRIO_WHO_PROCESS]), (1, [me, 0])])
    else:
        for name in _SIGNALS:
            rules[name] = when_positive(0, SECCOMP_RET_ALLOW, EPERM)
    rules["prctl"] = when_args([(0, [PR_SET_PDEATHSIG])], EPERM, SECCOMP_RET_ALLOW)
    return assemble(program(arch, rules))


def program(arch: Arch, rules: dict[str, list[Insn]]) -> list[Insn]:
    """Arch check, x32 check, then each rule (by syscall name) in turn; ALLOW at the end.

    Names the architecture lacks (fork and vfork on aarch64) are skipped.
    """
    out = [
        load(OFF_ARCH),
        jump(JEQ, arch.audit_arch, 1, 0),
        ret(SECCOMP_RET_KILL_PROCESS),
        load(OFF_NR),
    ]
    if arch.x32:
        out += [jump(JGE, X32_SYSCALL_BIT, 0, 1), ret(EPERM)]
    for name, block in rules.items():
        nr = arch.syscalls.get(name)
        if nr is not None:
            out += [jump(JEQ, nr, 0, len(block)), *block]
    out.append(ret(SECCOMP_RET_ALLOW))
    if len(out) > 4096:
        raise ValueError(f"filter too long: {len(out)} instructions")
    return out


# --- installing (linux/seccomp.h, linux/prctl.h) ---------------------------------------
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_MODE_FILTER = 2
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38


class _SockFprog(ctypes.Structure):
    # ``filter`` points into the bytes object given (kept alive by the structure): the
    # kernel copies the program, so no ctypes buffer of its own is needed
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS, 1): no privilege gained through execve from now on
    (setuid bits, file capabilities). Needed to install a filter (or Landlock) without
    CAP_SYS_ADMIN; inherited by children and irreversible. Raises OSError."""
    if (
        _libc().prctl(
            PR_SET_NO_NEW_PRIVS,
            ctypes.c_ulong(1),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        != 0
    ):
        _raise_errno("prctl(PR_SET_NO_NEW_PRIVS)")


def install(code: bytes) -> bool:
    """Install an encoded filter on this process; irreversible.

    Sets no_new_privs, then calls seccomp(SECCOMP_SET_MODE_FILTER,
    SECCOMP_FILTER_FLAG_TSYNC) so every thread of the process gets the filter. Where the
    seccomp syscall or TSYNC is missing it falls back to prctl(PR_SET_SECCOMP), which
    filters only the calling thread (and threads it starts later). Returns True when all
    threads are filtered, False after the fallback; raises OSError if neither worked.
    """
    arch = native_arch()
    if not code or len(code) % 8:
        raise ValueError("not an encoded BPF program")
    set_no_new_privs()
    prog = _SockFprog(len(code) // 8, code)
    libc = _libc()
    rc = libc.syscall(
        ctypes.c_long(arch.syscalls["seccomp"]),
        ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(prog),
    )
    if rc == 0:
        return True
    if rc > 0:
        raise OSError(errno.EBUSY, f"seccomp TSYNC: thread {rc} could not be synchronized")
    if ctypes.get_errno() not in (errno.ENOSYS, errno.EINVAL):
        _raise_errno("seccomp(SECCOMP_SET_MODE_FILTER)")
    if (
        libc.prctl(
            PR_SET_SECCOMP,
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        != 0
    ):
        _raise_errno("prctl(PR_SET_SECCOMP)")
    return False


@functools.cache
def supported() -> bool:
    """Whether this kernel accepts a seccomp filter from this process.

    A probe, not a guess: a forked child installs a trivial filter (arch check, then
    allow) and reports; the caller itself is left unfiltered. False on other systems
    and architectures.
    """
    try:
        arch = native_arch()
    except UnsupportedArchitecture:
        return False
    code = assemble(program(arch, {}))
    _libc()  # load libc before forking, not in the child
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            install(code)
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status) == 0
