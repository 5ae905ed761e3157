"""Naming the true cause of a worker's death (pure: no I/O, tested with plain values).

The order of evidence: what the host itself killed the worker for, when its SIGKILL
is what ended it (a worker already dying of SIGXCPU or SIGSEGV as the host's deadline
passed is reported by its own signal); SIGXCPU (CPU
seconds); signs of memory exhaustion (a MemoryError or ENOMEM the worker reported,
its out-of-memory exit status, a kill by SIGKILL or a crash with its peak RSS at the
cap); then the signal or exit code itself.
"""

from __future__ import annotations

import signal as _signal
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
        return death.kill_reason, death.kill_detail
    if sig == _signal.SIGXCPU:
        limit = f" of {death.cpu_seconds:g} s per call" if death.cpu_seconds else ""
        return "cpu", (
            f"used up its CPU budget{limit} (SIGXCPU after {death.cpu_time:.2f} s of CPU in all)"
        )
    if death.memory_hint is not None:
        return "memory", f"ran out of memory ({death.memory_hint}) and then died ({_how(death)})"
    if death.exit_code == EXIT_MEMORY:
        return "memory", "ran out of memory in the worker itself"
    if memory_at_cap(death):
        return "memory", (
            f"died ({_how(death)}) with its peak RSS of "
            f"{death.peak_rss_kb // 1024} MB at its {death.memory_mb} MB cap"
        )
    if death.lost:
        return "crashed", "died with its zygote; no exit status is known"
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
