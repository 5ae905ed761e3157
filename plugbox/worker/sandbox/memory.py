"""The worker's memory and stack limits: its private memory capped at ``memory_mb``
above start-up (RLIMIT_DATA), its address space 1 GiB higher (RLIMIT_AS), its stacks,
and faults handled on the stack that took them, so that one that ran out shows."""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import sys
from collections.abc import Mapping

from ...limits import BLAS_THREAD_VARIABLES
from .. import _linux
from . import pidns

#: what ``Confinement.reserve`` holds back: enough, once released, for an allocator to
#: map a new region (a pymalloc arena, or glibc malloc's fallback: 1 MiB each). Untouched,
#: it takes no memory, only private address space, which the caps are raised by (made
#: before them).
RESERVE_BYTES = 2 << 20
#: how far the address space may grow past the cap on private memory: the code of the
#: libraries a plugin loads, malloc's arenas (64 MiB reserved per thread that needs one,
#: little of it used) and guard pages take address space, not memory, and must not count
ADDRESS_SPACE_SLACK = 1 << 30
#: what a BLAS thread beyond the first reserves in private memory, per library: an
#: OpenBLAS buffer (32 MiB) and its C stack (8 MiB), untouched until it works
BLAS_THREAD_RESERVE = 40 << 20
#: the BLAS libraries a plugin may have loaded at once, each with its own threads:
#: numpy's OpenBLAS and scipy's
BLAS_LIBRARIES = 2
#: the least stack a thread or the process is given, whatever the limits say
MIN_STACK = 256 << 10
SS_DISABLE = 2


class _StackT(ctypes.Structure):
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def set_limit(which: int, soft: int, hard: int | None = None) -> None:
    """setrlimit, never raising a hard limit above what it is now."""
    _soft, cur_hard = resource.getrlimit(which)
    if hard is None:
        hard = cur_hard
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard) if hard != resource.RLIM_INFINITY else cur_hard
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard) if soft != resource.RLIM_INFINITY else hard
    resource.setrlimit(which, (soft, hard))


def limit_stacks(stack_kb: int, thread_stack_kb: int) -> None:
    """The main thread's stack limit (RLIMIT_STACK), the stack of the threads the plugin
    starts, and faults handled on the stack of the thread that took them
    (``handle_faults_on_own_stack``)."""
    set_limit(resource.RLIMIT_STACK, max(stack_kb << 10, MIN_STACK))
    handle_faults_on_own_stack()
    import _thread

    _thread.stack_size(max(thread_stack_kb << 10, MIN_STACK))


def limit_memory(memory_mb: int) -> tuple[mmap.mmap, int, int]:
    """Cap this process's private memory (RLIMIT_DATA: heap, arrays, thread stacks) at
    what it holds now plus ``memory_mb``, plus what BLAS threads beyond the first reserve
    (``blas_threads``), and its address space 1 GiB above that (RLIMIT_AS). Returns the
    reserve held back under the cap, and the two caps in KiB."""
    # private, so that releasing it makes room under RLIMIT_DATA as well
    reserve = mmap.mmap(-1, RESERVE_BYTES, flags=mmap.MAP_PRIVATE)
    data_kb, space_kb = _status_kb(b"VmData:"), _linux.address_space_kb()
    blas = (blas_threads(os.environ) - 1) * BLAS_THREAD_RESERVE * BLAS_LIBRARIES
    room = (memory_mb << 20) + blas
    set_limit(resource.RLIMIT_DATA, (data_kb << 10) + room, (data_kb << 10) + room)
    space = (space_kb << 10) + room + ADDRESS_SPACE_SLACK
    set_limit(resource.RLIMIT_AS, space, space)
    return reserve, data_kb + (room >> 10), space >> 10


def handle_faults_on_own_stack() -> bool:
    """Take away the alternate signal stack faulthandler gave this thread, so that a
    fault is handled on the stack of the thread that took it, as it always is on the
    plugin's other threads. Then a fault whose handler never ran (no traceback) is one
    the kernel could not deliver: no room was left on that stack, it ran out. Whether
    it took (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    disable = _StackT(None, SS_DISABLE, 0)
    return bool(pidns._libc().sigaltstack(ctypes.byref(disable), None) == 0)


def blas_threads(environ: Mapping[str, str]) -> int:
    """How many threads the BLAS libraries may start in this worker, as they will read
    it from ``environ`` (``limits.BLAS_THREAD_VARIABLES``, the largest given; none
    given: one per CPU, as they do), at most one per CPU it may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = max(cpus or 1, 1)
    given = [environ.get(name, "").strip() for name in BLAS_THREAD_VARIABLES]
    counts = [int(value) for value in given if value.isdigit() and int(value) > 0]
    return min(max(counts), cpus) if counts else cpus


def held_kb() -> int:
    """What this process holds as the host counts it: its resident anonymous and shared
    memory (RssAnon + RssShmem), in KiB; the whole RSS where the kernel does not say."""
    anon, shmem = _status_kb(b"RssAnon:"), _status_kb(b"RssShmem:")
    return anon + shmem if anon else _linux.resident_kb()


def _status_kb(key: bytes) -> int:
    """A "kB" figure of /proc/self/status; 0 where unknown."""
    try:
        data = _linux.read_file("/proc/self/status", 8192)
        at = data.index(key) + len(key)
        return int(data[at : data.index(b"kB", at)])
    except (OSError, ValueError):
        return 0
