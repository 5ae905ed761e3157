"""Profile plugbox's host path: one plugin, a loop of small calls, under cProfile.

    python benchmarks/profile_call.py [--calls N] [--backend asyncio|trio|uvloop]
                                      [--launcher zygote|subprocess] [--inflight K]
                                      [--sort tottime|cumulative] [--top N]
                                      [--pin spread|same|none]

Only the host process is profiled (the worker is another process). cProfile slows
Python code several times over, so read the shares, not the absolute times: what
the host does per call beyond the socket round trip shows up as the functions of
plugbox, anyio and msgpack that are called once or more per call. The CPUs are pinned
as ``run.py`` pins them (``--pin``): unpinned, a worker that shares the host's CPU runs
inside the host's ``send`` and its time is charged there.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys

import anyio
import bench_plugbox as pb
from bench_common import PAYLOAD, PLUGIN, now_ns, pin_children, set_pinning

from plugbox import PluginHost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--backend", default="asyncio", choices=pb.BACKENDS)
    ap.add_argument("--launcher", default="zygote", choices=("zygote", "subprocess"))
    ap.add_argument(
        "--inflight",
        type=int,
        default=1,
        help="tasks calling at once (64: the throughput figure's shape)",
    )
    ap.add_argument("--hook", default="echo", choices=("echo", "aecho"))
    ap.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--pin", default="spread", choices=("spread", "same", "none"))
    args = ap.parse_args(argv)
    print(f"pinning: {set_pinning(args.pin)}")
    pb.quiet_logging()
    profiler = cProfile.Profile()

    async def run() -> None:
        async with PluginHost(pb.HOOKS, launcher=args.launcher) as host:
            await host.add(PLUGIN)
            pin_children()  # the zygote and the worker
            per_task = args.calls // args.inflight

            async def worker(count: int) -> None:
                for _ in range(count):
                    await host.call(args.hook, payload=PAYLOAD)

            await worker(500)  # warm-up, not profiled
            t0 = now_ns()
            profiler.enable()
            async with anyio.create_task_group() as tg:
                for _ in range(args.inflight):
                    tg.start_soon(worker, per_task)
            profiler.disable()
            elapsed = (now_ns() - t0) / 1e9
            n = per_task * args.inflight
            print(
                f"{n} calls in {elapsed:.2f} s under cProfile: {elapsed / n * 1e6:.1f} µs "
                f"per call, {args.inflight} in flight, {args.backend}, {args.launcher}"
            )

    pb.run_on(args.backend, run)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
