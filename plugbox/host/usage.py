"""The RSS and CPU watch: a worker past its memory or CPU cap is killed.

Memory use has no event to wait for, so this one watch samples (deaths are still
noticed by events only).
"""

from __future__ import annotations

from typing import Protocol

import anyio
import anyio.lowlevel

from ..limits import Limits
from ..protocol import Confined
from . import _linux
from .death import DeathWatch
from .memory import Held, MemoryCount, Uncountable

#: how far past a CPU budget the watch lets a worker go before it kills it: the kernel's
#: SIGXCPU (whole seconds) comes first for any plugin that lets it
CPU_SLACK = 1.0


class Calls(Protocol):
    """What the usage watch reads of a worker's calls (``WorkerProcess``)."""

    @property
    def alive(self) -> bool: ...

    @property
    def calls_in_flight(self) -> int: ...

    @property
    def answered(self) -> int: ...

    @property
    def confined(self) -> Confined | None: ...

    @property
    def calls(self) -> int: ...


class IdleCPU:
    """The worker's CPU between calls, as the host samples it: a budget of
    ``cpu_seconds`` that refills at ``share`` CPU-seconds per second and is full again
    after each call (the worker's RLIMIT_CPU follows the same rule). Only stretches
    between two samples with no call in flight at either and none sent in between
    count, so no call's CPU is taken for idle CPU."""

    def __init__(self, budget: float, share: float) -> None:
        self.budget, self.share = budget, share
        self.debt = self.used = self.wall = 0.0
        self.last: tuple[float, float] | None = None  # (cpu, time) at the last sample
        self.calls = -1  # calls sent as of the last sample; -1: a call was in flight

    def over(self, cpu: float, now: float, in_flight: int, sent: int) -> bool:
        """Account one sample (CPU seconds at time ``now``); whether the worker has
        gone ``CPU_SLACK`` past its budget in the current stretch between calls."""
        last, quiet = self.last, not in_flight and sent == self.calls
        self.last, self.calls = (cpu, now), (-1 if in_flight else sent)
        if not quiet or last is None:
            self.debt = self.used = self.wall = 0.0  # a call: the budget is full again
            return False
        spent, elapsed = cpu - last[0], now - last[1]
        self.used, self.wall = self.used + spent, self.wall + elapsed
        self.debt = max(0.0, self.debt + spent - self.share * elapsed)
        return self.debt > self.budget + CPU_SLACK

    def detail(self) -> str:
        """What the worker used with no call in flight, and by how much it went over
        which budget (the failure report's detail)."""
        return (
            f"used {self.used:.1f} s of CPU in {self.wall:.1f} s with no call in flight, "
            f"{self.debt - self.budget:.1f} s over its budget ({self.budget:g} s, "
            f"refilled at {self.share:.0%} of one CPU)"
        )


async def watch_usage(
    end: DeathWatch, calls: Calls, limits: Limits, loaded: anyio.Event, dead: anyio.Event
) -> None:
    """Sample the memory and CPU time of the worker ``end`` watches, every
    ``limits.rss_check_interval`` from ``loaded`` (its Handshake, load error or
    death) until ``dead``; kill it past its caps.

    Memory: what the worker holds (``MemoryCount``: the RSS of its processes, their
    memfds, its private tmpfs) beyond the RSS it started with must stay within
    ``memory_mb``. CPU, a backstop for a plugin that ignores SIGXCPU or raises its own
    soft limit: CPU burned with calls in flight and none answered must stay within
    ``cpu_seconds`` plus one second, and CPU burned between calls within the budget
    ``IdleCPU`` keeps, plus one second.
    """
    await loaded.wait()  # (died: then the loop ends at once)
    # the first sample one interval after the load: a restart's first call comes
    # right behind the Handshake, and reading /proc then would hold its reply back
    # (the address-space cap stops what a plugin allocates faster than that)
    with anyio.move_on_after(limits.rss_check_interval):
        await dead.wait()
    if dead.is_set():
        return  # (before the set-up below: a death's report waits on this task's turn)
    baseline = end.baseline_rss_kb
    memory_mb, cpu_seconds = limits.memory_mb, limits.cpu_seconds
    share = limits.idle_cpu_share
    idle = IdleCPU(cpu_seconds, share) if cpu_seconds and share else None
    cpu_mark: float | None = None
    answered = calls.answered
    confined = calls.confined
    memory = MemoryCount(end, confined.layers if confined is not None else {})
    while calls.alive:
        sample = _linux.usage(end.pid)
        if sample is None:
            return
        rss, cpu = sample
        end.peak_seen_kb = max(end.peak_seen_kb, rss)
        if memory_mb:
            try:
                held: Held | None = memory.count(rss)
            except Uncountable as exc:
                end.kill("memory", str(exc))
                return
            except OSError:
                held = None  # a /proc read failed otherwise: the next sample counts
            if held is not None and held.total_kb - baseline > memory_mb * 1024:
                end.kill("memory", held.over(memory_mb, baseline))
                return
        in_flight = calls.calls_in_flight
        if idle is not None and idle.over(cpu, anyio.current_time(), in_flight, calls.calls):
            end.kill("cpu", idle.detail())
            return
        if not in_flight or calls.answered != answered:
            cpu_mark, answered = (cpu if in_flight else None), calls.answered
        elif cpu_mark is None:
            cpu_mark = cpu
        elif cpu_seconds and cpu - cpu_mark > cpu_seconds + CPU_SLACK:
            end.kill(
                "cpu",
                f"ignored SIGXCPU and used {cpu - cpu_mark:.1f} s of CPU "
                f"in a call, over its {cpu_seconds:g} s budget",
            )
            return
        with anyio.move_on_after(limits.rss_check_interval):
            await dead.wait()
