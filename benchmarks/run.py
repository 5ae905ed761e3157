"""plugbox's benchmark suite: plugbox beside its baselines, measured in one run.

    python benchmarks/run.py [--quick] [--json PATH] [--png PATH] [--pin spread|same|none]

Prints one table (p50, p99, the ratio each target is stated in, the target, whether
it is met), writes every figure as JSON (default benchmarks/results.json) and, when
matplotlib is installed, a chart of one call's latency per method (--png). A baseline
whose package is missing is reported as missing. Progress goes to stderr; the table to
stdout. See docs/BENCHMARKS.md for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import bench_baselines as base
import bench_plugbox as pb
from bench_common import (
    FULL,
    HERE,
    PAYLOAD_BYTES,
    QUICK,
    Figure,
    Scale,
    attempt,
    ratio,
    set_pinning,
)

from plugbox import Sandbox

ROOT = os.path.dirname(HERE)
X = "\u00d7"  # the multiplication sign of ratios
INFLIGHT = 64
BACKENDS = pb.BACKENDS


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ====================================================================== measuring
LatencyFn = Callable[[int, int], list[float]]


def _uvloop_protocol(warmup: int, n: int) -> list[float]:
    return base.lat_asyncio_protocol(warmup, n, base.uvloop_factory())


def _plugbox(backend: str, launcher: str = "zygote") -> LatencyFn:
    def fn(warmup: int, n: int) -> list[float]:
        return pb.lat_plugbox(warmup, n, backend, launcher)

    return fn


LATENCY: list[tuple[str, str, LatencyFn]] = [
    ("inprocess", "in-process function call", base.lat_inprocess),
    ("pluggy", "pluggy hook call (in process)", base.lat_pluggy),
    ("raw_socketpair", "raw socketpair echo (blocking, 2 processes)", base.lat_raw_socketpair),
    ("asyncio_protocol", "plain asyncio Protocol echo (socketpair)", base.lat_asyncio_protocol),
    ("asyncio_protocol_uvloop", "plain asyncio Protocol echo, uvloop host", _uvloop_protocol),
    ("mp_pipe", "multiprocessing Pipe", base.lat_mp_pipe),
    ("process_pool", "ProcessPoolExecutor(max_workers=1)", base.lat_process_pool),
    ("loky", "loky reusable executor (1 worker)", base.lat_loky),
    ("pebble", "pebble ProcessPool(max_workers=1)", base.lat_pebble),
    ("plugbox_asyncio", "plugbox zygote, asyncio", _plugbox("asyncio")),
    ("plugbox_trio", "plugbox zygote, trio", _plugbox("trio")),
    ("plugbox_uvloop", "plugbox zygote, uvloop", _plugbox("uvloop")),
    (
        "plugbox_subprocess",
        "plugbox subprocess launcher, asyncio",
        _plugbox("asyncio", "subprocess"),
    ),
]


def measure_latency(scale: Scale) -> dict[str, Figure]:
    """Each method ``scale.blocks`` times, the order rotated per block, samples pooled."""
    figs = {key: Figure(key, label) for key, label, _ in LATENCY}
    for block in range(scale.blocks):
        shift = block * len(LATENCY) // scale.blocks
        for key, _label, fn in LATENCY[shift:] + LATENCY[:shift]:
            fig = figs[key]
            if fig.status != "ok":
                continue
            log(f"one call, block {block + 1}/{scale.blocks}: {key}")
            samples = attempt(fig, partial(fn, scale.warmup, scale.calls))
            if samples:
                fig.samples.extend(samples)
    return figs


def measure_throughput(scale: Scale) -> dict[str, Figure]:
    runs: list[tuple[str, str, Callable[[], float]]] = [
        (
            "asyncio_protocol",
            "plain asyncio Protocol echo, 64 in flight",
            lambda: base.tput_asyncio_protocol(scale.tput_calls, INFLIGHT),
        ),
        (
            "plugbox_asyncio",
            "plugbox, asyncio, async hook",
            lambda: pb.tput_plugbox(scale.tput_calls, INFLIGHT, "asyncio"),
        ),
        (
            "plugbox_asyncio_sync",
            "plugbox, asyncio, sync hook",
            lambda: pb.tput_plugbox(scale.tput_calls, INFLIGHT, "asyncio", hook="echo"),
        ),
        (
            "plugbox_trio",
            "plugbox, trio, async hook",
            lambda: pb.tput_plugbox(scale.tput_calls, INFLIGHT, "trio"),
        ),
        (
            "plugbox_uvloop",
            "plugbox, uvloop, async hook",
            lambda: pb.tput_plugbox(scale.tput_calls, INFLIGHT, "uvloop"),
        ),
        (
            "asyncio_protocol_uvloop",
            "plain asyncio Protocol echo, uvloop host",
            lambda: base.tput_asyncio_protocol(scale.tput_calls, INFLIGHT, base.uvloop_factory()),
        ),
    ]
    figs = {key: Figure(key, label, unit="calls/s") for key, label, _ in runs}
    for rnd in range(scale.tput_rounds):
        for key, _label, fn in runs:
            fig = figs[key]
            if fig.status != "ok":
                continue
            log(f"{INFLIGHT} in flight, round {rnd + 1}/{scale.tput_rounds}: {key}")
            rate = attempt(fig, fn)
            if rate:
                fig.samples.append(rate)
    return figs


def measure_start(scale: Scale) -> dict[str, Figure]:
    cold = max(3, scale.start_rounds // 3)
    runs: list[tuple[str, str, Callable[[], list[float]]]] = [
        (
            "plugbox_zygote_warm",
            "plugbox add + first call, zygote running",
            lambda: pb.start_plugbox_warm(scale.start_rounds, "zygote"),
        ),
        (
            "plugbox_zygote_cold",
            "plugbox new host + add + first call (zygote start)",
            lambda: pb.start_plugbox_cold(cold),
        ),
        (
            "plugbox_subprocess",
            "plugbox add + first call, subprocess launcher",
            lambda: pb.start_plugbox_warm(cold, "subprocess"),
        ),
        (
            "forkserver",
            "multiprocessing forkserver, worker preloaded",
            lambda: base.start_forkserver(scale.start_rounds),
        ),
        (
            "forkserver_script",
            "  same, from a script (children re-import __main__)",
            lambda: base.start_forkserver(cold, helper=False),
        ),
        (
            "fresh_interpreter",
            "fresh interpreter (python -I, msgpack), subprocess",
            lambda: base.start_fresh_interpreter(cold),
        ),
    ]
    figs = {}
    for key, label, fn in runs:
        fig = figs[key] = Figure(key, label)
        log(f"start: {key}")
        samples = attempt(fig, fn)
        if samples:
            fig.samples = samples
    return figs


#: between a restarted worker's answer and the next crash: the default backoff_initial,
#: which spaces restarts at least this much anyway, and time for the standby worker a
#: restart leaves behind (Limits.warm_spare) to be ready
CRASH_GAP = 0.05
CRASH_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("nopidns", "  … with Sandbox(pid_namespace=False)", {"sandbox": Sandbox(pid_namespace=False)}),
    ("nospare", "  … with Limits(warm_spare=False): no standby worker", {"warm_spare": False}),
    ("backtoback", "  … crashing at once after each answer (standby not ready)", {"gap": 0.0}),
]


def measure_crash(scale: Scale) -> dict[str, Figure]:
    figs: dict[str, Figure] = {}
    floor = figs["death_floor"] = Figure(
        "death_floor", "floor: plain child os._exit → EOF on its socket"
    )
    log("crash: the floor (a plain child's exit noticed through EOF)")
    samples = attempt(floor, lambda: base.death_floor(scale.respawn_rounds))
    if samples:
        floor.samples = samples
    for backend in BACKENDS:
        keys = {
            "respawn": Figure(f"respawn_{backend}", f"respawn + next call answered, {backend}"),
            "death_to_report": Figure(
                f"death_to_report_{backend}", f"death → PluginCrashed in the caller, {backend}"
            ),
            "call_to_report": Figure(
                f"call_to_report_{backend}", f"crashing call's start → exception, {backend}"
            ),
        }
        log(f"crash and respawn: {backend}")
        got = attempt(
            keys["respawn"], partial(pb.crash_rounds, scale.respawn_rounds, backend, gap=CRASH_GAP)
        )
        for name, fig in keys.items():
            if got is None:
                fig.status = keys["respawn"].status
            else:
                fig.samples = got[name]
                fig.extra = {"causes": got["causes"]}
                if name == "death_to_report" and got["unstamped"]:
                    fig.note = f"{got['unstamped']} rounds without the crash stamp on stderr"
                if not fig.samples:
                    fig.status = "error: no samples (the crash stamp never reached the report)"
            figs[fig.key] = fig
    # the same on asyncio, varied: what the pid namespace costs, what the standby
    # worker saves, and crashes coming before the standby is ready
    for key, label, kwargs in CRASH_VARIANTS:
        log(f"crash and respawn: asyncio, {label.strip(' …')}")
        bare = {kind: Figure(f"{kind}_{key}", label) for kind in ("respawn", "death_to_report")}
        got = attempt(
            bare["respawn"],
            partial(
                pb.crash_rounds, scale.respawn_rounds, "asyncio", **{"gap": CRASH_GAP, **kwargs}
            ),
        )
        for name, fig in bare.items():
            if got is None:
                fig.status = bare["respawn"].status
            else:
                fig.samples = got[name]
            figs[fig.key] = fig
    return figs


def measure_memory() -> dict[str, Figure]:
    figs: dict[str, Figure] = {}

    def record(key: str, label: str, mem: dict[str, float] | None, status: str) -> None:
        fig = figs[key] = Figure(key, label, unit="MB", status=status)
        if mem:
            fig.value = mem["rss"]
            fig.extra = {k: round(v, 2) for k, v in mem.items()}

    for launcher in ("zygote", "subprocess"):
        log(f"idle RSS: {launcher}")
        probe = Figure("tmp", "tmp")
        got = attempt(probe, partial(pb.idle_rss, launcher))
        record(
            f"worker_{launcher}",
            f"idle plugbox worker, {launcher} launcher",
            got["worker"] if got else None,
            probe.status,
        )
        if launcher == "zygote":
            record(
                "zygote",
                "the zygote itself (shared with its workers)",
                got.get("zygote") if got else None,
                probe.status,
            )
    log("idle RSS: plain asyncio echo child, bare interpreter")
    probe = Figure("tmp", "tmp")
    got = attempt(probe, base.idle_rss_asyncio_child)
    record("asyncio_child", "plain asyncio echo child (fresh interpreter)", got, probe.status)
    probe = Figure("tmp", "tmp")
    got = attempt(probe, base.idle_rss_bare_interpreter)
    record(
        "bare_interpreter", "bare interpreter (python -I -S, nothing imported)", got, probe.status
    )
    return figs


def measure_fanout(scale: Scale) -> dict[str, Figure]:
    n = scale.fanout_plugins
    figs = {
        "one": Figure("observe_1", "plugbox observe hook, 1 plugin"),
        "many": Figure(f"observe_{n}", f"plugbox observe hook, {n} plugins"),
        "floor_one": Figure("protocol_1", "plain asyncio Protocol echo, 1 child"),
        "floor_many": Figure(
            f"protocol_{n}", f"plain asyncio Protocol echo to {n} children, gathered"
        ),
    }
    for fn, one, many in (
        (lambda: pb.fanout(n, scale.fanout_calls), "one", "many"),
        (lambda: base.fanout_asyncio_protocol(n, scale.fanout_calls), "floor_one", "floor_many"),
    ):
        log(f"fan-out: {figs[many].label}")
        got = attempt(figs[one], fn)
        if got is None:
            figs[many].status = figs[one].status
            continue
        figs[one].samples, figs[many].samples = got["one"], got["many"]
        if "add_ms" in got:
            figs[many].note = f"adding the other {n - 1} plugins took {got['add_ms']:.0f} ms"
    return figs


# ====================================================================== targets
@dataclass
class Target:
    figure: str
    bound: str
    value: float
    shown: str
    met: bool | None  # None: not measurable in this run
    binding: bool = True  # False: "reported" (trio, uvloop), not a target of its own

    def verdict(self) -> str:
        if self.met is None:
            return "n/a"
        text = "yes" if self.met else "NO"
        return text if self.binding else f"({text.lower()})"

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "target": self.bound,
            "value": None if math.isnan(self.value) else round(self.value, 3),
            "shown": self.shown,
            "met": self.met,
            "binding": self.binding,
        }


def _check(value: float, bound: float, *, at_most: bool) -> bool | None:
    if math.isnan(value):
        return None
    return value <= bound if at_most else value >= bound


def p50(figs: dict[str, Figure], key: str) -> float:
    fig = figs.get(key)
    return fig.p50 if fig is not None and fig.ok else math.nan


def evaluate(r: dict[str, dict[str, Figure]]) -> list[Target]:
    lat, tput, start, crash = r["latency"], r["throughput"], r["start"], r["crash"]
    mem, fan = r["memory"], r["fanout"]
    out: list[Target] = []
    floor = p50(lat, "asyncio_protocol")
    for backend in BACKENDS:
        binding = backend == "asyncio"
        mine = p50(lat, f"plugbox_{backend}")
        x = ratio(mine, floor)
        out.append(
            Target(
                f"one call, {backend}",
                f"≤ 1.5{X} asyncio Protocol",
                x,
                f"{x:.2f}{X} Protocol",
                _check(x, 1.5, at_most=True),
                binding,
            )
        )
        for key, name, bound in (
            ("process_pool", "ProcessPoolExecutor", 5.0),
            ("pebble", "pebble", 3.0),
        ):
            x = ratio(p50(lat, key), mine)
            out.append(
                Target(
                    f"one call, {backend}, vs {name}",
                    f"≥ {bound:g}{X} faster",
                    x,
                    fmt_x(x, " faster"),
                    _check(x, bound, at_most=False),
                    binding,
                )
            )
    floor_tput = p50(tput, "asyncio_protocol")
    for backend in BACKENDS:
        x = ratio(p50(tput, f"plugbox_{backend}"), floor_tput)
        out.append(
            Target(
                f"{INFLIGHT} in flight, {backend}",
                f"≥ 0.8{X} Protocol's calls/s",
                x,
                f"{x:.2f}{X} Protocol",
                _check(x, 0.8, at_most=False),
                backend == "asyncio",
            )
        )
    fork = p50(start, "forkserver")
    for backend in BACKENDS:
        binding = backend == "asyncio"
        resp = p50(crash, f"respawn_{backend}")
        out.append(
            Target(
                f"respawn, {backend}",
                "≤ 3 ms p50",
                resp / 1000,
                fmt_us(resp),
                _check(resp, 3000, at_most=True),
                binding,
            )
        )
        x = ratio(fork, resp)
        out.append(
            Target(
                f"respawn, {backend}, vs forkserver start",
                f"≥ 5{X} faster",
                x,
                fmt_x(x, " faster"),
                _check(x, 5.0, at_most=False),
                binding,
            )
        )
        death = p50(crash, f"death_to_report_{backend}")
        out.append(
            Target(
                f"death → report, {backend}",
                "≤ 2 ms p50",
                death / 1000,
                fmt_us(death),
                _check(death, 2000, at_most=True),
                binding,
            )
        )
    rss = p50(mem, "worker_zygote")
    out.append(
        Target(
            "idle worker RSS (zygote)",
            "≤ 10 MB",
            rss,
            f"{rss:.1f} MB",
            _check(rss, 10.0, at_most=True),
        )
    )
    x = ratio(p50(fan, "many"), p50(fan, "one"))
    n = fan["many"].key.split("_")[-1]
    out.append(
        Target(
            f"observe over {n} plugins",
            f"≤ 3{X} one plugin's call",
            x,
            f"{x:.2f}{X} one",
            _check(x, 3.0, at_most=True),
        )
    )
    return out


# ====================================================================== printing
def fmt_us(us: float) -> str:
    if math.isnan(us):
        return "—"
    if us < 10:
        return f"{us:.2f} µs"
    if us < 1000:
        return f"{us:.1f} µs"
    if us < 100_000:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1000:.0f} ms"


def fmt_rate(rate: float) -> str:
    return "—" if math.isnan(rate) else f"{rate / 1000:.1f} k/s"


def fmt_x(x: float, suffix: str = "") -> str:
    if math.isnan(x):
        return "—"
    if suffix == " faster" and x < 1:
        suffix = " (slower)"
    return (f"{x:.3f}{X}" if x < 0.1 else f"{x:.2f}{X}") + suffix


Row = tuple[str, str, str, str, str, str]
StatusRow = tuple[str, str]  # a figure that could not be measured: label, why
AnyRow = Row | StatusRow | str  # str: a section's heading


def build_rows(r: dict[str, dict[str, Figure]], targets: list[Target]) -> list[AnyRow]:
    rows: list[AnyRow] = []
    by_fig = {t.figure: t for t in targets}

    def status_row(fig: Figure) -> StatusRow:
        return (f"  {fig.label}", fig.status)

    def tgt(name: str) -> tuple[str, str]:
        t = by_fig.get(name)
        return (t.bound, t.verdict()) if t else ("", "")

    lat = r["latency"]
    floor = p50(lat, "asyncio_protocol")
    rows.append(
        f"one small call ({PAYLOAD_BYTES} B msgpack args), round trip — "
        f"ratio: p50 ÷ plain asyncio Protocol p50"
    )
    for key, _label, _fn in LATENCY:
        fig = lat[key]
        if not fig.ok:
            rows.append(status_row(fig))
            continue
        backend = key.removeprefix("plugbox_")
        bound, met = tgt(f"one call, {backend}") if backend in BACKENDS else ("", "")
        rows.append(
            (
                f"  {fig.label}",
                fmt_us(fig.p50),
                fmt_us(fig.p99),
                fmt_x(ratio(fig.p50, floor)),
                bound,
                met,
            )
        )
        if backend in BACKENDS:
            for name in ("ProcessPoolExecutor", "pebble"):
                t = by_fig[f"one call, {backend}, vs {name}"]
                rows.append(
                    (
                        f"    … vs {name} (its p50 ÷ plugbox's)",
                        "",
                        "",
                        fmt_x(t.value, " faster"),
                        t.bound,
                        t.verdict(),
                    )
                )

    tput = r["throughput"]
    floor_t = p50(tput, "asyncio_protocol")
    rows.append(
        f"{INFLIGHT} calls in flight on one worker — median of rounds (p99 column: "
        f"slowest round); ratio: ÷ plain asyncio Protocol"
    )
    for key, fig in tput.items():
        if not fig.ok:
            rows.append(status_row(fig))
            continue
        backend = key.removeprefix("plugbox_")
        bound, met = tgt(f"{INFLIGHT} in flight, {backend}") if backend in BACKENDS else ("", "")
        rows.append(
            (
                f"  {fig.label}",
                fmt_rate(fig.p50),
                fmt_rate(min(fig.samples)),
                fmt_x(ratio(fig.p50, floor_t)),
                bound,
                met,
            )
        )

    start = r["start"]
    fork = p50(start, "forkserver")
    rows.append("start: asking → first call answered — ratio: ÷ forkserver start p50")
    for fig in start.values():
        if not fig.ok:
            rows.append(status_row(fig))
            continue
        rows.append(
            (
                f"  {fig.label}",
                fmt_us(fig.p50),
                fmt_us(fig.p99),
                fmt_x(ratio(fig.p50, fork)),
                "",
                "",
            )
        )

    crash = r["crash"]
    rows.append(
        "crash: plugin os._exit()s in a call — ratio (respawn): forkserver start "
        "p50 ÷ respawn p50; (death → report): ÷ the floor's p50"
    )
    floor_fig = crash["death_floor"]

    def over_floor(fig: Figure) -> str:
        """A death → report p50 as a multiple of the kernel's floor (a plain child's
        exit seen as EOF), where the floor was measured."""
        return fmt_x(ratio(fig.p50, floor_fig.p50), " floor") if floor_fig.ok else ""

    if floor_fig.ok:
        rows.append(
            (f"  {floor_fig.label}", fmt_us(floor_fig.p50), fmt_us(floor_fig.p99), "", "", "")
        )
    else:
        rows.append(status_row(floor_fig))
    for backend in BACKENDS:
        for kind in ("respawn", "death_to_report", "call_to_report"):
            fig = crash[f"{kind}_{backend}"]
            if not fig.ok:
                rows.append(status_row(fig))
                break
            bound, met = "", ""
            x = ""
            if kind == "respawn":
                t = by_fig[f"respawn, {backend}, vs forkserver start"]
                x = fmt_x(t.value, " faster")
                b1, m1 = tgt(f"respawn, {backend}")
                bound, met = f"{b1}; {t.bound}", f"{m1}; {t.verdict()}"
            elif kind == "death_to_report":
                bound, met = tgt(f"death → report, {backend}")
                x = over_floor(fig)
            rows.append((f"  {fig.label}", fmt_us(fig.p50), fmt_us(fig.p99), x, bound, met))
            for key, _, _ in CRASH_VARIANTS if backend == "asyncio" else ():
                bare = crash.get(f"{kind}_{key}")
                if bare is not None and bare.ok:
                    rows.append(
                        (
                            f"  {bare.label}",
                            fmt_us(bare.p50),
                            fmt_us(bare.p99),
                            over_floor(bare) if kind == "death_to_report" else "",
                            "",
                            "",
                        )
                    )
                elif bare is not None:
                    rows.append(status_row(bare))

    rows.append(
        "idle memory (psutil, after 20 calls and 0.3 s idle) — p50 column: RSS; "
        "ratio column: USS / PSS"
    )
    for key, fig in r["memory"].items():
        if not fig.ok:
            rows.append(status_row(fig))
            continue
        uss, pss = fig.extra.get("uss"), fig.extra.get("pss")
        detail = " / ".join(f"{v:.1f}" for v in (uss, pss) if v is not None)
        if fig.extra.get("processes", 1) > 1 and "uss_all" in fig.extra:
            # a pid namespace: the launched process and the namespace's init too
            detail += (
                f" (with its {int(fig.extra['processes']) - 1} parents: "
                f"{fig.extra['uss_all']:.1f} / {fig.extra.get('pss_all', 0):.1f})"
            )
        bound, met = tgt("idle worker RSS (zygote)") if key == "worker_zygote" else ("", "")
        rows.append(
            (
                f"  {fig.label}",
                f"{fig.p50:.1f} MB",
                "",
                f"{detail} MB" if detail else "",
                bound,
                met,
            )
        )

    fan = r["fanout"]
    rows.append("fan-out: one call reaching every plugin (child) — ratio: ÷ the same with 1")
    for name, fig in fan.items():
        if not fig.ok:
            rows.append(status_row(fig))
            continue
        bound, met = ("", "")
        if name == "many":
            t = targets[-1]
            bound, met = t.bound, t.verdict()
        one = p50(fan, "floor_one" if name.startswith("floor") else "one")
        rows.append(
            (
                f"  {fig.label}",
                fmt_us(fig.p50),
                fmt_us(fig.p99),
                fmt_x(ratio(fig.p50, one)),
                bound,
                met,
            )
        )
    floor_many, many_fig = p50(fan, "floor_many"), fan["many"]
    if many_fig.ok and not math.isnan(floor_many):
        rows.append(
            (
                f"    … {many_fig.label.removeprefix('plugbox ')} ÷ the Protocol's",
                "",
                "",
                fmt_x(ratio(many_fig.p50, floor_many)),
                "",
                "",
            )
        )
    return rows


def render(rows: list[AnyRow], header: str, targets: list[Target]) -> str:
    head: Row = ("figure", "p50", "p99", "ratio", "target", "met")
    table = [row for row in rows if len(row) == 6 and not isinstance(row, str)]
    widths = [max(len(row[i]) for row in [head, *table]) for i in range(6)]
    total = sum(widths) + 2 * 5

    def line(row: Row) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [row[i].rjust(widths[i]) for i in (1, 2, 3)]
        cells += [row[4].ljust(widths[4]), row[5]]
        return "  ".join(cells).rstrip()

    out = [header, "=" * total, line(head)]
    for row in rows:
        if isinstance(row, str):
            out += ["-" * total, row]
        elif len(row) == 2:
            out.append(f"{row[0].ljust(widths[0])}  {row[1]}")
        else:
            out.append(line(row))
    out.append("=" * total)
    binding = [t for t in targets if t.binding]
    met = [t for t in binding if t.met]
    missed = [t for t in binding if t.met is False]
    unknown = [t for t in binding if t.met is None]
    out.append(
        f"targets met: {len(met)} of {len(binding)} (asyncio; trio and uvloop rows in "
        f"parentheses are reported against the same bounds)"
    )
    for t in missed:
        out.append(f"  NOT MET: {t.figure}: {t.shown} (target {t.bound})")
    for t in unknown:
        out.append(f"  not measured: {t.figure} (target {t.bound})")
    return "\n".join(out)


# ====================================================================== machine, files
def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for text in f:
                if text.startswith("model name"):
                    cpu = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in (
        "plugbox",
        "anyio",
        "msgpack",
        "psutil",
        "trio",
        "uvloop",
        "pluggy",
        "loky",
        "pebble",
        "matplotlib",
    ):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "system": platform.system(),
        "packages": versions,
        "git": _git(),
    }


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "plugbox")
    return {
        "commit": git("rev-parse", "HEAD"),
        "plugbox_changed_files": len(changed.splitlines()) if changed else 0,
    }


def write_png(path: str, lat: dict[str, Figure], title: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = [f for f in lat.values() if f.ok]
    figs.sort(key=lambda f: f.p50)
    labels = [f.label for f in figs]
    p50s = [f.p50 for f in figs]
    p99s = [f.p99 for f in figs]
    colors = ["#d9534f" if f.key.startswith("plugbox") else "#5b8fc7" for f in figs]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(figs) + 1.6))
    ax.barh(labels, p50s, color=colors, label="p50")
    ax.scatter(p99s, labels, marker="|", s=200, color="black", label="p99", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("one small call, round trip (µs, log scale)")
    ax.set_title(title, fontsize=10)
    for y, (v, tail) in enumerate(zip(p50s, p99s, strict=True)):
        at = max(v, tail) if not math.isnan(tail) else v
        ax.text(at * 1.15, y, fmt_us(v), va="center", fontsize=8)
    ax.set_xlim(right=max(p for p in p99s + p50s if not math.isnan(p)) * 4)
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cleanup_children() -> list[int]:
    """Stop multiprocessing's helpers, then anything still descended from this process."""
    base.stop_multiprocessing_helpers()
    try:
        import psutil
    except ImportError:
        return []
    left = psutil.Process().children(recursive=True)
    for child in left:
        try:
            log(f"left running: pid {child.pid}: {' '.join(child.cmdline())[:160]}")
        except psutil.Error:
            pass
    for child in left:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(left, timeout=3)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    return [c.pid for c in left]


