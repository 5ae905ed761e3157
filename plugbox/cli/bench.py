"""``plugbox bench``: runs the benchmark suite of a source checkout (``benchmarks/run.py``).
The suite and the baselines it measures plugbox against are not part of the package."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from .codes import EXIT_ERROR, EXIT_STATUS

BENCH_HELP = """\
Run benchmarks/run.py: plugbox beside its baselines in one run, with the ratios against
the speed targets. The suite ships with plugbox's source repository, not the installed
package: run it from a checkout installed with the bench extra (pip install -e
'.[bench]'), or give --suite.
"""

#: where the suite sits in a source checkout, from its root
SUITE_IN_CHECKOUT = Path("benchmarks") / "run.py"


class NoBenchmarkSuite(Exception):
    """No benchmark suite to run: plugbox is not imported from a source checkout (it
    was installed from a wheel) and no ``--suite`` was given, or ``--suite`` names no
    file. The message says where to get one."""


def checkout_suite() -> Path | None:
    """``benchmarks/run.py`` of the source checkout this plugbox is imported from (run
    from the tree, or installed editable), or None when it is not in one: the checkout's
    root holds ``pyproject.toml`` and the suite beside the ``plugbox`` package."""
    root = Path(__file__).resolve().parents[2]
    suite = root / SUITE_IN_CHECKOUT
    if (root / "pyproject.toml").is_file() and suite.is_file():
        return suite
    return None


def find_suite(given: str | None) -> Path:
    """The suite to run: ``--suite`` when given, else the checkout's."""
    if given is not None:
        if not Path(given).is_file():
            raise NoBenchmarkSuite(f"no benchmark suite at {given}")
        return Path(given)
    suite = checkout_suite()
    if suite is None:
        raise NoBenchmarkSuite(
            "no benchmark suite: it ships with plugbox's source repository, not the "
            f"installed package (this plugbox, at {Path(__file__).resolve().parents[1]}, "
            "is not in a checkout). Clone the repository, run pip install -e '.[bench]' "
            "in it and plugbox bench from that install, or give --suite "
            "path/to/benchmarks/run.py"
        )
    return suite


def register(subparsers: Any) -> None:
    """Register ``bench`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite (from a source checkout)",
        description=BENCH_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--json", metavar="PATH", help="where to write the figures")
    parser.add_argument(
        "--suite",
        metavar="PATH",
        help="the suite's run.py (default: benchmarks/run.py of the checkout plugbox "
        "is imported from)",
    )
    parser.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """``plugbox bench``: run the suite in a child interpreter and pass on its exit
    status; ``EXIT_ERROR`` when there is no suite to run."""
    try:
        suite = find_suite(args.suite)
    except NoBenchmarkSuite as exc:
        print(f"plugbox bench: {exc}", file=sys.stderr)
        return EXIT_ERROR
    cmd = [sys.executable, str(suite)]
    if args.quick:
        cmd.append("--quick")
    if args.json:
        cmd += ["--json", args.json]
    return subprocess.run(cmd, check=False).returncode


__all__ = ["NoBenchmarkSuite", "bench_command", "checkout_suite", "find_suite", "register"]
