"""The exit statuses of the ``plugbox`` command, one table for every subcommand, and the
two ways a handler ends with one: a usage error, or an async run interrupted."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERRUPTED = 130

#: the epilog of ``plugbox --help`` and of every subcommand's help
EXIT_STATUS = """\
exit status:
  0    success
  1    the command ran and found a failure: the plugin failed (run), cannot be
       loaded or has problems (check), was not reported with its true cause (demo),
       differs from the lock file or cannot be locked (lock), a sandbox layer not in
       force or a probe the sandbox did not refuse (doctor --strict)
  2    usage error (bad command or option, --args/--config not a JSON object, a hook
       the spec does not have, a lock file that cannot be read)
  3    the command could not do its work (run: the plugin could not be loaded;
       doctor: no probe worker could be run; demo, bench: no script or suite to run)
  130  interrupted
"""


def usage_error(command: str, exc: Exception) -> int:
    """Say what was wrong with ``plugbox COMMAND``'s arguments (a bad JSON object, an
    unknown hook: what argparse cannot check) on stderr, and return ``EXIT_USAGE``."""
    print(f"plugbox {command}: {exc}", file=sys.stderr)
    return EXIT_USAGE


def run_async(main: Callable[[], Awaitable[int]]) -> int:
    """Run an async handler body on asyncio and return its exit status; Ctrl-C
    becomes ``EXIT_INTERRUPTED`` with a one-line note instead of a traceback."""
    import anyio

    try:
        return int(anyio.run(main, backend="asyncio"))
    except KeyboardInterrupt:
        print("plugbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STATUS",
    "EXIT_USAGE",
    "run_async",
    "usage_error",
]
