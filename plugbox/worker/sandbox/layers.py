"""The sandbox layers beyond rlimits, applied by the worker before the plugin is
imported, each only where the kernel offers it and each reported in the handshake.

Order (the OOM score is raised earlier, before privileges are dropped): ``enter``,
before the worker's event loop exists: namespaces (user, then IPC, network, mount and
pid inside it; the pid namespace forks, see ``pidns``) and a private tmpfs as scratch
in the mount namespace; then ``apply``: the scratch
directory as cwd, HOME and TMPDIR; Landlock (read-only filesystem but the scratch
directory, TCP denied, signals and abstract sockets scoped); seccomp last, since it
forbids the calls the earlier layers need (unshare).
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ...limits import PRIVATE_SCRATCH, PRIVATE_TMPFS
from .. import _linux
from . import landlock, pidns, quotas, seccomp, seccomp_template, syscalls

CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
#: files a private scratch tmpfs may hold per MB of its size (each costs the kernel
#: memory beyond its size)
SCRATCH_INODES_PER_MB = 128

#: what every worker may read: system libraries, configuration, a few devices, and of
#: /proc only its own entry (``/proc/self`` is resolved when the rule is made) and a few
#: system-wide files: listing /proc, or reading another process's entry, is refused, so
#: the plugin cannot see the host's processes even where the pid namespace is missing.
BASE_READ_ONLY = (
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/etc",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
)
#: the devices every worker may write (and read): nothing written to them is kept
WRITABLE_DEVICES = ("/dev/null", "/dev/zero")


def _libc() -> ctypes.CDLL:
    return pidns._libc()


def prepare() -> None:
    """Do, once, in a process that forks workers (the zygote), the work whose result is
    the same in every worker, so that no worker redoes it after its fork: libc's
    functions looked up through ctypes, the seccomp programs built (with the pid left
    open: ``seccomp_template.policy_template``), the machine's architecture read, and,
    as root, the name service's modules loaded by one lookup of a user. Nothing is decided here
    for a worker, nor cached from the system's state: each worker still looks its own
    user up, asks the kernel what it offers, writes its own pid into its filter and
    enters every layer itself, in the same order."""
    if not sys.platform.startswith("linux"):
        return
    for libc, names in (
        (_libc(), ("unshare", "mount", "prctl", "capget", "capset", "syscall", "sigaltstack")),
        (seccomp._libc(), ("prctl", "syscall")),
    ):
        for name in names:
            getattr(libc, name)  # ctypes makes (and keeps) a function on first use
    try:
        landlock.abi_version()  # loads its syscall wrapper; each worker asks again
    except OSError:
        pass
    try:
        for network in (False, True):
            _seccomp_template(network, False, False).for_pid(1)
            # with processes, the program of a worker whose signals are scoped (apply)
            _seccomp_template(network, True, True).for_pid(1)
    except syscalls.UnsupportedArchitecture:
        pass
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("nobody")  # the default user; any lookup loads the same modules
        except KeyError:
            pass


def raise_oom_score() -> bool:
    """Make the kernel's OOM killer pick this worker before its host. A worker forked
    by a zygote is not dumpable, as the zygote is not, and its /proc files then belong
    to root: unless it is root, it is made dumpable for the write, as for the user
    namespace's maps (before any plugin code runs), whoever runs the host."""
    try:
        _linux.write_file("/proc/self/oom_score_adj", b"1000")
    except PermissionError:
        if not _linux.set_dumpable(True):
            return False
        try:
            _linux.write_file("/proc/self/oom_score_adj", b"1000")
        except OSError:
            return False
        finally:
            _linux.set_dumpable(False)
    except OSError:
        return False
    return True


def enter_namespaces(network: bool) -> dict[str, bool]:
    """unshare a user namespace (mapping our own uid and gid) and set its inotify
    quota (``quotas``), then IPC and, without network, network namespaces inside it.
    Returns what took effect."""
    done = dict.fromkeys(("user_namespace", "inotify_limit", "ipc_namespace"), False)
    done["network_namespace"] = False
    if not sys.platform.startswith("linux"):
        return done
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return done
    # after a uid change the process is not dumpable and its /proc files belong to
    # root; the maps can only be written while it is dumpable again, briefly
    dumpable = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            _linux.write_file(f"/proc/self/{name}", text.encode())
    except OSError:
        return done
    finally:
        libc.prctl(PR_SET_DUMPABLE, 1 if dumpable == 1 else 0, 0, 0, 0)
    done["user_namespace"] = True
    done["inotify_limit"] = quotas.limit_inotify()
    if libc.unshare(CLONE_NEWIPC) == 0:
        done["ipc_namespace"] = True
    if not network and libc.unshare(CLONE_NEWNET) == 0:
        done["network_namespace"] = True
    return done


def enter(
    policy: dict[str, Any],
    exit_report_fd: int | None = None,
    trees: Sequence[tuple[str, int]] = (),
) -> tuple[dict[str, bool], int]:
    """Enter the namespaces ``policy`` asks for. Returns the layers that took effect
    and this process's pid as the host sees it; in a pid namespace, the process that
    returns is the worker's pid 2 (``pidns.split``), whose init reports its end on
    ``exit_report_fd``. ``trees``: the interpreter's directories to mount where this
    user cannot reach them (``pidns.mount_trees``)."""
    pid = os.getpid()
    try:
        done, pid = _enter(policy, exit_report_fd, pid)
    except BaseException:
        pidns.mount_trees(trees, mount=False)
        raise
    pidns.mount_trees(trees, mount=bool(done.get("mount_namespace")))
    return done, pid