# ====================================================================== main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer rounds (under a minute); figures are noisier"
    )
    ap.add_argument(
        "--json",
        default=os.path.join(HERE, "results.json"),
        metavar="PATH",
        help="where to write the figures (default: benchmarks/results.json)",
    )
    ap.add_argument(
        "--png", metavar="PATH", help="also draw one call's latency per method (needs matplotlib)"
    )
    ap.add_argument(
        "--pin",
        choices=("spread", "same", "none"),
        default="spread",
        help="CPU placement: this process on one CPU and child processes on the "
        "others (spread, default), all on one CPU (same), or unpinned (none)",
    )
    args = ap.parse_args(argv)
    scale = QUICK if args.quick else FULL
    pb.quiet_logging()
    info = machine()
    info["pinning"] = set_pinning(args.pin)
    info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if info["loadavg_at_start"][0] > 0.5 * (os.cpu_count() or 1):
        log(
            f"the machine is busy (load average {info['loadavg_at_start'][0]}): "
            f"expect noisy figures"
        )
    began = time.monotonic()
    results: dict[str, dict[str, Figure]] = {}
    try:
        results["latency"] = measure_latency(scale)
        results["throughput"] = measure_throughput(scale)
        results["start"] = measure_start(scale)
        results["crash"] = measure_crash(scale)
        results["memory"] = measure_memory()
        results["fanout"] = measure_fanout(scale)
    finally:
        left = cleanup_children()
        if left:
            log(f"stopped {len(left)} leftover child process(es): {left}")
    elapsed = time.monotonic() - began
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    targets = evaluate(results)
    header = (
        f"plugbox benchmarks ({scale.name} run, {elapsed:.0f} s) — {info['nproc']} CPUs, "
        f"Python {info['python']}, Linux {info['kernel']}, {args.pin} pinning, plugbox "
        f"{(info['git']['commit'] or '?')[:10]}"
        f"{' + uncommitted changes' if info['git']['plugbox_changed_files'] else ''}"
    )
    header += (
        f"\nload average {info['loadavg_at_start'][0]:.2f} at start, "
        f"{info['loadavg_at_end'][0]:.2f} at end; {PAYLOAD_BYTES} B payload; "
        f"{scale.blocks} blocks x {scale.calls} calls per method after "
        f"{scale.warmup} warm-up calls each"
    )
    print(render(build_rows(results, targets), header, targets))

    doc = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scale": scale.__dict__,
        "elapsed_s": round(elapsed, 1),
        "payload_bytes": PAYLOAD_BYTES,
        "inflight": INFLIGHT,
        "machine": info,
        "figures": {
            section: {k: f.to_json() for k, f in figs.items()} for section, figs in results.items()
        },
        "targets": [t.to_json() for t in targets],
    }
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log(f"wrote {args.json}")
    if args.png:
        title = (
            f"plugbox and baselines: one small call ({PAYLOAD_BYTES} B args), round trip\n"
            f"{info['nproc']} CPUs, Python {info['python']}, Linux {info['kernel']}, "
            f"{args.pin} pinning, {time.strftime('%Y-%m-%d')}"
        )
        if write_png(args.png, results["latency"], title):
            log(f"wrote {args.png}")
        else:
            log("matplotlib is not installed: no chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
