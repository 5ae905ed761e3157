"""``plugbox lock write`` (hash plugins and load each in a sandboxed worker to pin their
names, versions and hashes in a lock file) and ``plugbox lock verify`` (check the
plugins on disk against it; ``--hash-only`` starts no worker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from .codes import EXIT_FAILED, EXIT_OK, EXIT_STATUS, EXIT_USAGE

__all__ = ["add_lock_commands", "run_lock_verify", "run_lock_write"]


def add_lock_commands(subparsers: Any) -> None:
    """Register ``lock write`` and ``lock verify`` on an argparse subparsers object;
    each sets ``func`` to its handler ``(args) -> exit status``."""
    lock = subparsers.add_parser(
        "lock",
        help="write or verify a plugbox.lock (plugin names, versions, hashes)",
        description="Pin the name, version and sha256 of a set of plugins, and check them.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = lock.add_subparsers(dest="lock_command", metavar="{write,verify}")
    commands.required = True
    write = commands.add_parser(
        "write",
        help="lock plugins: hash them and load each in a sandboxed worker",
        description="Hash each plugin (without importing it in this process), load it in "
        "a sandboxed worker (initialize is not called) to read its name and "
        "versions, and write the lock file.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    write.add_argument(
        "refs",
        nargs="+",
        metavar="REF",
        help="plugin references: path/to/file.py[:Class] or package.module[:Class]",
    )
    write.add_argument(
        "--output",
        "-o",
        default="plugbox.lock",
        help="the lock file to write (default: plugbox.lock)",
    )
    write.add_argument(
        "--launcher", choices=("zygote", "subprocess"), default="zygote", help=argparse.SUPPRESS
    )
    write.set_defaults(func=run_lock_write)
    verify = commands.add_parser(
        "verify",
        help="check the plugins on disk against a lock file",
        description="Hash every locked plugin again and load it in a sandboxed worker; "
        "list every difference from the lock file.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "--lock", "-l", default="plugbox.lock", help="the lock file (default: plugbox.lock)"
    )
    verify.add_argument(
        "--hash-only", action="store_true", help="only compare hashes; start no worker"
    )
    verify.add_argument(
        "--launcher", choices=("zygote", "subprocess"), default="zygote", help=argparse.SUPPRESS
    )
    verify.set_defaults(func=run_lock_verify)


def run_lock_write(args: argparse.Namespace) -> int:
    """``plugbox lock write``: 0 on success, 1 if a plugin cannot be locked."""
    from ..errors import PlugboxError
    from ..host.inspect import write_lock

    try:
        lock = anyio.run(lambda: write_lock(args.refs, args.output, launcher=args.launcher))
    except PlugboxError as exc:
        print(f"plugbox lock write: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for entry in lock.entries:
        dist = f" ({entry.dist_name} {entry.dist_version})" if entry.dist_name else ""
        print(
            f"locked {entry.name} {entry.version or '(no version)'}{dist} "
            f"sha256:{entry.sha256[:16]}… {entry.ref}"
        )
    print(
        f"wrote {args.output} ({len(lock.entries)} plugin{'' if len(lock.entries) == 1 else 's'})"
    )
    return EXIT_OK


def run_lock_verify(args: argparse.Namespace) -> int:
    """``plugbox lock verify``: 0 if everything matches, 1 if not, 2 if the lock
    file cannot be read."""
    from ..host.inspect import verify_lock
    from ..trust.lock import LockFileError, read_lock

    try:
        lock = read_lock(args.lock)
    except LockFileError as exc:
        print(f"plugbox lock verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems = anyio.run(lambda: verify_lock(lock, load=not args.hash_only, launcher=args.launcher))
    if problems:
        print(
            f"{args.lock}: {len(problems)} problem{'' if len(problems) == 1 else 's'}:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_FAILED
    what = "hashes match" if args.hash_only else "hashes, names and versions match"
    print(
        f"{args.lock}: {len(lock.entries)} plugin"
        f"{'' if len(lock.entries) == 1 else 's'} verified ({what})"
    )
    return EXIT_OK
