"""The ``plugbox`` command (also ``python -m plugbox``): the parser and the dispatch.

Each command family's module registers its subcommands on the subparsers
(``register(subparsers)``) and sets ``func``, a function from the parsed arguments to
an exit status from ``codes`` (argparse's ``set_defaults(func=...)`` convention).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from . import bench, demo, doctor, lock, run, top
from .codes import EXIT_INTERRUPTED, EXIT_STATUS, EXIT_USAGE

#: the command families, in the order --help lists their subcommands
COMMANDS: list[Callable[[Any], None]] = [
    run.register,  # run, check
    demo.register,
    top.register,
    lock.add_lock_commands,  # lock write, lock verify
    doctor.register,
    bench.register,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``plugbox`` parser with every subcommand registered."""
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
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("plugbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "build_parser", "main"]
