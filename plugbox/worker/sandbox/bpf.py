"""Classic BPF as seccomp filters use it: instructions, their encoding, argument tests.

Arguments are read as their low 32-bit word (``arg_low``): ``seccomp``'s opening says
why that is the right width for every argument plugbox's filter compares.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# --- classic BPF (linux/filter.h, linux/bpf_common.h) -------------------------------
BPF_LD, BPF_JMP, BPF_RET = 0x00, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_JEQ, BPF_JGE, BPF_JSET = 0x10, 0x30, 0x40
LD_ABS = BPF_LD | BPF_W | BPF_ABS
JEQ, JGE, JSET = (BPF_JMP | op | BPF_K for op in (BPF_JEQ, BPF_JGE, BPF_JSET))
RET = BPF_RET | BPF_K

# --- seccomp (linux/seccomp.h) -------------------------------------------------------
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

#: offsets in struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6];}
OFF_NR, OFF_ARCH = 0, 4


def arg_low(i: int) -> int:
    """Offset in seccomp_data of the low 32 bits of syscall argument ``i`` (LE)."""
    return 16 + 8 * i


def errno_action(err: int) -> int:
    """The filter return value that fails a syscall with ``err``."""
    return SECCOMP_RET_ERRNO | (err & 0xFFFF)


EPERM = errno_action(errno.EPERM)
ENOSYS = errno_action(errno.ENOSYS)


class Insn(NamedTuple):
    """One ``struct sock_filter``: opcode, jump-if-true, jump-if-false, constant."""

    code: int
    jt: int
    jf: int
    k: int

    def encode(self) -> bytes:
        """The 8 bytes the kernel reads (native byte order)."""
        return struct.pack("=HBBI", self.code, self.jt, self.jf, self.k & 0xFFFFFFFF)


def load(offset: int) -> Insn:
    """A <- the 32-bit word at ``offset`` in seccomp_data."""
    return Insn(LD_ABS, 0, 0, offset)


def jump(code: int, k: int, jt: int, jf: int) -> Insn:
    """A conditional jump; ``jt``/``jf`` count instructions to skip (0..255)."""
    if not (0 <= jt <= 255 and 0 <= jf <= 255):
        raise ValueError(f"jump offset out of range: {jt}, {jf}")
    return Insn(code, jt, jf, k)


def ret(action: int) -> Insn:
    """Return ``action`` (SECCOMP_RET_*)."""
    return Insn(RET, 0, 0, action)


def assemble(program: Iterable[Insn]) -> bytes:
    """Encode instructions as the byte string ``sock_fprog.filter`` points to."""
    return b"".join(insn.encode() for insn in program)


def disassemble(code: bytes) -> list[Insn]:
    """Decode ``assemble``'s output (for tests and debugging)."""
    return [Insn(*fields) for fields in struct.iter_unpack("=HBBI", code)]


# --- rule blocks: each ends in ``ret`` on every path -------------------------------
def when_args(conds: Sequence[tuple[int, Sequence[int]]], then: int, otherwise: int) -> list[Insn]:
    """Return ``then`` if, for every ``(i, values)``, the low 32 bits of argument i are
    one of ``values``; else ``otherwise``."""
    total = sum(1 + len(values) for _, values in conds)  # ret then at total, otherwise at +1
    out: list[Insn] = []
    for i, values in conds:
        out.append(load(arg_low(i)))
        after = len(out) + len(values)  # the next condition's load
        for j, value in enumerate(values):
            here = len(out) + 1
            miss = total + 1 - here if j == len(values) - 1 else 0
            out.append(jump(JEQ, value, after - here, miss))
    return [*out, ret(then), ret(otherwise)]


def when_positive(i: int, then: int, otherwise: int) -> list[Insn]:
    """Return ``then`` if argument i, a pid read as a 32-bit signed int, is above 0;
    else ``otherwise`` (0 and negative pids name process groups, or every process)."""
    return [
        load(arg_low(i)),
        jump(JEQ, 0, 2, 0),
        jump(JSET, 0x80000000, 1, 0),
        ret(then),
        ret(otherwise),
    ]
