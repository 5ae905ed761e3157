"""The soak: a healthy plugin serves a steady stream of calls while, in the same host,
every fault of ``plugbox.testing.faults`` is injected again and again.

    python benchmarks/soak.py [--crashes 1000] [--min-per-kind 10] [--max-storm 240]
                              [--calm 10] [--rate 200] [--tasks 8] [--only FAULT...]
                              [--launcher zygote|subprocess] [--backend asyncio|trio]
                              [--write docs/RELIABILITY.md] [--tracemalloc N]

One ``PluginHost`` holds the healthy plugin (``benchmarks/soak_healthy.py``, an async
hook answering its argument) and one plugin per ``FAULTS`` entry, each on a hook of its
own, under the limits and sandbox the table gives (with quarantine pushed out of
reach, so a fault is struck again and again). The run:

1. warm-up: the healthy stream starts, every fault is struck once, then cheap faults
   until the host's report buffer (``--max-reports``) is full; the host's RSS and fd
   count are taken (start);
2. calm: ``--calm`` seconds of the healthy stream alone (its latency without a storm);
3. storm: every fault kind strikes back to back in its own task (the two CPU burners
   taking turns), until ``--crashes`` worker-killing faults have been injected and
   every kind has struck ``--min-per-kind`` times (or ``--max-storm`` seconds pass: a
   missed target); then every fault is struck once more, in the warm-up's order, and
   again where a worker is not in the state (alive or not) the warm-up left it in;
   RSS and fds are taken again (end);
4. after: ``--calm`` seconds of the healthy stream alone again;
5. the host is closed; then no descendant of this process may be left, nor a process
   in the session of any worker seen, nor an fd opened since before the host.

Each strike's outcome is judged by ``plugbox.testing.assert_report`` against the
fault's entry (cause, and the signal, exit code or exception type it implies; see
``judge``). RSS is taken as it is and after ``gc.collect()`` and ``malloc_trim(0)``
(the memory in use, which the target is on). The table goes to stdout, progress to
stderr; the exit status is 1 when a target is missed. ``--write PATH`` writes the
figures and the exact command as Markdown, keeping a hand-written ``## Notes``
section at the end of the file.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import shlex
import sys
import time
import tracemalloc
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import psutil
from bench_common import HERE, PAYLOAD, percentile
from bench_plugbox import quiet_logging
from run import machine

from plugbox import Limits, PluginHost
from plugbox.errors import PluginFailure
from plugbox.reports import FailureReport
from plugbox.specs import HookSet, HookSpec
from plugbox.testing.faults import FAULTS, Fault
from plugbox.testing.helpers import assert_report

HEALTHY = os.path.join(HERE, "soak_healthy.py")
#: causes after which the worker is gone: a crash, in this soak's count.
KILLING = frozenset({"crashed", "timeout", "memory", "cpu", "protocol"})
#: faults that burn CPU until the kernel's SIGXCPU: struck one at a time, so that two of
#: them do not share the machine's cores and miss their budget's second by the deadline.
CPU_BOUND = ("cpu_python", "cpu_c")
#: faults that fail fast and leave their worker alive: they fill the report buffer.
FILLERS = ("raise", "unserializable", "fork_denied", "fd_exhaustion", "recursion")
MIB = 1 << 20


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def hook_of(fault: Fault) -> str:
    return f"strike_{fault.name}"


def plugin_of(fault: Fault) -> str:
    return f"fault-{fault.name}"


HOOKS = HookSet(
    "soak",
    [
        HookSpec(
            name="answer",
            args=("payload",),
            mode="first_result",
            on_failure="raise",
            doc="the healthy plugin's hook: returns its argument",
        ),
        *(
            HookSpec(
                name=hook_of(f),
                args=(),
                mode="first_result",
                on_failure="raise",
                doc=f"one fault plugin's hook: {f.name}",
            )
            for f in FAULTS.values()
        ),
    ],
)


# ====================================================================== judging
def deadline_first(fault: Fault, report: FailureReport) -> bool:
    """Whether a CPU fault's ``timeout`` is the truth: the deadline killed the worker
    before it had used its CPU budget (under a storm a spinner gets only a share of a
    core). The budget is the RLIMIT_CPU soft limit the worker sets before a call:
    ``ceil(used + cpu_seconds)``, less than ``cpu_seconds + 1`` past a fresh start."""
    budget = fault.limits.cpu_seconds
    return (
        fault.cause == "cpu"
        and report.cause == "timeout"
        and report.killed
        and budget is not None
        and report.cpu_time < budget + 1
    )


def judge(fault: Fault, report: FailureReport | None, error: str | None) -> str | None:
    """None when the strike was reported as the fault's entry says, else what was wrong.

    The entry's ``cause`` (or ``also``) is expected, with the fields it implies; a cause
    the entry gives for other circumstances (``other_causes``) counts only where the
    report itself shows those circumstances (``deadline_first``).
    """
    if error is not None:
        return error
    if fault.cause is None:
        return None if report is None else f"expected no failure, got {report.summary()}"
    if report is None:
        return f"expected {fault.cause}, but the call succeeded"
    if deadline_first(fault, report):
        try:
            assert_report(report, cause="timeout", plugin=plugin_of(fault), hook=hook_of(fault))
        except AssertionError as exc:
            return f"{exc}".splitlines()[0][:300] or report.summary()
        return None
    exact = report.cause == fault.cause
    try:
        assert_report(
            report,
            cause=fault.causes,
            plugin=plugin_of(fault),
            hook=hook_of(fault),
            signal=fault.signal if exact else None,
            exit_code=fault.exit_code if exact else None,
            exc_type=fault.exc_type if exact else None,
        )
    except AssertionError as exc:
        return f"{exc}".splitlines()[0][:300] or report.summary()
    return None


@dataclass
class KindStats:
    """One fault kind's strikes."""

    fault: Fault
    struck: int = 0
    right: int = 0
    deadline_first: int = 0
    crashes: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    seconds: array[float] = field(default_factory=lambda: array("d"))
    pids: set[int] = field(default_factory=set)

    def note(self, report: FailureReport | None, error: str | None, seconds: float) -> None:
        self.struck += 1
        self.seconds.append(seconds)
        self.causes[report.cause if report is not None else ("error" if error else "none")] += 1
        if report is not None and report.cause in KILLING:
            self.crashes += 1
        if report is not None and report.pid:
            self.pids.add(report.pid)
        verdict = judge(self.fault, report, error)
        if verdict is None:
            self.right += 1
            if report is not None and deadline_first(self.fault, report):
                self.deadline_first += 1
        elif verdict in self.wrong or len(self.wrong) < 5:
            self.wrong[verdict] += 1


