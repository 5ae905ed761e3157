"""``plugbox run`` (call one hook of a plugin, print the outcome as JSON) and ``plugbox
check`` (load a plugin sandboxed, list its hooks and problems). Errors go to stderr;
results to stdout; exit statuses are those of ``codes``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ..reports import bytes_as_json
from .codes import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STATUS,
    EXIT_USAGE,
    run_async,
    usage_error,
)

if TYPE_CHECKING:
    from ..limits import Limits
    from ..specs import HookSet


class UsageError(Exception):
    """A bad argument the parser could not catch (JSON, hook name)."""


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


def _json_default(value: Any) -> Any:
    """JSON's ``default`` for ``run``'s output: bytes as plugbox writes them everywhere."""
    if isinstance(value, bytes | bytearray):
        return bytes_as_json(value)
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


RUN_HELP = """\
Load PLUGIN in a sandboxed worker, call one hook with the given arguments, and print
the outcome as one JSON object: {"ok", "plugin", "version", "hook", "value", "args",
"failure"} ("failure" is the FailureReport when the plugin failed, else null; bytes
appear as {"$bytes": base64}).

PLUGIN is a reference: path/to/file.py, path/to/file.py:Class, package.module or
package.module:Class, e.g. plugbox.testing.faults:SegfaultPlugin.

examples:
  plugbox run plugbox.demo.plugins.upper --hook process --args '{"input_data": "hi"}'
  plugbox run plugbox.testing.faults:SleepPlugin --config '{"hooks": ["process"]}' \\
      --hook process --args '{"input_data": 1}' --timeout 0.5
"""


def _add_run(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="call one hook of a plugin and print the outcome as JSON",
        description=RUN_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        return usage_error("run", exc)
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
                print(json.dumps(result, default=_json_default))
                print(f"plugbox run: {exc.report.summary()}", file=sys.stderr)
                return EXIT_FAILED
            result.update(value=outcome.value, args=outcome.args)
            print(json.dumps(result, default=_json_default))
            return EXIT_OK

    return run_async(main)


CHECK_HELP = """\
Load PLUGIN in a sandboxed worker (under the default limits and sandbox), as a host
would, and list its name, version, the hooks it implements with the arguments each
receives, the sandbox layers in force, and any validation problems: a load error
(missing, does not import, a hook taking an argument the spec lacks...) or a method
named like a hook the spec does not declare.
"""


def _add_check(sub: Any) -> None:
    parser = sub.add_parser(
        "check",
        help="load a plugin sandboxed and list its hooks and problems",
        description=CHECK_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        return usage_error("check", exc)
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

    return run_async(main)


def register(subparsers: Any) -> None:
    """Register ``run`` and ``check`` on an argparse subparsers object."""
    _add_run(subparsers)
    _add_check(subparsers)


__all__ = ["check_command", "register", "run_command"]
