"""Which event loop the host runs on: the one place that asks (anyio's backends are
asyncio, uvloop included, and trio)."""

from __future__ import annotations

import asyncio


def on_asyncio() -> bool:
    """Whether the running event loop is asyncio's; else it is trio's. Asked once per
    worker (its channel, its deadlines) and per background task, never per call: a
    worker's calls take their flavour from its ``Deadlines``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