async def strike(host: PluginHost, stats: KindStats) -> None:
    """Call the fault's hook once and judge what the host reports."""
    report: FailureReport | None = None
    error: str | None = None
    t0 = time.perf_counter()
    try:
        await host.call(hook_of(stats.fault))
    except PluginFailure as exc:
        report = exc.report
    except Exception as exc:  # not a PluginFailure: never right
        error = f"{type(exc).__name__}: {exc}"[:300]
    stats.note(report, error, time.perf_counter() - t0)


# ====================================================================== the healthy stream
@dataclass
class Stream:
    """The healthy plugin's calls: latencies (µs) by phase, and failures."""

    phase: str = "warm-up"
    samples: dict[str, array[float]] = field(
        default_factory=lambda: defaultdict(lambda: array("d"))
    )
    made: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, phase: str, micros: float, failure: str | None) -> None:
        self.made += 1
        self.samples[phase].append(micros)
        if failure is not None:
            self.failed += 1
            if len(self.failures) < 10:
                self.failures.append(f"[{phase}] {failure}")


async def healthy_caller(
    host: PluginHost, stream: Stream, index: int, tasks: int, interval: float, stop: anyio.Event
) -> None:
    """One of ``tasks`` callers, each calling every ``interval`` seconds, staggered."""
    next_at = anyio.current_time() + interval * index / tasks
    while not stop.is_set():
        delay = next_at - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)
        phase = stream.phase
        failure: str | None = None
        t0 = time.perf_counter_ns()
        try:
            outcome = await host.call("answer", payload=PAYLOAD)
            if outcome.value != PAYLOAD:
                failure = f"wrong answer: {outcome.value!r}"[:200]
        except PluginFailure as exc:
            failure = exc.report.summary()[:300]
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"[:300]
        stream.record(phase, (time.perf_counter_ns() - t0) / 1000, failure)
        next_at = max(next_at + interval, anyio.current_time())


