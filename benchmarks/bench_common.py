"""What every benchmark shares: the payload, the clock, percentiles, result records."""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.join(HERE, "plugins", "bench_plugin.py")
ECHO_CHILD = os.path.join(HERE, "bench_echo_child.py")

#: the one small call's arguments: a dict of a few strings and ints, ~170 bytes as msgpack.
PAYLOAD: dict[str, Any] = {
    "request_id": "req-000123-7f3a9c",
    "user": "alice@example.com",
    "model": "small-model-v2",
    "prompt": "Summarise the paragraph below in one sentence.",
    "max_tokens": 256,
    "attempt": 1,
    "tags": ["chat", "eu-west"],
}
PAYLOAD_BYTES = len(msgpack.packb(PAYLOAD, use_bin_type=True))

now_ns = time.perf_counter_ns


def mono_ns() -> int:
    """CLOCK_MONOTONIC in ns: one clock for every process on a Linux machine."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Missing(Exception):
    """A baseline's package is not installed (the table says so)."""


@dataclass(frozen=True)
class Scale:
    """How much work a run does (full or ``--quick``)."""

    name: str
    blocks: int  # latency: each method runs this many times, in rotated order
    calls: int  # latency: timed calls per block
    warmup: int  # latency: untimed calls before each block
    tput_calls: int  # throughput: calls per round
    tput_rounds: int
    start_rounds: int  # start: warm starts (cold starts: a third of it)
    respawn_rounds: int
    fanout_plugins: int
    fanout_calls: int


FULL = Scale(
    "full",
    blocks=4,
    calls=3000,
    warmup=300,
    tput_calls=20_000,
    tput_rounds=5,
    start_rounds=40,
    respawn_rounds=40,
    fanout_plugins=50,
    fanout_calls=500,
)
QUICK = Scale(
    "quick",
    blocks=2,
    calls=600,
    warmup=100,
    tput_calls=4_000,
    tput_rounds=2,
    start_rounds=8,
    respawn_rounds=10,
    fanout_plugins=50,
    fanout_calls=100,
)


# ------------------------------------------------------------------ CPU placement
#: the CPUs every child process is moved to (set by ``set_pinning``; inherited by helper
#: processes through the environment).
CHILD_CPUS_ENV = "BENCH_CHILD_CPUS"
ALL_CPUS_ENV = "BENCH_ALL_CPUS"


def set_pinning(mode: str) -> str:
    """Place this process and, through ``pin_children``, every process it starts.

    ``spread``: this process on the first usable CPU, children on the others (two
    processes talking cross CPUs, as on an idle machine); ``same``: everything on the
    first CPU; ``none``: the scheduler decides (round trips then swing by about 3x on
    small VMs, as a pair lands on one CPU or two). Returns a description.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "none":
        os.environ.pop(CHILD_CPUS_ENV, None)
        return f"not pinned (CPUs {cpus})"
    os.environ[ALL_CPUS_ENV] = ",".join(map(str, cpus))
    if mode == "spread" and len(cpus) < 2:
        mode = "same"
    host = {cpus[0]}
    children = set(cpus[1:]) if mode == "spread" else host
    os.sched_setaffinity(0, host)
    os.environ[CHILD_CPUS_ENV] = ",".join(map(str, sorted(children)))
    return (
        f"{mode}: this process on CPU {cpus[0]}, child processes on CPU "
        f"{','.join(map(str, sorted(children)))}"
    )


def pin_children(anywhere: bool = False) -> None:
    """Move every descendant of this process to the child CPUs (if pinning is on), or
    with ``anywhere`` let them run on every CPU (many workers sharing the machine)."""
    spec = os.environ.get(ALL_CPUS_ENV if anywhere else CHILD_CPUS_ENV)
    if not spec or not os.environ.get(CHILD_CPUS_ENV):
        return
    import psutil

    cpus = [int(c) for c in spec.split(",")]
    for child in psutil.Process().children(recursive=True):
        try:
            child.cpu_affinity(cpus)
        except psutil.Error:
            pass


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: list[float]) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


@dataclass
class Figure:
    """One measured figure: samples in µs (latency, times) or one value (rates, sizes)."""

    key: str
    label: str
    unit: str = "µs"
    samples: list[float] = field(default_factory=list)
    value: float | None = None  # for figures that are not sample sets
    status: str = "ok"  # "ok", "missing: ...", "error: ..."
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and (bool(self.samples) or self.value is not None)

    @property
    def p50(self) -> float:
        if self.value is not None:
            return self.value
        return median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(sorted(self.samples), 99) if self.samples else math.nan

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "unit": self.unit, "status": self.status}
        if self.ok:
            if self.samples:
                s = sorted(self.samples)
                out.update(
                    p50=round(self.p50, 3),
                    p99=round(percentile(s, 99), 3),
                    mean=round(sum(s) / len(s), 3),
                    min=round(s[0], 3),
                    max=round(s[-1], 3),
                    n=len(s),
                )
            else:
                out["value"] = round(self.p50, 3)
        if self.note:
            out["note"] = self.note
        if self.extra:
            out.update(self.extra)
        return out


def attempt(fig: Figure, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` for ``fig``; a missing package or an error is recorded, not raised."""
    try:
        return fn()
    except Missing as exc:
        fig.status = f"missing: {exc}"
    except ImportError as exc:
        fig.status = f"missing: {exc.name or exc}"
    except Exception as exc:
        leaf = _leaf(exc)
        where = ""
        tb = leaf.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        text = f": {leaf}" if str(leaf) else ""
        fig.status = f"error: {type(leaf).__name__}{text}{where}"[:160]
        traceback.print_exc()
    return None


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def timed_loop(call: Callable[[], Any], warmup: int, n: int) -> list[float]:
    """Time ``n`` calls of ``call`` one by one (µs), after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    out = [0.0] * n
    clock = now_ns
    for i in range(n):
        t0 = clock()
        call()
        out[i] = (clock() - t0) / 1000
    return out


def ratio(a: float, b: float) -> float:
    """a / b, NaN when either is missing or zero."""
    if not (a and b) or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
