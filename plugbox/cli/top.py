"""``plugbox top``: a live table of a demo host's workers (memory, CPU, calls, failures,
restarts), refreshed in place."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from .codes import EXIT_OK, EXIT_STATUS, run_async, usage_error

if TYPE_CHECKING:
    from ..host import PluginHost

TOP_HELP = """\
Start a demo host and show its workers live, refreshed every --interval seconds:
pid, plugin, resident memory, CPU time, calls, failures (every report, of any cause),
restarts and state. The demo host serves the PIPELINE hooks with a few plugins from
plugbox.testing.faults: two healthy canaries (one busy, one holding memory), one that
raises on every call after its first, and one that exits after every three calls (and
is restarted). Each refresh sends one process call through them.
"""

#: the demo host's plugins: (fault class, config).
TOP_PLUGINS: list[tuple[str, dict[str, Any]]] = [
    ("CanaryPlugin", {"name": "canary", "hold_mb": 16, "work_ms": 1}),
    ("CanaryPlugin", {"name": "busy", "work_ms": 150}),
    ("RaisePlugin", {"name": "flaky", "after": 1}),
    ("ExitPlugin", {"name": "crashy", "after": 3}),
]


def register(subparsers: Any) -> None:
    """Register ``top`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "top",
        help="a live view of a demo host's workers",
        description=TOP_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=0,
        metavar="N",
        help="stop after N refreshes (default 0: until interrupted)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes (default 1)",
    )
    parser.set_defaults(func=top_command)


def worker_rows(host: PluginHost) -> list[dict[str, Any]]:
    """One row per plugin: pid, plugin, rss_mb, cpu_s, calls, failures, restarts, state."""
    import psutil

    rows = []
    for info in host.plugins:
        rss_mb: float | None = None
        cpu_s: float | None = None
        if info.pid is not None and info.state == "running":
            try:
                proc = psutil.Process(info.pid)
                rss_mb = proc.memory_info().rss / (1 << 20)
                times = proc.cpu_times()
                cpu_s = times.user + times.system
            except psutil.Error:
                pass
        rows.append(
            {
                "pid": info.pid,
                "plugin": info.name,
                "rss_mb": rss_mb,
                "cpu_s": cpu_s,
                "calls": info.calls,
                "failures": host.failure_counts(info.name).total,
                "restarts": info.restarts,
                "state": info.state,
            }
        )
    return rows


def render(rows: list[dict[str, Any]], title: str) -> str:
    """The table ``top`` prints."""
    header = ["PID", "PLUGIN", "RSS MB", "CPU s", "CALLS", "FAILURES", "RESTARTS", "STATE"]
    table = [
        [
            str(r["pid"] or "-"),
            r["plugin"],
            "-" if r["rss_mb"] is None else f"{r['rss_mb']:.1f}",
            "-" if r["cpu_s"] is None else f"{r['cpu_s']:.2f}",
            str(r["calls"]),
            str(r["failures"]),
            str(r["restarts"]),
            r["state"],
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    lines = [title, ""]
    for row in [header, *table]:
        lines.append(
            "  ".join(
                cell.rjust(w) if i in (0, 2, 3, 4, 5, 6) else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines)


def top_command(args: argparse.Namespace) -> int:
    """``plugbox top``: see TOP_HELP."""
    if args.iterations < 0 or args.interval < 0:
        return usage_error("top", ValueError("--iterations and --interval must be >= 0"))
    import anyio

    from .. import specs
    from ..limits import Limits

    limits = Limits(
        memory_mb=128, cpu_seconds=2, call_timeout=2.0, backoff_initial=0.0, max_failures=1_000_000
    )
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""

    # the table shows every failure: the host's warnings and the plugins' output would
    # only scroll it away
    import logging

    quiet = logging.getLogger("plugbox")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)

    async def main() -> int:
        from ..host import PluginHost

        async with PluginHost(specs.PIPELINE, on_failure="skip") as host:
            for cls, config in TOP_PLUGINS:
                await host.add(
                    f"plugbox.testing.faults:{cls}",
                    config={**config, "hooks": ["process"]},
                    limits=limits,
                )
            n = 0
            started = time.monotonic()
            while args.iterations == 0 or n < args.iterations:
                if n:
                    await anyio.sleep(args.interval)
                n += 1
                await host.call("process", input_data=n)
                count = f"/{args.iterations}" if args.iterations else ""
                title = (
                    f"plugbox top - demo host pid {os.getpid()}, refresh {n}{count}, "
                    f"{time.monotonic() - started:.1f} s, "
                    f"{sum(host.failure_counts(p.name).total for p in host.plugins)} failures"
                )
                print(clear + render(worker_rows(host), title), flush=True)
                if not clear:
                    print(flush=True)
        return EXIT_OK

    try:
        return run_async(main)
    finally:
        quiet.setLevel(level)


__all__ = ["register", "render", "top_command", "worker_rows"]
