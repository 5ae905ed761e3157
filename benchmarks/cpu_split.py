"""Where 64 calls in flight spend their CPU: host and worker, beside the plain
asyncio Protocol's client and server, in one run.

    python benchmarks/cpu_split.py [--calls N] [--rounds R] [--hook aecho|echo]

For each round it runs the throughput figure's shape (64 tasks calling in a loop)
once through plugbox and once through the Protocol echo, pinned as ``run.py`` pins
(this process on the first CPU, children on the others), and prints calls per second
and each process's CPU time (user + system, from psutil) per call. The medians over
the rounds come last. psutil's CPU times are clock ticks (10 ms), so a round needs
enough calls to span many of them; the defaults do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Awaitable, Callable

import anyio
import bench_baselines as bb
import bench_plugbox as pb
import psutil
from bench_common import PAYLOAD, PLUGIN, now_ns, pin_children, set_pinning

from plugbox import PluginHost

INFLIGHT = 64


def cpu_seconds() -> dict[int, float]:
    """CPU time of this process and each of its descendants, by pid."""
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[proc.pid] = times.user + times.system
    return out


async def measured(
    calls: int,
    spawn: Callable[[int], Awaitable[None]],
) -> tuple[float, dict[int, float]]:
    """(calls/s, CPU µs per call by pid) for ``calls`` calls: ``spawn(count)`` runs
    64 tasks making ``count`` calls each."""
    per_task = calls // INFLIGHT
    await spawn(50)  # warm-up
    before, t0 = cpu_seconds(), now_ns()
    await spawn(per_task)
    elapsed, after = (now_ns() - t0) / 1e9, cpu_seconds()
    n = per_task * INFLIGHT
    return n / elapsed, {
        pid: (after[pid] - before[pid]) * 1e6 / n
        for pid in after
        if pid in before and after[pid] > before[pid]
    }


async def plugbox_round(calls: int, hook: str) -> tuple[float, float, float]:
    async with PluginHost(pb.HOOKS) as host:
        await host.add(PLUGIN)
        await host.call(hook, payload=PAYLOAD)
        pin_children()
        (plugin,) = host._plugins
        assert plugin.worker is not None
        worker_pid = plugin.worker.pid

        async def spawn(count: int) -> None:
            await pb.wave(host, hook, INFLIGHT, count)

        rate, cpu = await measured(calls, spawn)
        return rate, cpu.get(psutil.Process().pid, 0.0), cpu.get(worker_pid, 0.0)


def protocol_round(calls: int) -> tuple[float, float, float]:
    with bb.echo_child("asyncio") as (sock, proc):

        async def main() -> tuple[float, float, float]:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            transport, client = await loop.create_connection(bb.EchoClient, sock=sock)

            async def spawn(count: int) -> None:
                async def one() -> None:
                    for _ in range(count):
                        await client.call(PAYLOAD)

                await asyncio.gather(*(one() for _ in range(INFLIGHT)))

            try:
                rate, cpu = await measured(calls, spawn)
            finally:
                transport.close()
                await client.closed
            return rate, cpu.get(psutil.Process().pid, 0.0), cpu.get(proc.pid, 0.0)

        return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hook", default="aecho", choices=("aecho", "echo"))
    args = ap.parse_args(argv)
    print(set_pinning("spread"), file=sys.stderr)
    pb.quiet_logging()
    rows: dict[str, list[tuple[float, float, float]]] = {"plugbox": [], "Protocol": []}
    print(f"{INFLIGHT} calls in flight, {args.calls} calls per round; CPU µs per call")
    print(f"{'round':>5}  {'what':<9} {'calls/s':>10} {'host/client':>12} {'worker/server':>14}")
    for i in range(args.rounds):
        for name, run in (
            ("plugbox", lambda: anyio.run(plugbox_round, args.calls, args.hook)),
            ("Protocol", lambda: protocol_round(args.calls)),
        ):
            rate, host, child = run()
            rows[name].append((rate, host, child))
            print(f"{i + 1:>5}  {name:<9} {rate:>10,.0f} {host:>12.1f} {child:>14.1f}")
    print("median:")
    for name, values in rows.items():
        rate, host, child = (statistics.median(v[k] for v in values) for k in range(3))
        print(f"{'':>5}  {name:<9} {rate:>10,.0f} {host:>12.1f} {child:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
