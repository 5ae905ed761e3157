"""``python -m plugbox.demo``: the same as ``plugbox demo``."""

from __future__ import annotations

import sys

import anyio

from .containment import main

if __name__ == "__main__":
    sys.exit(anyio.run(main, backend="asyncio"))
