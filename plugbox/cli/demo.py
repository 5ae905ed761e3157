"""``plugbox demo``: runs the demo shipped in the package (``plugbox.demo``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .codes import EXIT_ERROR, EXIT_STATUS, run_async

DEMO_HELP = """\
Run plugbox's demo: a message-logging plugin beside eight misbehaving ones (a memory
bomb, a CPU spin, an endless sleep, a segfault, a hard exit, an exception, an
unserializable result, a stdout flood), each in its own worker under memory, CPU and
time limits; prints what the host reported for each and shows it serving on. Takes
about six seconds. Its source is in the package, under plugbox/demo/.
"""


def register(subparsers: Any) -> None:
    """Register ``demo`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "demo",
        help="run the demo: misbehaving plugins contained",
        description=DEMO_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # another script with an async main() to run instead (the tests' way in)
    parser.add_argument("--script", type=Path, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    """``plugbox demo``: run ``plugbox.demo.containment.main``, or with ``--script``
    the async ``main`` of that file, and return its exit status."""
    if args.script is None:
        from ..demo.containment import main

        return run_async(main)
    script: Path = args.script
    if not script.is_file():
        print(f"plugbox demo: {script} is missing", file=sys.stderr)
        return EXIT_ERROR
    spec = importlib.util.spec_from_file_location("plugbox_demo_script", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    script_main: Callable[[], Awaitable[int]] = module.main
    return run_async(script_main)


__all__ = ["demo_command", "register"]