# ====================================================================== the host's footprint
@dataclass
class Footprint:
    """The host process's RSS (as it is, then after a full garbage collection and
    glibc's ``malloc_trim``, which hands freed heap pages back), fds and descendants."""

    rss: int
    trimmed: int
    fds: int
    descendants: int

    @classmethod
    def now(cls) -> Footprint:
        me = psutil.Process()
        rss = me.memory_info().rss
        gc.collect()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        return cls(
            rss=rss,
            trimmed=me.memory_info().rss,
            fds=me.num_fds(),
            descendants=len(me.children(recursive=True)),
        )


def open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:  # the listing's own fd
            continue
        fds.add(int(name))
    return fds


def leftovers(workers: set[int]) -> list[str]:
    """Descendants of this process, and members of any worker's session (what a worker
    forked and that left the tree), described."""
    me = psutil.Process()
    found: dict[int, str] = {}
    for child in me.children(recursive=True):
        found[child.pid] = "descendant"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            sid = os.getsid(pid)
        except OSError:
            continue
        # a session id is not reused while the session has a member: only processes of
        # a worker's own session match (the leader itself is covered as a descendant)
        if sid in workers and pid != sid:
            found.setdefault(pid, f"in the session of worker {sid}")
    out = []
    for pid, why in sorted(found.items()):
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE and why != "descendant":
                continue
            out.append(f"{pid} ({why}, {proc.status()}): {' '.join(proc.cmdline())[:100]}")
        except psutil.Error:
            continue
    return out


# ====================================================================== the run
@dataclass
class Results:
    args: argparse.Namespace
    kinds: dict[str, KindStats]
    stream: Stream
    start: Footprint | None = None
    end: Footprint | None = None
    peak_rss: int = 0
    #: (phase, seconds since the start, RSS) every half second
    rss_timeline: list[tuple[str, float, int]] = field(default_factory=list)
    peak_descendants: int = 0
    storm_seconds: float = 0.0
    storm_complete: bool = False
    left: list[str] = field(default_factory=list)
    fds_left: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    workers_seen: int = 0
    reports_kept: int = 0
    traced: tracemalloc.Snapshot | None = None
    growth: list[tracemalloc.StatisticDiff] = field(default_factory=list)


def fault_limits(fault: Fault) -> Limits:
    """The table's limits, with quarantine out of reach: the soak strikes each fault
    far more often than ``max_failures`` within ``failure_window``."""
    return replace(fault.limits, max_failures=1 << 30, failure_window=1.0)


