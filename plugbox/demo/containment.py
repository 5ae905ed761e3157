"""The demo: a message logger, a healthy plugin and eight misbehaving ones share one
host, each in its own sandboxed worker under the same limits; the host reports each
failure with its true cause and serves on. ``plugbox demo`` runs it (about six seconds).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plugbox import FailureReport, Limits, Outcome, PluginHost, Sandbox, specs

PLUGINS = Path(__file__).resolve().parent / "plugins"

#: the misbehaving plugins: (file under plugins/misbehaving/, plugin name, the cause the
#: host must report for it).
MISBEHAVING: list[tuple[str, str, str]] = [
    ("memory_bomb.py", "memory-bomb", "memory"),
    ("cpu_spin.py", "cpu-spin", "cpu"),
    ("infinite_sleep.py", "infinite-sleep", "timeout"),
    ("segfault.py", "segfault", "crashed"),
    ("hard_exit.py", "hard-exit", "crashed"),
    ("raises.py", "raises", "raised"),
    ("unserializable.py", "unserializable", "raised"),
    ("stdout_flood.py", "stdout-flood", "ok"),  # floods stdout, then returns: no failure
]

#: the same limits for every plugin. The CPU limit must come before the deadline, or a
#: CPU spin is ended by the deadline ("timeout") instead of SIGXCPU ("cpu"): RLIMIT_CPU
#: counts whole seconds, so a call with cpu_seconds=1 may use up to 2 s of CPU before
#: SIGXCPU; hence a 3 s deadline (which is also what ends the endless sleep).
#: stderr_tail_lines is raised so that a crash's whole faulthandler trace fits in its report.
LIMITS = Limits(memory_mb=64, cpu_seconds=1, call_timeout=3.0, stderr_tail_lines=40)

#: messages sent through the pipeline once the misbehaving plugins are gone.
MESSAGES = ["hello again", "the host is still up", "isolation works"]
#: calls timed for the latency figures.
TIMED_CALLS = 200


async def run_pipeline(host: PluginHost, message: str) -> tuple[Outcome, list[FailureReport]]:
    """pre_process, process (the chain), post_process; the chain's outcome and every
    failure reported along the way."""
    before = await host.call("pre_process", input_data=message)
    outcome = await host.call("process", input_data=message)
    after = await host.call("post_process", input_data=message, output=outcome.value)
    return outcome, [*before.failures, *outcome.failures, *after.failures]


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    widths[-1] = len(header[-1])  # the last column is free text: do not pad it
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def shorten(text: str, width: int = 64) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def report_row(name: str, expected: str, report: FailureReport | None) -> list[str]:
    if report is None:
        return [
            name,
            "ok",
            "-",
            "-",
            "-",
            "-",
            "yes" if expected == "ok" else "NO",
            "answered normally",
        ]
    how = report.signal or (f"exit {report.exit_code}" if report.exit_code is not None else "-")
    if report.cause == "raised":
        how = "alive"  # the plugin's own exception: the worker lives on
    return [
        name,
        report.cause,
        how,
        f"{report.duration:.2f} s",
        f"{report.peak_rss_kb / 1024:.0f} MB",
        f"{report.cpu_time:.2f} s",
        "yes" if report.cause == expected else "NO",
        shorten(report.detail),
    ]


async def main() -> int:
    """Add the plugins to a host on the PIPELINE hooks, send one message through them
    and print, per plugin, what the host reported; then remove the misbehaving ones and
    time the host serving on. Returns 0 when every plugin was reported with its true
    cause and nothing failed afterwards, else 1. Needs no network."""
    logging.basicConfig(level=logging.INFO, format="  | %(name)s: %(message)s", stream=sys.stdout)
    # The host logs a worker's stdout and stderr under plugbox.plugin.<name>, rate-limited.
    # The misbehaving plugins' output (the flood's lines and "lines dropped" notes, the
    # segfault's faulthandler trace) is muted here: the host's own warnings (logger
    # plugbox.host) say what happened, and a report keeps the tail of the plugin's stderr.
    for _file, name, _expected in MISBEHAVING:
        logging.getLogger(f"plugbox.plugin.{name}").setLevel(logging.ERROR)
    # the audit trail (a record per registration and call) is for files, not this screen
    logging.getLogger("plugbox.audit").setLevel(logging.WARNING)

    started = time.monotonic()
    # The message logger may write only in its scratch directory (Landlock), so the
    # log's directory is given as its scratch; when the demo runs as root, workers
    # drop to the user "nobody", so that directory must be writable by it.
    log_dir = tempfile.mkdtemp(prefix="plugbox-demo-")
    os.chmod(log_dir, 0o777)
    log_path = os.path.join(log_dir, "messages.jsonl")
    exit_code = 0
    try:
        async with PluginHost(specs.PIPELINE) as host:
            print(
                f"1. Starting plugins, each in its own worker, under {LIMITS.memory_mb} MB, "
                f"{LIMITS.cpu_seconds:g} s CPU per call, a {LIMITS.call_timeout:g} s deadline"
            )
            t0 = time.monotonic()
            await host.add(
                str(PLUGINS / "message_logger.py"),
                config={"path": log_path},
                limits=LIMITS,
                on_failure="skip",
                sandbox=Sandbox(scratch=log_dir),
            )
            await host.add(str(PLUGINS / "upper.py"), limits=LIMITS, on_failure="skip")
            for file, _name, _expected in MISBEHAVING:
                await host.add(
                    str(PLUGINS / "misbehaving" / file), limits=LIMITS, on_failure="skip"
                )
            elapsed = time.monotonic() - t0
            print(
                f"   {len(host.plugins)} plugins started in {elapsed * 1000:.0f} ms "
                f"({elapsed / len(host.plugins) * 1000:.1f} ms each): "
                f"{', '.join(p.name for p in host.plugins)}"
            )

            message = "hello, plugins"
            print(f"\n2. One message through the whole pipeline: {message!r}")
            t0 = time.monotonic()
            outcome, failures = await run_pipeline(host, message)
            elapsed = time.monotonic() - t0
            print(
                f"\n   The chain's result: {outcome.value!r} after {elapsed:.2f} s; "
                f"answered by {', '.join(outcome.called)}"
            )
            by_name = {r.plugin: r for r in failures}
            rows = [
                report_row("message-logger", "ok", by_name.get("message-logger")),
                report_row("upper", "ok", by_name.get("upper")),
            ]
            rows += [
                report_row(name, expected, by_name.get(name))
                for _file, name, expected in MISBEHAVING
            ]
            print()
            print_table(
                rows, ["plugin", "cause", "exit/sig", "took", "peak RSS", "CPU", "true?", "detail"]
            )
            if any(row[6] != "yes" for row in rows):
                print("\n   !! some plugin was not reported with its true cause")
                exit_code = 1
            for report in failures:
                if report.stderr_tail:
                    print(f"\n   {report.plugin}'s stderr, as kept in its report (excerpt):")
                    for line in report.stderr_tail:
                        if line.startswith("Fatal") or "/plugins/" in line:
                            print(f"     {line.strip()}")

            print("\n3. The workers afterwards (a killed worker is restarted on its next call)")
            print_table(
                [
                    [p.name, p.state, str(p.pid or "-"), str(p.calls), str(p.failures)]
                    for p in host.plugins
                ],
                ["plugin", "state", "pid", "calls", "killed"],
            )

            print("\n4. The misbehaving plugins removed, the same host serves on")
            for _file, name, _expected in MISBEHAVING:
                await host.remove(name)
            for message in MESSAGES:
                t0 = time.monotonic()
                outcome, failures = await run_pipeline(host, message)
                elapsed = time.monotonic() - t0
                print(
                    f"   {message!r} -> {outcome.value!r}: {elapsed * 1000:.2f} ms for "
                    f"pre_process + process + post_process, {len(failures)} failures"
                )
                if failures:
                    exit_code = 1
            logging.getLogger("plugbox.plugin.message-logger").setLevel(logging.WARNING)
            latencies: list[float] = []
            for i in range(TIMED_CALLS):
                t0 = time.perf_counter()
                await host.call("process", input_data=f"message {i}")
                latencies.append(time.perf_counter() - t0)
            logging.getLogger("plugbox.plugin.message-logger").setLevel(logging.NOTSET)
            latencies.sort()
            median = statistics.median(latencies)
            p95 = latencies[int(len(latencies) * 0.95)]
            print(
                f"   {TIMED_CALLS} more process calls (2 plugins, one round trip each): "
                f"median {median * 1e6:.0f} us, p95 {p95 * 1e6:.0f} us per call "
                f"(the message logger's log lines muted)"
            )
            print(f"   Failures recorded by the host in all: {len(host.reports)}")
            print("\n5. Closing the host (plugins close in reverse order)")

        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
        hooks: dict[str, int] = {}
        for line in lines:
            entry: dict[str, Any] = json.loads(line)
            hooks[entry["hook"]] = hooks.get(entry["hook"], 0) + 1
        print(
            f"   The message logger wrote {len(lines)} JSON lines to {log_path}: "
            + ", ".join(f"{n} {hook}" for hook, n in hooks.items())
        )
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\nThe host survived every plugin. Total time: {time.monotonic() - started:.1f} s")
    return exit_code
