"""One call and 64 calls in flight, for several plugbox source trees, each beside the
plain asyncio Protocol, in interleaved rounds.

    python benchmarks/compare_trees.py TREE [TREE ...] [--rounds R] [--calls N]
                                       [--tput-calls N] [--crash-rounds N]
                                       [--start-rounds N] [--fanout-plugins N]
                                       [--pin spread|same|none]

A TREE is a checkout of plugbox (``git worktree add /tmp/base <commit>``, or ``.``).
Each measurement runs in a child process with ``PYTHONPATH=TREE``, so the host, the
zygote and the workers all run that tree's code; the harness is this checkout's
``benchmarks/``. Each child measures the Protocol too, and reports plugbox's figures
as ratios to it: one call's p50 ÷ the Protocol's p50, and calls per second with 64 in
flight ÷ the Protocol's. With ``--crash-rounds N`` each child also crashes its plugin N
times (run.py's crash rows: a standby worker ready, 50 ms between rounds) and reports
the medians of respawn + next call and of death → PluginCrashed, in ms; with
``--start-rounds N``, the median of N starts (run.py's "add + first call, zygote
running"), in ms; with ``--fanout-plugins N``, the p50 of an observe call reaching
N plugins (run.py's fan-out row, 300 calls), in ms. The rounds go through the trees
in turn, so a machine whose speed drifts (a VM) weighs on every tree alike, and each
round starts one tree later than the last (A B, B A, A B...): on a VM where whichever
tree ran second in a round did better, a fixed order made the trees' own difference
and their place in the round one figure (``--fixed-order`` keeps the order given).
Prints each round, then each tree's median and range, and how many rounds each tree
did better than the first tree in, round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(
    calls: int,
    tput_calls: int,
    crash_rounds: int = 0,
    start_rounds: int = 0,
    fanout_plugins: int = 0,
    pin: str = "spread",
) -> dict[str, Any]:
    """This process's figures (run with PYTHONPATH set to the tree under test)."""
    import bench_baselines as bb
    import bench_plugbox as pb
    from bench_common import set_pinning

    import plugbox

    set_pinning(pin)
    warmup = max(100, calls // 10)
    proto = statistics.median(bb.lat_asyncio_protocol(warmup, calls))
    ours = statistics.median(pb.lat_plugbox(warmup, calls))
    proto_tput = bb.tput_asyncio_protocol(tput_calls, 64)
    ours_tput = pb.tput_plugbox(tput_calls, 64)
    figures = {
        "plugbox": os.path.dirname(os.path.abspath(plugbox.__file__)),
        "protocol_us": proto,
        "plugbox_us": ours,
        "one_call": ours / proto,
        "in_flight_64": ours_tput / proto_tput,
    }
    if crash_rounds:
        pb.quiet_logging()
        crashes = pb.crash_rounds(crash_rounds, gap=0.05)
        figures["respawn_ms"] = statistics.median(crashes["respawn"]) / 1000
        figures["death_ms"] = statistics.median(crashes["death_to_report"]) / 1000
    if start_rounds:
        pb.quiet_logging()
        figures["start_ms"] = statistics.median(pb.start_plugbox_warm(start_rounds)) / 1000
    if fanout_plugins:
        pb.quiet_logging()
        fan = pb.fanout(fanout_plugins, 300)
        figures["fanout_ms"] = statistics.median(fan["many"]) / 1000
    return figures


def run_child(
    tree: str,
    calls: int,
    tput_calls: int,
    crash_rounds: int = 0,
    start_rounds: int = 0,
    fanout_plugins: int = 0,
    pin: str = "spread",
) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--calls",
            str(calls),
            "--tput-calls",
            str(tput_calls),
            "--crash-rounds",
            str(crash_rounds),
            "--start-rounds",
            str(start_rounds),
            "--fanout-plugins",
            str(fanout_plugins),
            "--pin",
            pin,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{tree}: the measurement failed:\n{out.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    expected = os.path.join(os.path.abspath(tree), "plugbox")
    if os.path.realpath(figures["plugbox"]) != os.path.realpath(expected):
        raise SystemExit(
            f"{tree}: the child imported plugbox from {figures['plugbox']}, not from the tree"
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", help="plugbox checkouts to compare")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3000, help="one-call samples per round")
    ap.add_argument(
        "--tput-calls", type=int, default=20_000, help="calls per 64-in-flight measurement"
    )
    ap.add_argument(
        "--crash-rounds",
        type=int,
        default=0,
        help="also crash the plugin this many times per round (respawn, death)",
    )
    ap.add_argument(
        "--start-rounds",
        type=int,
        default=0,
        help="also start the plugin this many times per round (add + first call)",
    )
    ap.add_argument(
        "--fanout-plugins",
        type=int,
        default=0,
        help="also time an observe call reaching this many plugins",
    )
    ap.add_argument(
        "--fixed-order",
        action="store_true",
        help="run the trees in the order given in every round (default: each "
        "round starts one tree later)",
    )
    ap.add_argument(
        "--pin",
        choices=["spread", "same", "none"],
        default="spread",
        help="where host and workers run: on different CPUs (default), one CPU, or "
        "wherever the scheduler puts them (bench_common.set_pinning)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(
            json.dumps(
                measure(
                    args.calls,
                    args.tput_calls,
                    args.crash_rounds,
                    args.start_rounds,
                    args.fanout_plugins,
                    args.pin,
                )
            )
        )
        return 0
    if not args.trees:
        ap.error("name at least one tree")
    results: dict[str, list[dict[str, Any]]] = {tree: [] for tree in args.trees}
    print(
        f"{'round':>5}  {'tree':30s} {'Protocol':>10} {'plugbox':>10} {'one call':>9} "
        f"{'64 in flight':>13}"
    )
    for rnd in range(1, args.rounds + 1):
        shift = 0 if args.fixed_order else (rnd - 1) % len(args.trees)
        for tree in args.trees[shift:] + args.trees[:shift]:
            f = run_child(
                tree,
                args.calls,
                args.tput_calls,
                args.crash_rounds,
                args.start_rounds,
                args.fanout_plugins,
                args.pin,
            )
            results[tree].append(f)
            more = (
                f"  respawn {f['respawn_ms']:.2f} ms, death → report {f['death_ms']:.2f} ms"
                if "respawn_ms" in f
                else ""
            )
            if "start_ms" in f:
                more += f"  start {f['start_ms']:.2f} ms"
            if "fanout_ms" in f:
                more += f"  fan-out {f['fanout_ms']:.2f} ms"
            print(
                f"{rnd:>5}  {tree[-30:]:30s} {f['protocol_us']:8.1f}µs {f['plugbox_us']:8.1f}µs "
                f"{f['one_call']:8.2f}x {f['in_flight_64']:12.2f}x{more}",
                flush=True,
            )
    print("\nmedian (range) over the rounds, as ratios to the Protocol:")
    summary = [("one call", "one_call", "x"), ("64 in flight", "in_flight_64", "x")]
    if args.crash_rounds:
        summary += [("respawn", "respawn_ms", " ms"), ("death → report", "death_ms", " ms")]
    if args.start_rounds:
        summary += [("start", "start_ms", " ms")]
    if args.fanout_plugins:
        summary += [(f"fan-out to {args.fanout_plugins}", "fanout_ms", " ms")]
    for tree, rounds in results.items():
        print(
            f"  {tree}: "
            + "; ".join(
                f"{label} {spread([r[key] for r in rounds], unit)}" for label, key, unit in summary
            )
        )
    first = args.trees[0]
    if len(results) > 1:
        print(f"\nrounds in which each tree did better than {first} (same round):")
        for tree in args.trees[1:]:
            print(
                f"  {tree}: "
                + "; ".join(
                    f"{label} {better(results[tree], results[first], key)}"
                    for label, key, _unit in summary
                )
            )
    return 0


def better(rounds: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> str:
    """``k of R``: the rounds in which ``rounds`` beat ``base`` on ``key`` (lower in
    ms and for one call's ratio, higher for the throughput ratio)."""
    higher_is_better = key == "in_flight_64"
    wins = sum(
        (mine[key] > theirs[key]) == higher_is_better and mine[key] != theirs[key]
        for mine, theirs in zip(rounds, base, strict=True)
    )
    return f"{wins} of {len(rounds)}"


def spread(values: list[float], unit: str) -> str:
    """``median (lowest-highest)`` of ``values``, two decimals, with ``unit``."""
    ordered = sorted(values)
    return f"{statistics.median(ordered):.2f}{unit} ({ordered[0]:.2f}-{ordered[-1]:.2f})"


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