async def soak(args: argparse.Namespace, faults: list[Fault]) -> Results:
    res = Results(args=args, kinds={f.name: KindStats(f) for f in faults}, stream=Stream())
    stream = res.stream
    fds_before = open_fds()
    began = time.monotonic()
    async with PluginHost(HOOKS, launcher=args.launcher, max_reports=args.max_reports) as host:
        log(f"adding the healthy plugin and {len(faults)} fault plugins ({args.launcher})")
        await host.add(HEALTHY)
        for fault in faults:
            await fault.add_to(
                host,
                hooks=[hook_of(fault)],
                on_failure="raise",
                limits=fault_limits(fault),
                name=plugin_of(fault),
            )
        stop_healthy = anyio.Event()
        stop_monitor = anyio.Event()

        async def monitor() -> None:
            me = psutil.Process()
            while not stop_monitor.is_set():
                rss = me.memory_info().rss
                res.peak_rss = max(res.peak_rss, rss)
                res.rss_timeline.append((stream.phase, time.monotonic() - began, rss))
                res.peak_descendants = max(res.peak_descendants, len(me.children(recursive=True)))
                with anyio.move_on_after(0.5):
                    await stop_monitor.wait()

        async def round_of_strikes() -> None:
            for fault in faults:
                await strike(host, res.kinds[fault.name])

        async def fill_reports() -> None:
            """Strike cheap faults until the host's report buffer is full (or the
            plugin's own bounded history is), so it holds as many reports at the start
            as at the end."""
            cheap = [f for f in faults if f.name in FILLERS]

            async def filler(fault: Fault) -> None:
                while len(host.reports) < args.max_reports:
                    if host.failure_counts(plugin_of(fault)).dropped:
                        break
                    await strike(host, res.kinds[fault.name])

            async with anyio.create_task_group() as tg:
                for fault in cheap:
                    tg.start_soon(filler, fault)

        async with anyio.create_task_group() as healthy:
            interval = args.tasks / args.rate
            for i in range(args.tasks):
                healthy.start_soon(
                    healthy_caller, host, stream, i, args.tasks, interval, stop_healthy
                )
            healthy.start_soon(monitor)
            log(
                "warm-up: the healthy stream, every fault struck once, then cheap ones "
                f"until the host holds {args.max_reports} reports"
            )
            await round_of_strikes()
            await fill_reports()
            await anyio.sleep(args.warmup)
            res.start = Footprint.now()
            start_states = worker_states(host)
            if args.tracemalloc:
                tracemalloc.start(args.tracemalloc_depth)
                res.traced = tracemalloc.take_snapshot()
            log(f"calm: {args.calm:g} s of the healthy stream alone")
            stream.phase = "calm"
            await anyio.sleep(args.calm)
            log(
                f"storm: until {args.crashes} crashes and {args.min_per_kind} strikes of each "
                f"of {len(faults)} kinds (at most {args.max_storm:g} s)"
            )
            stream.phase = "storm"
            storm_began = time.monotonic()
            await run_storm(host, res, faults)
            await round_of_strikes()
            await restore_states(host, res, faults, start_states)
            res.storm_seconds = time.monotonic() - storm_began
            res.end = Footprint.now()
            if res.traced is not None:
                res.growth = tracemalloc.take_snapshot().compare_to(res.traced, "traceback")
                tracemalloc.stop()
            log(f"after: {args.calm:g} s of the healthy stream alone")
            stream.phase = "after"
            await anyio.sleep(args.calm)
            stop_healthy.set()
            stop_monitor.set()
        res.reports_kept = len(host.reports)
        workers = {p.pid for p in host.plugins if p.pid}
    for stats in res.kinds.values():
        workers |= stats.pids
    res.workers_seen = len(workers)
    log("host closed: looking for leftovers")
    res.left = leftovers(workers)
    res.fds_left = [f"{fd} -> {_readlink(fd)}" for fd in sorted(open_fds() - fds_before)]
    res.elapsed = time.monotonic() - began
    return res


def worker_states(host: PluginHost) -> dict[str, str]:
    return {p.name: p.state for p in host.plugins}


async def restore_states(
    host: PluginHost, res: Results, faults: list[Fault], wanted: dict[str, str]
) -> None:
    """Strike again each fault whose worker is not in the state the warm-up left it in
    (alive, or dead awaiting a restart), so the host holds the same workers (and fds)
    at the end as at the start: a fault that usually leaves its worker alive (raised)
    may have died on its last strike, and a strike restarts it."""
    for _ in range(5):
        now = worker_states(host)
        differ = [f for f in faults if now[plugin_of(f)] != wanted[plugin_of(f)]]
        if not differ:
            return
        for fault in differ:
            await strike(host, res.kinds[fault.name])
    log(f"could not restore the warm-up's workers: {worker_states(host)} vs {wanted}")


