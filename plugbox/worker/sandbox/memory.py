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
from dataclasses import dataclass

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
#: the most private memory a plugin may reserve while it loads, without writing to it,
#: and not have counted against ``memory_mb``: the buffers of the BLAS libraries it
#: imports (OpenBLAS maps 32 MiB per thread, numpy's and scipy's each), the stacks of
#: the threads they start (``credit_reservations``)
LOAD_CREDIT_MAX = 256 << 20
#: the least that is credited: below it, what a load left unwritten is the slack of its
#: heap, which the plugin's next allocations fill
LOAD_CREDIT_MIN = 16 << 20
#: the least stack a thread or the process is given, whatever the limits say
MIN_STACK = 256 << 10
SS_DISABLE = 2
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") >> 10 if hasattr(os, "sysconf") else 4


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


@dataclass
class MemoryCaps:
    """The caps a worker set on its memory, in KiB, and what it had as it set them."""

    #: the private memory cap (RLIMIT_DATA) and the address space's (RLIMIT_AS)
    data_kb: int
    address_space_kb: int
    #: as it set them: its data and stack (statm's "data"), its resident anonymous
    #: memory, and what it held as the host counts it (``held_kb``)
    data_start_kb: int
    anon_start_kb: int
    held_start_kb: int


def limit_memory(memory_mb: int) -> tuple[mmap.mmap, MemoryCaps]:
    """Cap this process's private memory (RLIMIT_DATA: heap, arrays, thread stacks) at
    what it holds now plus ``memory_mb``, plus what BLAS threads beyond the first reserve
    (``blas_threads``); the hard limit is ``LOAD_CREDIT_MAX`` higher until the plugin
    has loaded (``credit_reservations``). Its address space is capped 1 GiB above that
    (RLIMIT_AS). Returns the reserve held back under the cap, released for the error
    reply of a plugin that used up the rest (the caller holds the only reference), and
    the caps."""
    # private, so that releasing it makes room under RLIMIT_DATA as well
    reserve = mmap.mmap(-1, RESERVE_BYTES, flags=mmap.MAP_PRIVATE)
    data_kb, stack_kb, space_kb, anon_kb, shmem_kb = _status_kb(
        b"VmData:", b"VmStk:", b"VmSize:", b"RssAnon:", b"RssShmem:"
    )
    if not space_kb:  # no /proc (not Linux): the address space as before, from statm
        space_kb = _linux.address_space_kb()
    blas = (blas_threads(os.environ) - 1) * BLAS_THREAD_RESERVE * BLAS_LIBRARIES
    room = (memory_mb << 20) + blas
    cap = (data_kb << 10) + room
    if data_kb:  # (what it holds unknown: no cap below it)
        set_limit(resource.RLIMIT_DATA, cap, cap + LOAD_CREDIT_MAX)
    space = (space_kb << 10) + room + LOAD_CREDIT_MAX + ADDRESS_SPACE_SLACK
    set_limit(resource.RLIMIT_AS, space, space)
    held = anon_kb + shmem_kb if anon_kb else _linux.resident_kb()
    return reserve, MemoryCaps(cap >> 10, space >> 10, data_kb + stack_kb, anon_kb, held)


def credit_reservations(caps: MemoryCaps) -> None:
    """Once the plugin has loaded, before anything is asked of it: raise the private
    memory cap by what the load reserved and left unwritten (the growth of its data and
    stack less that of its resident anonymous memory), at most ``LOAD_CREDIT_MAX``, if
    that is ``LOAD_CREDIT_MIN`` or more; then fix both caps (soft and hard limit). So
    the buffers and stacks of the libraries a plugin imports as it loads do not count
    against ``memory_mb``. Read from /proc/self/statm (its resident less shared pages
    are RssAnon), which costs a fifth of /proc/self/status."""
    if not caps.data_start_kb:
        return  # (no cap on private memory was set)
    try:
        fields = _linux.read_file("/proc/self/statm").split()
        resident, shared, data = (int(fields[i]) * _PAGE_KB for i in (1, 2, 5))
    except (OSError, ValueError, IndexError):
        return
    grown = data - caps.data_start_kb
    reserved = (grown - (resident - shared - caps.anon_start_kb)) << 10
    credit = min(reserved, LOAD_CREDIT_MAX) if reserved >= LOAD_CREDIT_MIN else 0
    cap = (caps.data_kb << 10) + credit
    space = (caps.address_space_kb << 10) - (LOAD_CREDIT_MAX - credit)
    try:
        set_limit(resource.RLIMIT_DATA, cap, cap)
        set_limit(resource.RLIMIT_AS, space, space)
    except (ValueError, OSError):
        return
    caps.data_kb, caps.address_space_kb = cap >> 10, space >> 10


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
    anon, shmem = _status_kb(b"RssAnon:", b"RssShmem:")
    return anon + shmem if anon else _linux.resident_kb()


def _status_kb(*keys: bytes) -> list[int]:
    """ "kB" figures of /proc/self/status, in one read; 0 for each where unknown."""
    try:
        data = _linux.read_file("/proc/self/status", 8192)
    except OSError:
        return [0] * len(keys)
    found = []
    for key in keys:
        try:
            at = data.index(key) + len(key)
            found.append(int(data[at : data.index(b"kB", at)]))
        except ValueError:
            found.append(0)
    return found
