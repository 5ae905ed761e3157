"""The seccomp program built once per set of options, with the installing pid left open."""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Iterable
from typing import NamedTuple

from .seccomp import build_policy
from .syscalls import ARCHES, Arch, native_arch


class PolicyTemplate(NamedTuple):
    """``build_policy``'s program with the own-pid constants left as slots.

    The pid is the only part of the program that depends on the installing process:
    it is the ``k`` of a few jumps, and the program's shape (its length and every jump
    offset) does not depend on its value. ``pid_slots`` are the byte offsets of those
    ``k`` fields in ``code``.
    """

    code: bytes
    pid_slots: tuple[int, ...]

    def for_pid(self, own_pid: int) -> bytes:
        """The program ``build_policy(own_pid, ...)`` returns for the same options."""
        code = bytearray(self.code)
        for offset in self.pid_slots:
            struct.pack_into("=I", code, offset, own_pid & 0xFFFFFFFF)
        return bytes(code)


#: two pids no process has (pid_max is at most 2**22), to tell the pid's slots apart
_PROBE_PIDS = (0x7FFFFFFE, 0x7FFFFFFD)
_K_OFFSET = 4  # of ``k`` in an encoded instruction (``Insn.encode``: =HBBI)


def _make_template(
    allow_processes: bool,
    socket_families: tuple[int, ...],
    connect: bool,
    self_only: bool,
    arch: Arch,
    signal_processes: bool = False,
) -> PolicyTemplate:
    first, second = (
        build_policy(
            pid,
            allow_processes=allow_processes,
            socket_families=socket_families,
            connect=connect,
            self_only=self_only,
            signal_processes=signal_processes,
            arch=arch,
        )
        for pid in _PROBE_PIDS
    )
    if len(first) != len(second):
        raise RuntimeError("the filter's length depends on the pid")
    probes = [struct.pack("=I", pid) for pid in _PROBE_PIDS]
    slots = []
    for offset in range(0, len(first), 8):  # instruction by instruction
        k = offset + _K_OFFSET
        if first[offset : offset + 8] != second[offset : offset + 8]:
            if (
                first[offset:k] != second[offset:k]
                or [first[k : k + 4], second[k : k + 4]] != probes
            ):
                raise RuntimeError(
                    f"the filter's instruction {offset // 8} depends on "
                    f"the pid other than by its constant"
                )
            slots.append(k)
    return PolicyTemplate(first, tuple(slots))


@functools.cache
def _template(
    allow_processes: bool,
    socket_families: tuple[int, ...],
    connect: bool,
    self_only: bool,
    arch_name: str,
    signal_processes: bool,
) -> PolicyTemplate:
    arch = ARCHES[arch_name]
    return _make_template(
        allow_processes, socket_families, connect, self_only, arch, signal_processes
    )


def policy_template(
    *,
    allow_processes: bool = False,
    socket_families: Iterable[int] = (socket.AF_UNIX,),
    connect: bool = False,
    self_only: bool = True,
    signal_processes: bool = False,
    arch: Arch | None = None,
) -> PolicyTemplate:
    """``build_policy``'s program for these options with the pid left open, built once
    per set of options and kept (``PolicyTemplate.for_pid`` fills it in).

    Building the program is pure Python and costs a worker a few hundred microseconds
    after its fork; a zygote builds the templates its workers will ask for once, before
    it forks (``sandbox.prepare``), and each worker only writes its pid in.
    """
    families = tuple(sorted({int(f) for f in socket_families}))
    arch = arch or native_arch()
    if ARCHES.get(arch.name) is not arch:  # not one of ours: built, not kept
        return _make_template(allow_processes, families, connect, self_only, arch, signal_processes)
    return _template(allow_processes, families, connect, self_only, arch.name, signal_processes)
