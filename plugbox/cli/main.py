"""The ``plugbox`` command (also ``python -m plugbox``).

One subcommand per verb, each registered by a function that adds its parser to the
subparsers (``register(subparsers)``) and sets ``func``, a function from the parsed
arguments to an exit status (argparse's ``set_defaults(func=...)`` convention).
``doctor`` is here now; ``run``, ``check``, ``demo``, ``bench`` and ``top`` join the
same way, by adding their register function to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__

#: exit statuses, shared by every subcommand
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130

EXIT_STATUS = """\
exit status:
  0    success
  1    the command ran and found a failure (for doctor --strict: a sandbox layer
       not in force, or a probe the sandbox did not refuse)
  2    usage error (bad command or option)
  3    the command could not do its work (for doctor: no probe worker could be run)
  130  interrupted
"""

DOCTOR_HELP = """\
For each sandbox layer: whether this system offers it (cheap kernel probes) and
whether a real worker, started with the default Sandbox, reported it in force. The
probe worker also tries three things the sandbox must refuse (a TCP connection to
127.0.0.1, a file written outside its scratch directory, a fork) and says how each
went.
"""

SubParsers = Any  # argparse's _SubParsersAction is private
Handler = Callable[[argparse.Namespace], int]


def _add_doctor(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "doctor",
        help="show which sandbox layers this system offers and a worker has",
        description=DOCTOR_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="print the diagnosis as one JSON object"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 unless every layer is in force in the probe worker "
        "and every probe was refused",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="give up on the probe worker after this long (default 20)",
    )
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    diagnosis = diagnose(timeout=args.timeout)
    if args.json:
        print(json.dumps(diagnosis.to_json(), indent=2))
    else:
        print(diagnosis.render())
    if diagnosis.error is not None:
        print(f"plugbox doctor: no probe worker could be run: {diagnosis.error}", file=sys.stderr)
        return EXIT_ERROR
    if args.strict and not diagnosis.ok:
        problems = [
            *(f"layer {name} not in force" for name in diagnosis.missing),
            *(f"{name} got through" for name in diagnosis.got_through),
        ]
        print(f"plugbox doctor --strict: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _add_run_commands(sub: SubParsers) -> None:
    from .run import add_commands

    add_commands(sub)


#: the benchmark suite of a source checkout (it is not part of the installed package)
BENCH_SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def _add_bench(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "bench",
        help="run the benchmark suite (from a source checkout)",
        description="Run benchmarks/run.py: plugbox beside its baselines in one run, with "
        "the ratios against the speed targets. Needs the bench extra "
        "(pip install -e '.[bench]') for the baselines.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--json", metavar="PATH", help="where to write the figures")
    parser.add_argument(
        "--suite",
        metavar="PATH",
        default=str(BENCH_SUITE),
        help="the suite's run.py (default: the checkout's)",
    )
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    suite = Path(args.suite)
    if not suite.is_file():
        print(
            f"plugbox bench: no benchmark suite at {suite}; it ships with the source "
            f"repository, not the installed package",
            file=sys.stderr,
        )
        return EXIT_ERROR
    cmd = [sys.executable, str(suite)]
    if args.quick:
        cmd.append("--quick")
    if args.json:
        cmd += ["--json", args.json]
    return subprocess.run(cmd, check=False).returncode


def _add_lock_commands(sub: SubParsers) -> None:
    from .lock import add_lock_commands

    add_lock_commands(sub)


#: the subcommands, in the order --help lists them
COMMANDS: list[Callable[[SubParsers], None]] = [
    _add_run_commands,
    _add_lock_commands,
    _add_doctor,
    _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plugbox",
        description="Run untrusted plugins in sandboxed worker processes.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"plugbox {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``plugbox`` command; returns its exit status (see ``--help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Handler = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("plugbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
