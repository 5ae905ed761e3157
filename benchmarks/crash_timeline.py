"""Where a crash's time goes: host-side stamps from a plugin's death to the caller's
exception, and from the next call to its answer (the restart), as medians over rounds.

    python benchmarks/crash_timeline.py [--rounds 30] [--gap 0.05] [--no-spare]
                                        [--without LAYER ...]

The plugin stamps CLOCK_MONOTONIC just before os._exit (as in benchmarks/run.py's
crash rows); the host's steps are stamped by wrapping plugbox's own methods in this
process (a profiling aid: it reaches into plugbox.host internals, which may change).
Processes are pinned as run.py pins them (this process on one CPU, children on the
others). Each line is a step and when it happened, in ms from the death (first table)
or from the start of the call after it (second table).
"""

from __future__ import annotations

import argparse
import collections
import functools
import inspect
import statistics
import time
from collections.abc import Callable
from typing import Any

import anyio
import bench_common
import bench_plugbox

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.host import output, standby, supervision, worker_process
from plugbox.host.death import DeathWatch
from plugbox.protocol import Handshake

#: the Sandbox switches ``--without`` can turn off
SANDBOX_LAYERS = ("pid_namespace", "namespaces", "seccomp", "landlock")


def now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


STAMPS: dict[str, int] = {}


def stamp(cls: Any, name: str, label: str) -> None:
    """Note the first call of ``cls.name`` (and, as ``label done``, its return)."""
    original: Callable[..., Any] = getattr(cls, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            STAMPS.setdefault(label, now())
            result = await original(*args, **kwargs)
            STAMPS.setdefault(f"{label} done", now())
            return result

        setattr(cls, name, wrapped_async)
    else:

        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            STAMPS.setdefault(label, now())
            result = original(*args, **kwargs)
            STAMPS.setdefault(f"{label} done", now())
            return result

        setattr(cls, name, wrapped)


def instrument() -> None:
    wp, sv = worker_process.WorkerProcess, supervision.SupervisedPlugin
    stamp(wp, "_mark_dead", "worker marked dead")
    stamp(DeathWatch, "_read_exit_report", "exit report task")
    stamp(DeathWatch, "death", "death()")
    stamp(output.OutputCapture, "close", "an output stream closed")
    stamp(supervision, "failure_report", "report built")
    stamp(sv, "_ensure_worker", "ensure worker")
    stamp(standby.Standby, "take", "take standby")
    stamp(wp, "resume", "Resume sent")
    stamp(wp, "send_call", "call sent")
    stamp(wp, "reply", "reply awaited")
    dispatch = wp._dispatch

    def dispatch_stamped(self: worker_process.WorkerProcess, msg: object) -> None:
        if isinstance(msg, Handshake):
            STAMPS.setdefault("Handshake in", now())
        dispatch(self, msg)

    wp._dispatch = dispatch_stamped  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--gap", type=float, default=0.05, help="seconds between an answer and the next crash"
    )
    parser.add_argument("--no-spare", action="store_true", help="Limits(warm_spare=False)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=SANDBOX_LAYERS,
        metavar="LAYER",
        help="turn a sandbox layer off (Sandbox(LAYER=False)); "
        f"one of {', '.join(SANDBOX_LAYERS)}; may be repeated",
    )
    ns = parser.parse_args()
    sandbox = Sandbox(**{layer: False for layer in ns.without})
    if ns.without:
        print("sandbox: " + ", ".join(f"{layer}=False" for layer in ns.without))
    print(bench_common.set_pinning("spread"))
    bench_plugbox.quiet_logging()
    instrument()
    limits = Limits(
        backoff_initial=0, max_failures=10**9, failure_window=1.0, warm_spare=not ns.no_spare
    )
    deaths: dict[str, list[float]] = collections.defaultdict(list)
    restarts: dict[str, list[float]] = collections.defaultdict(list)

    async def run() -> None:
        async with PluginHost(bench_plugbox.HOOKS) as host:
            await host.add(bench_plugbox.PLUGIN, limits=limits, sandbox=sandbox)
            await host.call("echo", payload=bench_plugbox.PAYLOAD)
            bench_common.pin_children()
            for i in range(ns.rounds + 2):
                STAMPS.clear()
                try:
                    await host.call("crash", code=3)
                except PluginFailure as exc:
                    caught = now()
                    death = bench_plugbox._crash_stamp(exc.report.stderr_tail)
                else:
                    raise RuntimeError("the crash hook returned")
                died = dict(STAMPS, **{"PluginCrashed caught": caught})
                STAMPS.clear()
                start = now()
                await host.call("echo", payload=bench_plugbox.PAYLOAD)
                answered = now()
                restarted = dict(STAMPS, **{"answer": answered})
                if ns.gap:
                    await anyio.sleep(ns.gap)
                if i < 2 or death is None:
                    continue
                for label, at in died.items():
                    if at >= death:
                        deaths[label].append((at - death) / 1e6)
                for label, at in restarted.items():
                    restarts[label].append((at - start) / 1e6)

    anyio.run(run)
    for title, table in (
        ("from the plugin's death", deaths),
        ("from the next call's start", restarts),
    ):
        print(f"\n{title} (ms, median of {ns.rounds} rounds)")
        for label, values in sorted(table.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"  {statistics.median(values):8.3f}  {label}")


if __name__ == "__main__":
    main()
