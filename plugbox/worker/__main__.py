"""``python -m plugbox.worker --fd N --parent PID``: a worker in a fresh interpreter."""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m plugbox.worker")
    parser.add_argument("--fd", type=int, required=True, help="the channel's fd")
    parser.add_argument(
        "--parent", type=int, default=0, help="the pid to die with (default: the parent now)"
    )
    ns = parser.parse_args()
    from .lean import import_asyncio

    import_asyncio()  # without ssl: see worker.lean
    from .bootstrap import run

    run(ns.fd, ns.parent or os.getppid())


if __name__ == "__main__":
    main()
