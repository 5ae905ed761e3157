"""The ``run``, ``check``, ``demo`` and ``top`` subcommands of the ``plugbox`` command.

``add_commands(subparsers)`` registers them on an argparse subparsers object; each
sets ``func``, a handler ``(args) -> int`` returning the exit status::

    plugbox run PLUGIN --hook NAME --args JSON [--spec pipeline|agent] [--config JSON]
                [--memory-mb N] [--cpu-seconds S] [--timeout T]
    plugbox check PLUGIN [--spec pipeline|agent] [--config JSON] [--json]
    plugbox demo
    plugbox top [--iterations N] [--interval S]

Exit status (the same table as the rest of the ``plugbox`` command):

====  ==================================================================================
code  meaning
====  ==================================================================================
0     success: the hook answered (run), the plugin loads without problems (check), the
      demo saw every plugin reported with its true cause (demo), the view ended (top)
1     the command ran and found a failure: the plugin failed the call (run: the JSON on
      stdout carries its FailureReport), could not be loaded or has validation
      problems (check), a plugin was not reported truthfully (demo)
2     usage error: a bad option, ``--args`` or ``--config`` not a JSON object, a hook
      the spec does not have
3     the command could not do its work: the plugin could not be loaded (run), the
      demo script is missing (demo)
130   interrupted
====  ==================================================================================

Errors go to stderr; results (JSON for ``run``) to stdout.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..host import PluginHost
    from ..limits import Limits
    from ..specs import HookSet

from .main import EXIT_ERROR as EXIT_ERROR  # the statuses every subcommand shares
from .main import EXIT_FAILED as EXIT_FAILED
from .main import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from .main import EXIT_OK as EXIT_OK
from .main import EXIT_USAGE as EXIT_USAGE

EXIT_STATUS = """\
exit status:
  0    success
  1    the plugin failed (run), cannot be loaded or has problems (check), or the demo
       saw a plugin reported with the wrong cause
  2    usage error (bad option, --args/--config not a JSON object, unknown hook)
  3    the command could not do its work (run: the plugin could not be loaded;
       demo: its script is missing)
  130  interrupted
"""

DEMO_SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "demo.py"

SubParsers = Any  # argparse's _SubParsersAction is private


class UsageError(Exception):
    """A bad argument the parser could not catch (JSON, hook name)."""


# ---------------------------------------------------------------------- helpers
def _fmt() -> type[argparse.RawDescriptionHelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


def _spec(name: str) -> HookSet:
    from .. import specs

    return specs.AGENT if name == "agent" else specs.PIPELINE


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, not {type(value).__name__}")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    from ..limits import Limits

    given: dict[str, Any] = {}
    if args.memory_mb is not None:
        given["memory_mb"] = args.memory_mb
    if args.cpu_seconds is not None:
        given["cpu_seconds"] = args.cpu_seconds
    if args.timeout is not None:
        given["call_timeout"] = args.timeout
    try:
        return Limits(**given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _plain(value: Any) -> Any:
    """JSON's default: bytes as {"$bytes": base64}."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _report_dict(report: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(report)
    out["stderr_tail"] = list(report.stderr_tail)
    return out


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits (default: plugbox.Limits())")
    group.add_argument(
        "--memory-mb",
        type=int,
        metavar="N",
        help="memory the plugin may allocate beyond the bare worker",
    )
    group.add_argument(
        "--cpu-seconds", type=float, metavar="S", help="CPU seconds per call (SIGXCPU beyond)"
    )
    group.add_argument(
        "--timeout", type=float, metavar="T", help="wall-clock deadline of each call, in seconds"
    )


