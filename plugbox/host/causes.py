"""Naming the true cause of a worker's death (pure: no I/O, tested with plain values).

The order of evidence: what the host itself killed the worker for, when its SIGKILL
is what ended it (a worker already dying of SIGXCPU or SIGSEGV as the host's deadline
passed is reported by its own signal); SIGXCPU (CPU seconds); signs of memory
exhaustion (a MemoryError the worker reported, its out-of-memory exit status, a native
library's own word on stderr that it could not allocate, a crash with its peak RSS at
the cap); then the signal or exit code itself, a SIGSEGV whose fault handler never ran
being a stack that ran out.
"""

from __future__ import annotations

import re
import signal as _signal
from collections.abc import Iterable
from dataclasses import dataclass

from ..protocol import EXIT_CHANNEL_LOST, EXIT_INTERNAL, EXIT_MEMORY
from ..reports import Cause, signal_name

#: share of the memory budget above the worker's baseline RSS that counts as "at the cap".
MEMORY_CAP_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Death:
    """Everything known about how a worker ended."""

    kill_reason: Cause | None = None
    kill_detail: str = ""
    exit_code: int | None = None
    signal: int | None = None
    peak_rss_kb: int = 0
    cpu_time: float = 0.0
    memory_mb: int | None = None
    baseline_rss_kb: int = 0
    cpu_seconds: float | None = None
    memory_hint: str | None = None
    lost: bool = False
    #: the main thread's stack limit and the stack of the threads the plugin starts
    stack_kb: int | None = None
    thread_stack_kb: int | None = None
    #: whether the plugin's fault handler (faulthandler) wrote anything before the end,
    #: as its stderr shows; None where that is not known
    fault_handled: bool | None = None
    #: a native library's line on stderr saying it could not get memory or threads
    native_memory: str | None = None


def memory_at_cap(death: Death) -> bool:
    """Whether the worker's peak RSS reached most of its memory budget."""
    if not death.memory_mb or not death.peak_rss_kb:
        return False
    budget_kb = death.memory_mb * 1024
    return death.peak_rss_kb - death.baseline_rss_kb >= MEMORY_CAP_SHARE * budget_kb


def classify(death: Death) -> tuple[Cause, str]:
    """(cause, detail) for a dead worker."""
    sig = death.signal
    if death.kill_reason is not None and (sig == _signal.SIGKILL or death.lost):
        if death.kill_reason == "memory" and death.kill_detail.startswith("ran out of memory"):
            # killed after the MemoryError the worker sent: the limit it hit, the figures
            return "memory", f"{death.kill_detail}; {allocation_failed(death)}"
        return death.kill_reason, death.kill_detail
    if sig == _signal.SIGXCPU:
        limit = f" of {death.cpu_seconds:g} s per call" if death.cpu_seconds else ""
        return "cpu", (
            f"used up its CPU budget{limit} (SIGXCPU after {death.cpu_time:.2f} s of CPU in all)"
        )
    if death.memory_hint is not None:
        return "memory", (
            f"ran out of memory ({death.memory_hint}) and then died ({_how(death)}); "
            f"{allocation_failed(death)}"
        )
    if death.exit_code == EXIT_MEMORY:
        return "memory", f"ran out of memory in the worker itself; {memory_figures(death)}"
    if death.native_memory is not None and not death.lost:
        threads = (
            "pthread_create" in death.native_memory or "Thread creation" in death.native_memory
        )
        what = (
            "start a thread (no memory for its stack, or Limits.threads reached)"
            if threads
            else "get memory"
        )
        return "memory", (
            f"died ({_how(death)}) after a native library could not {what}: "
            f"{death.native_memory}; {memory_figures(death)}, or lower Limits(blas_threads=...)"
        )
    if memory_at_cap(death):
        return "memory", (
            f"died ({_how(death)}) with its peak RSS of "
            f"{death.peak_rss_kb // 1024} MB at its {death.memory_mb} MB cap: "
            f"raise Limits(memory_mb=...)"
        )
    if death.lost:
        return "crashed", "died with its zygote; no exit status is known"
    if sig == _signal.SIGSEGV and death.fault_handled is False:
        return "crashed", f"killed by SIGSEGV: {stack_ran_out(death)}"
    if sig is not None:
        return "crashed", f"killed by {signal_name(sig)}"
    if death.exit_code == EXIT_CHANNEL_LOST:  # the worker's own word: its channel broke
        return "protocol", "the worker closed its channel and exited"
    if death.exit_code == EXIT_INTERNAL:
        return "crashed", "the worker failed in plugbox's own code (exit status 70; see stderr)"
    return "crashed", f"exited with status {death.exit_code}"


