"""The architectures seccomp filters are built for, and their syscall numbers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    """What the filter needs to know about an architecture."""

    name: str
    audit_arch: int
    x32: bool
    syscalls: dict[str, int]


_COMMON = {
    "pidfd_send_signal": 424,
    "pidfd_open": 434,
    "pidfd_getfd": 438,
    "clone3": 435,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "process_madvise": 440,
    "process_mrelease": 448,
}
# Numbers from asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
_X86_64 = {
    "ptrace": 101,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "bpf": 321,
    "perf_event_open": 298,
    "userfaultfd": 323,
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "umount2": 166,
    "pivot_root": 155,
    "chroot": 161,
    "personality": 135,
    "prctl": 157,
    "kill": 62,
    "tkill": 200,
    "tgkill": 234,
    "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297,
    "fcntl": 72,
    "ioctl": 16,
    "fork": 57,
    "vfork": 58,
    "clone": 56,
    "execve": 59,
    "execveat": 322,
    "socket": 41,
    "socketpair": 53,
    "connect": 42,
    "open_by_handle_at": 304,
    "prlimit64": 302,
    "setpriority": 141,
    "ioprio_set": 251,
    "sched_setaffinity": 203,
    "sched_setparam": 142,
    "sched_setscheduler": 144,
    "sched_setattr": 314,
    "migrate_pages": 256,
    "move_pages": 279,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "reboot": 169,
    "swapon": 167,
    "swapoff": 168,
    "acct": 163,
    "syslog": 103,
    "modify_ldt": 154,
    "iopl": 172,
    "ioperm": 173,
    "seccomp": 317,
}
_AARCH64 = {
    "ptrace": 117,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "bpf": 280,
    "perf_event_open": 241,
    "userfaultfd": 282,
    "unshare": 97,
    "setns": 268,
    "mount": 40,
    "umount2": 39,
    "pivot_root": 41,
    "chroot": 51,
    "personality": 92,
    "prctl": 167,
    "kill": 129,
    "tkill": 130,
    "tgkill": 131,
    "rt_sigqueueinfo": 138,
    "rt_tgsigqueueinfo": 240,
    "fcntl": 25,
    "ioctl": 29,
    "clone": 220,
    "execve": 221,
    "execveat": 281,
    "socket": 198,
    "socketpair": 199,
    "connect": 203,
    "open_by_handle_at": 265,
    "prlimit64": 261,
    "setpriority": 140,
    "ioprio_set": 30,
    "sched_setaffinity": 122,
    "sched_setparam": 118,
    "sched_setscheduler": 119,
    "sched_setattr": 274,
    "migrate_pages": 238,
    "move_pages": 239,
    "kexec_load": 104,
    "kexec_file_load": 294,
    "init_module": 105,
    "finit_module": 273,
    "delete_module": 106,
    "reboot": 142,
    "swapon": 224,
    "swapoff": 225,
    "acct": 89,
    "syslog": 116,
    "seccomp": 277,
}

ARCHES = {
    "x86_64": Arch("x86_64", 0xC000003E, True, {**_X86_64, **_COMMON}),
    "aarch64": Arch("aarch64", 0xC00000B7, False, {**_AARCH64, **_COMMON}),
}


class UnsupportedArchitecture(RuntimeError):
    """The filter is built only for x86_64 and aarch64 (little-endian) Linux."""


def native_arch() -> Arch:
    """The running architecture, or UnsupportedArchitecture."""
    machine = os.uname().machine if hasattr(os, "uname") else ""
    if not sys.platform.startswith("linux") or machine not in ARCHES:
        raise UnsupportedArchitecture(
            f"seccomp filters are built for Linux x86_64 and aarch64 only, "
            f"not {sys.platform} {machine or 'unknown'}"
        )
    return ARCHES[machine]