async def run_storm(host: PluginHost, res: Results, faults: list[Fault]) -> None:
    args = res.args
    done = anyio.Event()
    cpu_lock = anyio.Lock()

    def enough() -> bool:
        crashes = sum(s.crashes for s in res.kinds.values())
        return crashes >= args.crashes and all(
            s.struck >= args.min_per_kind for s in res.kinds.values()
        )

    async def kind_loop(fault: Fault) -> None:
        stats = res.kinds[fault.name]
        while not done.is_set():
            if fault.name in CPU_BOUND:
                async with cpu_lock:
                    if not done.is_set():
                        await strike(host, stats)
            else:
                await strike(host, stats)
            if enough():
                done.set()

    async def progress() -> None:
        last = time.monotonic()
        while not done.is_set():
            with anyio.move_on_after(10):
                await done.wait()
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                struck = sum(s.struck for s in res.kinds.values())
                crashes = sum(s.crashes for s in res.kinds.values())
                slowest = min(res.kinds.values(), key=lambda s: s.struck)
                log(
                    f"  {struck} strikes, {crashes} crashes; fewest: {slowest.fault.name} "
                    f"({slowest.struck}); healthy calls {res.stream.made}, "
                    f"failed {res.stream.failed}"
                )

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        for fault in faults:
            tg.start_soon(kind_loop, fault)
        tg.start_soon(progress)
        with anyio.move_on_after(args.max_storm):
            await done.wait()
        done.set()
    res.storm_complete = enough()
    log(f"storm over after {time.monotonic() - began:.0f} s")