def _how(death: Death) -> str:
    if death.signal is not None:
        return f"killed by {signal_name(death.signal)}"
    if death.exit_code is not None:
        return f"exit status {death.exit_code}"
    return "status unknown"


def is_memory_error(exc_type: str, chain: list[str]) -> bool:
    """Whether a plugin's exception is, or was caused by, running out of memory."""
    return exc_type == "MemoryError" or "MemoryError" in chain


def memory_figures(death: Death) -> str:
    """The figure a memory death reached, its cap and the setting that raises it."""
    peak = f"peak RSS {death.peak_rss_kb // 1024} MB"
    if not death.memory_mb:
        return f"{peak}, with no memory_mb cap"
    base = death.baseline_rss_kb // 1024
    since = f" above the {base} MB it started with" if base else ""
    return f"{peak}, cap memory_mb={death.memory_mb}{since}: raise Limits(memory_mb=...)"


def allocation_failed(death: Death) -> str:
    """What a MemoryError in the worker means: an allocation would have taken its
    private memory past the cap (RLIMIT_DATA: ``memory_mb`` above start-up, besides what
    its libraries reserved as it loaded), with the figures and the setting."""
    if not death.memory_mb:
        return memory_figures(death)
    return (
        f"stopped by its cap on private memory (memory_mb={death.memory_mb} above "
        f"start-up; peak RSS {death.peak_rss_kb // 1024} MB): raise Limits(memory_mb=...)"
    )


def stack_ran_out(death: Death) -> str:
    """Why a SIGSEGV whose fault handler never ran is a stack that ran out, and what
    to raise."""
    main = f" ({death.stack_kb} KiB)" if death.stack_kb else ""
    threads = f" ({death.thread_stack_kb} KiB)" if death.thread_stack_kb else ""
    return (
        "its stack ran out (the kernel found no room left on it for the fault handler); "
        f"Limits(stack_kb=...) raises the main thread's{main}, "
        f"Limits(thread_stack_kb=...) that of the threads it starts{threads}"
    )


#: lines Python's faulthandler writes when a fatal signal reaches its handler
_FAULT_HANDLER_LINE = re.compile(
    r"Fatal Python error: |Current thread 0x|Thread 0x|Extension modules: |"
    r"  <no Python frame>|  File \".*\", line \d+ in "
)
#: how native libraries say on stderr that they could not get memory or threads
NATIVE_MEMORY_FAILURES = (
    "OpenBLAS error: Memory allocation",
    "OpenBLAS blas_thread_init: pthread_create failed",
    "OpenBLAS : Program is Terminated. Because you tried to allocate too many memory",
    "libgomp: Thread creation failed",
    "libgomp: Out of memory",
    "OMP: Error #34: System unable to allocate",
    "OMP: Error #178: Function pthread_create failed",
)


def fault_handled(stderr_tail: Iterable[str]) -> bool:
    """Whether the last lines of a worker's stderr hold what faulthandler writes as a
    fatal signal reaches it (its handler ran)."""
    return any(_FAULT_HANDLER_LINE.match(line) for line in stderr_tail)


def native_memory_failure(stderr_tail: Iterable[str]) -> str | None:
    """The last line of a worker's stderr in which a native library (OpenBLAS, OpenMP)
    says it could not allocate memory or start a thread; None if there is none."""
    found = None
    for line in stderr_tail:
        if line.startswith(NATIVE_MEMORY_FAILURES):
            found = line[:200]
    return found