def _usage(command: str, exc: Exception) -> int:
    print(f"plugbox {command}: {exc}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------------- run
RUN_HELP = """\
Load PLUGIN in a sandboxed worker, call one hook with the given arguments, and print
the outcome as one JSON object: {"ok", "plugin", "version", "hook", "value", "args",
"failure"} ("failure" is the FailureReport when the plugin failed, else null; bytes
appear as {"$bytes": base64}).

PLUGIN is a reference: path/to/file.py, path/to/file.py:Class, package.module or
package.module:Class, e.g. plugbox.testing.faults:SegfaultPlugin.

examples:
  plugbox run examples/plugins/upper.py --hook process --args '{"input_data": "hi"}'
  plugbox run plugbox.testing.faults:SleepPlugin --config '{"hooks": ["process"]}' \\
      --hook process --args '{"input_data": 1}' --timeout 0.5
"""


def _add_run(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "run",
        help="call one hook of a plugin and print the outcome as JSON",
        description=RUN_HELP,
        epilog=EXIT_STATUS,
        formatter_class=_fmt(),
    )
    parser.add_argument("plugin", metavar="PLUGIN", help="the plugin's reference")
    parser.add_argument("--hook", required=True, metavar="NAME", help="the hook to call")
    parser.add_argument(
        "--args",
        default="{}",
        metavar="JSON",
        help="the hook's arguments, a JSON object (default {})",
    )
    parser.add_argument(
        "--spec",
        choices=("pipeline", "agent"),
        default="pipeline",
        help="the hook set the host serves (default pipeline)",
    )
    parser.add_argument(
        "--config", metavar="JSON", help="the plugin's config, a JSON object handed to initialize"
    )
    _add_limit_options(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """``plugbox run``: see RUN_HELP."""
    try:
        hook_args = _json_object(args.args, "--args")
        config = _json_object(args.config, "--config")
        limits = _limits(args)
        spec = _spec(args.spec)
        if args.hook not in spec:
            raise UsageError(
                f"the {args.spec} spec has no hook {args.hook!r} (it has: {', '.join(spec)})"
            )
    except UsageError as exc:
        return _usage("run", exc)
    from ..errors import PluginFailure, PluginLoadError

    async def main() -> int:
        from ..host import PluginHost

        async with PluginHost(spec) as host:
            try:
                info = await host.add(args.plugin, config=config, limits=limits, on_failure="raise")
            except PluginLoadError as exc:
                print(f"plugbox run: {exc}", file=sys.stderr)
                return EXIT_ERROR
            result: dict[str, Any] = {
                "ok": True,
                "plugin": info.name,
                "version": info.version,
                "hook": args.hook,
                "value": None,
                "args": hook_args,
                "failure": None,
            }
            try:
                outcome = await host.call(args.hook, **hook_args)
            except TypeError as exc:
                print(f"plugbox run: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except PluginFailure as exc:
                result.update(ok=False, failure=_report_dict(exc.report))
                print(json.dumps(result, default=_plain))
                print(f"plugbox run: {exc.report.summary()}", file=sys.stderr)
                return EXIT_FAILED
            result.update(value=outcome.value, args=outcome.args)
            print(json.dumps(result, default=_plain))
            return EXIT_OK

    return _run_async(main)


def _run_async(main: Callable[[], Any]) -> int:
    import anyio

    try:
        return int(anyio.run(main, backend="asyncio"))
    except KeyboardInterrupt:
        print("plugbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# ---------------------------------------------------------------------- check
CHECK_HELP = """\
Load PLUGIN in a sandboxed worker (under the default limits and sandbox), as a host
would, and list its name, version, the hooks it implements with the arguments each
receives, the sandbox layers in force, and any validation problems: a load error
(missing, does not import, a hook taking an argument the spec lacks...) or a method
named like a hook the spec does not declare.
"""


def _add_check(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "check",
        help="load a plugin sandboxed and list its hooks and problems",
        description=CHECK_HELP,
        epilog=EXIT_STATUS,
        formatter_class=_fmt(),
    )
    parser.add_argument("plugin", metavar="PLUGIN", help="the plugin's reference")
    parser.add_argument(
        "--spec",
        choices=("pipeline", "agent"),
        default="pipeline",
        help="the hook set to check it against (default pipeline)",
    )
    parser.add_argument(
        "--config", metavar="JSON", help="the plugin's config, a JSON object handed to initialize"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    """``plugbox check``: see CHECK_HELP."""
    try:
        config = _json_object(args.config, "--config")
    except UsageError as exc:
        return _usage("check", exc)
    spec = _spec(args.spec)

    from ..errors import PluginLoadError

    async def main() -> int:
        from ..host import PluginHost

        async with PluginHost(spec) as host:
            try:
                info = await host.add(args.plugin, config=config)
            except PluginLoadError as exc:
                found: dict[str, Any] = {
                    "plugin": args.plugin,
                    "loaded": False,
                    "problems": [exc.reason],
                }
                if args.json:
                    print(json.dumps(found))
                print(f"plugbox check: {exc}", file=sys.stderr)
                return EXIT_FAILED
            hooks = {h: list(p.hooks.get(h, [])) for p in host._plugins for h in p.hooks}
            found = {
                "plugin": info.name,
                "version": info.version,
                "ref": info.ref,
                "loaded": True,
                "hooks": hooks,
                "problems": list(info.problems),
                "layers": {k: v for k, v in info.layers.items()},
            }
        if args.json:
            print(json.dumps(found))
        else:
            print(f"plugin   {found['plugin']} (version {found['version'] or '?'})")
            print(f"ref      {found['ref']}")
            print(f"spec     {args.spec}")
            print("hooks")
            for hook, names in hooks.items():
                print(f"  {hook}({', '.join(names)})")
            if not hooks:
                print("  (none)")
            on = [k for k, v in found["layers"].items() if v]
            off = [k for k, v in found["layers"].items() if not v]
            print(f"layers   {', '.join(on) or '-'}")
            if off:
                print(f"absent   {', '.join(off)}")
            print("problems" + ("" if found["problems"] else "  none"))
            for problem in found["problems"]:
                print(f"  {problem}")
        return EXIT_FAILED if found["problems"] else EXIT_OK

    return _run_async(main)


# ---------------------------------------------------------------------- demo
DEMO_HELP = """\
Run the seed chapter's exercise (examples/demo.py): a message-logging plugin beside
eight misbehaving ones, all under memory, CPU and time limits; prints what the host
reported for each and shows it serving on. Takes about six seconds.
"""


def _add_demo(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the chapter exercise: misbehaving plugins contained",
        description=DEMO_HELP,
        epilog=EXIT_STATUS,
        formatter_class=_fmt(),
    )
    parser.add_argument("--script", type=Path, default=DEMO_SCRIPT, help=argparse.SUPPRESS)
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """``plugbox demo``: load the demo script and run its async ``main``."""
    script: Path = args.script
    if not script.is_file():
        print(
            f"plugbox demo: {script} is missing (the demo ships with plugbox's source "
            f"tree, under examples/)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    spec = importlib.util.spec_from_file_location("plugbox_demo", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _run_async(module.main)


# ---------------------------------------------------------------------- top
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


def _add_top(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "top",
        help="a live view of a demo host's workers",
        description=TOP_HELP,
        epilog=EXIT_STATUS,
        formatter_class=_fmt(),
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

    failures: dict[str, int] = {}
    for report in host.reports:
        failures[report.plugin] = failures.get(report.plugin, 0) + 1
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
                "failures": failures.get(info.name, 0),
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
        return _usage("top", ValueError("--iterations and --interval must be >= 0"))
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
                    f"{time.monotonic() - started:.1f} s, {len(host.reports)} failures"
                )
                print(clear + render(worker_rows(host), title), flush=True)
                if not clear:
                    print(flush=True)
        return EXIT_OK

    try:
        return _run_async(main)
    finally:
        quiet.setLevel(level)


# ---------------------------------------------------------------------- registering
def add_commands(subparsers: SubParsers) -> None:
    """Register ``run``, ``check``, ``demo`` and ``top`` on ``subparsers``."""
    for register in (_add_run, _add_check, _add_demo, _add_top):
        register(subparsers)


__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_commands",
    "check_command",
    "demo_command",
    "render",
    "run_command",
    "top_command",
    "worker_rows",
]
