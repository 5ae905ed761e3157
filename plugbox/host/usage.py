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


async def watch_usage(
    end: DeathWatch, calls: Calls, limits: Limits, loaded: anyio.Event, dead: anyio.Event
) -> None:
    """Sample the memory and CPU time of the worker ``end`` watches, every
    ``limits.rss_check_interval`` from ``loaded`` (its Handshake, load error or
    death) until ``dead``; kill it past its caps.

    Memory: what the worker holds (``MemoryCount``: the RSS of its processes, their
    memfds, its private tmpfs) beyond the RSS it started with must stay within
    ``memory_mb``. CPU: a backstop
    for a plugin that ignores SIGXCPU; CPU burned with calls in flight and none
    answered must stay within ``cpu_seconds`` plus one second (the kernel's SIGXCPU
    comes first for any plugin that lets it).
    """
    await loaded.wait()  # (died: then the loop ends at once)
    # behind the task that waited on the same Handshake to make a call (a restart):
    # reading /proc here first would hold that call back by as long as the read
    await anyio.lowlevel.checkpoint()
    baseline = end.baseline_rss_kb
    memory_mb, cpu_seconds = limits.memory_mb, limits.cpu_seconds
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
        if not in_flight or calls.answered != answered:
            cpu_mark, answered = (cpu if in_flight else None), calls.answered
        elif cpu_mark is None:
            cpu_mark = cpu
        elif cpu_seconds and cpu - cpu_mark > cpu_seconds + 1.0:
            end.kill(
                "cpu",
                f"ignored SIGXCPU and used {cpu - cpu_mark:.1f} s of CPU "
                f"in a call, over its {cpu_seconds:g} s budget",
            )
            return
        with anyio.move_on_after(limits.rss_check_interval):
            await dead.wait()
