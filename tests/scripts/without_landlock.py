"""Run a command as on a kernel without Landlock: a seccomp filter makes the three
Landlock system calls fail with ENOSYS (what a kernel built without Landlock answers),
then the command is exec'd in this process, filter and all, and its children inherit it.

``python without_landlock.py PROGRAM [ARGS...]`` (as a launcher's ``command_prefix``:
the worker is then this same process, with this host as its parent).
"""

from __future__ import annotations

import os
import sys

from plugbox.worker.sandbox import bpf, seccomp, syscalls

#: landlock_create_ruleset, landlock_add_rule, landlock_restrict_self (same numbers on
#: x86_64 and aarch64)
LANDLOCK_SYSCALLS = (444, 445, 446)


def program() -> list[bpf.Insn]:
    arch = syscalls.native_arch()
    out = [
        bpf.load(bpf.OFF_ARCH),
        bpf.jump(bpf.JEQ, arch.audit_arch, 1, 0),
        bpf.ret(bpf.SECCOMP_RET_KILL_PROCESS),
        bpf.load(bpf.OFF_NR),
    ]
    for nr in LANDLOCK_SYSCALLS:
        out += [bpf.jump(bpf.JEQ, nr, 0, 1), bpf.ret(bpf.ENOSYS)]
    return [*out, bpf.ret(bpf.SECCOMP_RET_ALLOW)]


if __name__ == "__main__":
    seccomp.install(bpf.assemble(program()))
    os.execv(sys.argv[1], sys.argv[1:])