def _readlink(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


# ====================================================================== the figures
@dataclass
class Row:
    figure: str
    value: str
    target: str
    met: bool | None  # None: no target


def p(samples: array[float], q: float) -> float:
    return percentile(sorted(samples), q)


def storm_rss(res: Results) -> str:
    """The host's RSS at each quarter of the storm (MiB), from the monitor's samples."""
    storm = [rss for phase, _t, rss in res.rss_timeline if phase == "storm"]
    if not storm:
        return "—"
    picks = [storm[min(len(storm) - 1, len(storm) * q // 4)] for q in (1, 2, 3)]
    return " / ".join(f"{x / MIB:.1f}" for x in picks)


def ms(micros: float) -> str:
    return "—" if math.isnan(micros) else f"{micros / 1000:.2f} ms"


def rows(res: Results) -> list[Row]:
    a = res.args
    kinds = list(res.kinds.values())
    struck = sum(k.struck for k in kinds)
    right = sum(k.right for k in kinds)
    crashes = sum(k.crashes for k in kinds)
    failures = sum(k.struck for k in kinds if k.fault.cause is not None)
    fewest = min(kinds, key=lambda k: k.struck)
    s = res.stream.samples
    out = [
        Row(
            "healthy calls made / failed",
            f"{res.stream.made} / {res.stream.failed}",
            "0 failed",
            res.stream.failed == 0,
        ),
        Row(
            "faults injected (all kinds)",
            f"{struck} in {len(kinds)} kinds; fewest {fewest.struck} ({fewest.fault.name})",
            f"every kind >= {a.min_per_kind}",
            fewest.struck >= a.min_per_kind,
        ),
        Row(
            "crashes injected (worker killed)",
            f"{crashes}",
            f">= {a.crashes}",
            crashes >= a.crashes,
        ),
        Row("failures injected (crashes + raised)", f"{failures}", "", None),
        Row(
            "reported with the right cause",
            f"{right} / {struck} ({100 * right / max(struck, 1):.2f} %)",
            "100 %",
            right == struck,
        ),
    ]
    if res.start and res.end:
        grow = (res.end.rss - res.start.rss) / MIB
        trimmed = (res.end.trimmed - res.start.trimmed) / MIB
        out += [
            Row(
                "host RSS start -> end",
                f"{res.start.rss / MIB:.1f} -> "
                f"{res.end.rss / MIB:.1f} MiB ({grow:+.1f}); peak {res.peak_rss / MIB:.1f}",
                "",
                None,
            ),
            Row("host RSS at 1/4, 1/2, 3/4 of the storm", f"{storm_rss(res)} MiB", "", None),
            Row(
                "host RSS start -> end, after gc and malloc_trim",
                f"{res.start.trimmed / MIB:.1f} -> {res.end.trimmed / MIB:.1f} MiB "
                f"({trimmed:+.1f})",
                f"<= +{a.rss_tolerance:g} MiB",
                trimmed <= a.rss_tolerance,
            ),
            Row(
                "host fds start -> end",
                f"{res.start.fds} -> {res.end.fds}",
                "equal",
                res.end.fds == res.start.fds,
            ),
        ]
    out += [
        Row("processes left after close", f"{len(res.left)}", "0", not res.left),
        Row("fds left after close", f"{len(res.fds_left)}", "0", not res.fds_left),
        Row(
            "healthy p50: calm / storm / after",
            f"{ms(p(s['calm'], 50))} / {ms(p(s['storm'], 50))} / {ms(p(s['after'], 50))}",
            "",
            None,
        ),
        Row(
            "healthy p99: calm / storm / after",
            f"{ms(p(s['calm'], 99))} / {ms(p(s['storm'], 99))} / {ms(p(s['after'], 99))}",
            "",
            None,
        ),
        Row(
            "healthy max: calm / storm / after",
            f"{ms(max(s['calm'], default=math.nan))} / {ms(max(s['storm'], default=math.nan))}"
            f" / {ms(max(s['after'], default=math.nan))}",
            "",
            None,
        ),
        Row(
            "healthy samples: calm / storm / after",
            f"{len(s['calm'])} / {len(s['storm'])} / {len(s['after'])}",
            "",
            None,
        ),
        Row(
            "storm length",
            f"{res.storm_seconds:.0f} s; peak {res.peak_descendants} "
            f"processes under the host; {res.workers_seen} worker pids seen",
            "",
            None,
        ),
    ]
    if not res.storm_complete:
        out.append(
            Row(
                "storm reached its targets",
                f"no: stopped at --max-storm {a.max_storm:g} s",
                "yes",
                False,
            )
        )
    return out


def kind_rows(res: Results) -> list[list[str]]:
    out = []
    for k in res.kinds.values():
        f = k.fault
        expected = " or ".join(c or "none" for c in f.causes)
        seen = ", ".join(f"{c} {n}" for c, n in k.causes.most_common())
        right = f"{k.right}/{k.struck}"
        if k.deadline_first:
            right += f" ({k.deadline_first} deadline first)"
        out.append(
            [
                f.name,
                expected,
                str(k.struck),
                str(k.crashes),
                right,
                seen,
                f"{p(k.seconds, 50) * 1000:.0f}",
            ]
        )
    return out


KIND_HEAD = ["fault", "expected cause", "struck", "crashes", "right", "causes reported", "p50 ms"]


def text_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), line, *(fmt.format(*r) for r in body)])


def md_table(head: list[str], body: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(out)


def met(r: Row) -> str:
    return "" if r.met is None else ("yes" if r.met else "NO")


def problems(res: Results) -> list[str]:
    out = []
    for k in res.kinds.values():
        out += [f"{k.fault.name} ({n}x): {w}" for w, n in k.wrong.most_common()]
    out += [f"healthy: {f}" for f in res.stream.failures]
    out += [f"left: {x}" for x in res.left]
    out += [f"fd left: {x}" for x in res.fds_left]
    return out


def write_markdown(
    path: str, res: Results, command: str, info: dict[str, Any], header: str
) -> None:
    main_rows = [[r.figure, r.value, r.target, met(r)] for r in rows(res)]
    wrong = problems(res)
    a = res.args
    cpu = info["cpu_seconds"]
    busy = ""
    if cpu["others"] > 0.1 * cpu["available"]:
        busy = (
            f"\n\nThe machine was shared while this ran: other processes used "
            f"{cpu['others']:.0f} CPU-seconds of the {cpu['available']:.0f} its "
            f"{info['nproc']} CPUs offered in the run, beside the soak's "
            f"{cpu['soak']:.0f}; the latencies include time spent waiting for a CPU "
            f"that other work held."
        )
    text = f"""# Reliability

The soak runs one `PluginHost` with a healthy plugin answering a steady stream of
concurrent calls while, beside it, every fault of `plugbox.testing.faults` is injected
again and again. It checks that the healthy plugin never fails, that every injected
fault is reported with the cause its `FAULTS` entry gives, that the host's memory and
file descriptors stay flat, and that nothing is left behind when the host closes.
`benchmarks/soak.py` says how each figure is taken; the figures below are its last
run, as it printed them.

## Command

```sh
{command}
```

{header}{busy}

## Figures

{md_table(["figure", "value", "target", "met"], main_rows)}

- **Healthy stream**: {a.tasks} tasks calling `answer(payload)` (an async hook of one
  worker, {len(PAYLOAD)}-key payload), together {a.rate:g} calls/s, each call checked
  for the payload coming back. The p50/p99 are of those calls' round trips: "calm" is
  {a.calm:g} s before the storm, "storm" during it, "after" {a.calm:g} s after it, all
  in the same run.
- **Faults**: one plugin per `FAULTS` entry, each on its own hook, each struck back to
  back by its own task, under the entry's limits and sandbox (quarantine out of reach);
  the two CPU-burning kinds one at a time. A crash is a strike whose reported cause
  ends the worker ({", ".join(sorted(KILLING))}); the next strike starts a fresh
  worker. "Right cause" is `plugbox.testing.assert_report` passing for the entry's
  cause (or a cause its `also` allows) with the signal, exit code or exception type
  the entry names. One cause the entries give for other circumstances is accepted
  when the report shows them: a CPU fault's `timeout` ("deadline first") when the
  worker was killed by the deadline having used less CPU than its budget (under the
  storm a spinning worker gets only a share of a core).
- **RSS and fds**: of the host process, after a warm-up and after the storm. The
  warm-up strikes every fault once, then strikes the cheap `raised` faults until the
  host's buffer of reports (`max_reports={a.max_reports}`) is full, so the host holds
  as many reports at the start as at the end ({res.reports_kept}); after the storm
  every fault is struck once more, in the warm-up's order, and again where a worker
  is not in the state the warm-up left it in (alive, or dead awaiting a restart), so
  the host holds the same workers at both points. The RSS target is on the memory in
  use: the RSS after `gc.collect()` and glibc's `malloc_trim(0)`, which hands back
  heap pages that are free but kept (the raw RSS, which includes them, is shown
  beside it). {a.rss_tolerance:g} MiB over the run's strikes would be a leak of a few
  hundred bytes per strike; what growth there is also covers the buffer's reports
  being bigger at the end (the storm's mix of crashes, with their stderr tails,
  against the warm-up's exceptions) and the allocator's fragmentation.
- **Left after close**: descendants of the soak process and members of any worker's
  session (psutil, /proc), and fds opened since before the host.

## Per fault kind

{md_table(KIND_HEAD, kind_rows(res))}
"""
    if wrong:
        text += "\n## What went wrong\n\n" + "\n".join(f"- `{w}`" for w in wrong) + "\n"
    text += kept_notes(path)
    with open(path, "w") as f:
        f.write(text)


NOTES = "\n## Notes\n"


def kept_notes(path: str) -> str:
    """The hand-written ``## Notes`` section at the end of an earlier file, kept."""
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        return ""
    at = old.find(NOTES)
    return old[at:] if at >= 0 else ""


def cpu_seconds() -> tuple[float, float]:
    """(CPU-seconds the machine's CPUs have been busy, CPU-seconds of this process and
    its reaped descendants)."""
    t = psutil.cpu_times()._asdict()
    busy = sum(t.get(k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))
    me = psutil.Process().cpu_times()
    return busy, me.user + me.system + me.children_user + me.children_system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--crashes",
        type=int,
        default=1000,
        help="worker-killing faults to inject in the storm (default 1000)",
    )
    ap.add_argument(
        "--min-per-kind",
        type=int,
        default=10,
        help="strikes of every fault kind in the storm (default 10)",
    )
    ap.add_argument(
        "--max-storm",
        type=float,
        default=240.0,
        help="give up the storm after this many seconds (default 240)",
    )
    ap.add_argument(
        "--calm",
        type=float,
        default=10.0,
        help="seconds of the healthy stream alone before and after (default 10)",
    )
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (default 2)")
    ap.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="healthy calls per second, all tasks together (default 200)",
    )
    ap.add_argument("--tasks", type=int, default=8, help="concurrent healthy callers (default 8)")
    ap.add_argument(
        "--rss-tolerance",
        type=float,
        default=8.0,
        metavar="MIB",
        help="growth of the RSS in use (after gc and malloc_trim) allowed from "
        "start to end (default 8 MiB)",
    )
    ap.add_argument(
        "--max-reports",
        type=int,
        default=2000,
        help="the host's max_reports; the warm-up fills it (default 2000)",
    )
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="N",
        help="trace the host's allocations from start to end and print the N "
        "that grew most (slows the host down)",
    )
    ap.add_argument("--tracemalloc-depth", type=int, default=12, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="+", metavar="FAULT", help="these fault kinds only")
    ap.add_argument("--launcher", choices=("zygote", "subprocess"), default="zygote")
    ap.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    ap.add_argument(
        "--write",
        metavar="PATH",
        help="write the figures and the command as Markdown (docs/RELIABILITY.md)",
    )
    args = ap.parse_args(argv)
    faults = [FAULTS[n] for n in args.only] if args.only else list(FAULTS.values())
    quiet_logging()
    info = machine()
    info["loadavg"] = {"start": [round(x, 2) for x in os.getloadavg()]}
    busy0, mine0 = cpu_seconds()
    began = time.monotonic()
    res = anyio.run(soak, args, faults, backend=args.backend)
    busy1, mine1 = cpu_seconds()  # after the host closed: its zygote and workers reaped
    info["loadavg"]["end"] = [round(x, 2) for x in os.getloadavg()]
    info["cpu_seconds"] = {
        "available": (time.monotonic() - began) * len(os.sched_getaffinity(0)),
        "soak": mine1 - mine0,
        "others": max(0.0, (busy1 - busy0) - (mine1 - mine0)),
    }
    git = info["git"]
    header = (
        f"Run {time.strftime('%Y-%m-%d %H:%M')}, {res.elapsed:.0f} s: {info['nproc']} "
        f"CPUs ({info['cpu'] or '?'}), Python {info['python']}, Linux "
        f"{info['kernel']}, {args.backend}, {args.launcher} launcher, plugbox "
        f"{(git['commit'] or '?')[:10]}"
        f"{' + uncommitted changes' if git['plugbox_changed_files'] else ''}; "
        f"CPU-seconds used by the soak {info['cpu_seconds']['soak']:.0f}, by other "
        f"processes {info['cpu_seconds']['others']:.0f}, of "
        f"{info['cpu_seconds']['available']:.0f} available."
    )
    table = [[r.figure, r.value, r.target, met(r)] for r in rows(res)]
    print(header)
    print(text_table(["figure", "value", "target", "met"], table))
    print()
    print(text_table(KIND_HEAD, kind_rows(res)))
    wrong = problems(res)
    if wrong:
        print("\nwhat went wrong:\n  " + "\n  ".join(wrong))
    for stat in res.growth[: args.tracemalloc]:
        print(f"\n{stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks, allocated at:")
        print("\n".join(stat.traceback.format(limit=args.tracemalloc_depth)))
    if args.write:
        command = "python benchmarks/soak.py" + "".join(
            f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
        )
        write_markdown(args.write, res, command, info, header)
        log(f"wrote {args.write}")
    return 0 if all(r.met is not False for r in rows(res)) else 1


if __name__ == "__main__":
    sys.exit(main())