def _enter(
    policy: dict[str, Any], exit_report_fd: int | None, pid: int
) -> tuple[dict[str, bool], int]:
    if policy.get("dumpable") and sys.platform.startswith("linux"):
        # a host of the worker's own uid reads its /proc entries to count its memory;
        # a worker forked from the (non-dumpable) zygote would keep them closed to it
        _libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    if not policy.get("namespaces", True):
        return {}, pid
    done = enter_namespaces(bool(policy.get("network")))
    done["mount_namespace"] = done["pid_namespace"] = False
    if done["user_namespace"]:
        mount = pidns.unshare(pidns.CLONE_NEWNS)
        if policy.get("pid_namespace", True) and pidns.unshare(pidns.CLONE_NEWPID):
            pid = pidns.split(exit_report_fd)
            done["pid_namespace"] = True
        if mount:
            done["mount_namespace"] = pidns.mount_private_proc(done["pid_namespace"])
    scratch_mb = policy.get("scratch_mb")
    if scratch_mb:
        done["scratch_tmpfs"] = done["mount_namespace"] and enter_private_scratch(
            policy, int(scratch_mb)
        )
    return done, pid


def enter_private_scratch(policy: dict[str, Any], size_mb: int) -> bool:
    """Mount a private tmpfs of ``size_mb`` on ``PRIVATE_TMPFS`` (in the worker's own
    mount namespace: gone with its last process) and make ``PRIVATE_SCRATCH`` in it the
    scratch directory (``policy["scratch"]``), in place of the one the host made on
    disk, which is removed at once. Whether it took; if not, the host's stays."""
    flags = pidns.MS_NOSUID | pidns.MS_NODEV
    inodes = max(1024, size_mb * SCRATCH_INODES_PER_MB)
    options = f"size={size_mb}m,nr_inodes={inodes},mode=0700".encode()
    if not os.path.isdir(PRIVATE_TMPFS):
        return False
    if _libc().mount(b"tmpfs", PRIVATE_TMPFS.encode(), b"tmpfs", flags, options) != 0:
        return False
    try:
        os.mkdir(PRIVATE_SCRATCH, 0o700)
    except OSError:
        return False
    on_disk = policy.get("scratch")
    policy["scratch"] = PRIVATE_SCRATCH
    if on_disk:
        try:
            os.rmdir(str(on_disk))  # empty: nothing of the plugin's has run yet
        except OSError:
            pass  # the host removes it when the worker ends
    return True


@functools.cache
def _seccomp_template(
    network: bool, processes: bool, signal_processes: bool
) -> seccomp_template.PolicyTemplate:
    """The seccomp program a policy asks for, with the pid left open (cached by its
    arguments as given: callers pass all three, so that each program has one key)."""
    families = [socket.AF_UNIX] + ([socket.AF_INET, socket.AF_INET6] if network else [])
    return seccomp_template.policy_template(
        socket_families=families,
        connect=network,
        allow_processes=processes,
        signal_processes=signal_processes,
    )


def writable_paths(policy: dict[str, Any], entered: Mapping[str, bool]) -> list[str]:
    """What Landlock lets the worker write: its scratch directory and, where it has a
    private tmpfs (``entered["scratch_tmpfs"]``), that tmpfs as a whole (POSIX
    semaphores, shm_open). The refusals' audit hook words its refusals from the same
    list (``worker.refusals``)."""
    scratch = policy.get("scratch")
    writable = [str(scratch)] if scratch else []
    if entered.get("scratch_tmpfs"):
        writable.append(PRIVATE_TMPFS)
    return writable


def enter_scratch(path: str) -> None:
    """Work in the scratch directory: cwd, HOME and TMPDIR."""
    os.chdir(path)
    os.environ["HOME"] = path
    os.environ["TMPDIR"] = path


def apply(
    policy: dict[str, Any], read_only: list[str], entered: Mapping[str, bool] | None = None
) -> dict[str, bool]:
    """Apply the layers after the namespaces that ``policy`` (``Sandbox.to_worker``)
    asks for; report each. ``read_only``: the worker's read grants (``reads.plan``),
    which Landlock adds to ``BASE_READ_ONLY`` and the policy's own ``read_only``.
    ``entered``: what ``enter`` put in force (a private tmpfs is writable as a whole)."""
    layers: dict[str, bool] = {}
    entered = entered or {}
    network = bool(policy.get("network"))
    processes = bool(policy.get("processes"))
    scratch = policy.get("scratch")
    if scratch:
        enter_scratch(str(scratch))
    try:
        seccomp.set_no_new_privs()
        layers["no_new_privs"] = True
    except OSError:
        layers["no_new_privs"] = False
    if policy.get("landlock", True):
        paths = [*BASE_READ_ONLY, *read_only, *(policy.get("read_only") or [])]
        try:
            done = landlock.restrict(
                paths,
                writable_paths(policy, entered),
                deny_tcp=not network,
                write_files=WRITABLE_DEVICES,
            )
        except OSError:
            done = None
        layers["landlock_filesystem"] = bool(done and done["filesystem"])
        layers["landlock_tcp"] = bool(done and done["tcp"])
        layers["landlock_signals"] = bool(done and done["signals"])
        layers["landlock_abstract_unix"] = bool(done and done["abstract_unix"])
    if policy.get("seccomp", True):
        try:
            # signals to its own children, where nothing else can be named or reached
            scoped = bool(entered.get("pid_namespace") or layers.get("landlock_signals"))
            template = _seccomp_template(network, processes, processes and scoped)
            seccomp.install(template.for_pid(os.getpid()))
            layers["seccomp"] = True
        except (OSError, syscalls.UnsupportedArchitecture):
            layers["seccomp"] = False

    return layers
