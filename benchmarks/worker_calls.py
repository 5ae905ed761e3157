"""The worker's own cost per call, in this process: ``serve.WorkerChannel`` fed reads
of 64 Call frames, its replies written to a transport that drops them.

    python benchmarks/worker_calls.py [--reads N] [--repeat R]

No socket, no other process and no wake-up: what is left is decoding the Calls,
dispatching them to the hooks (a sync ``echo``, an async ``aecho`` that finishes
without waiting) and encoding the Results, plus a few turns of the event loop per
read. Prints the fastest of ``repeat`` runs per hook, in µs per call; compare trees
by running it in each (``PYTHONPATH=<tree> python benchmarks/worker_calls.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench_common import PAYLOAD

from plugbox.protocol import Call, FrameLimits, encode
from plugbox.worker import loader
from plugbox.worker.sandbox.process import Confinement
from plugbox.worker.serve import WorkerChannel

PER_READ = 64


class Echo:
    name = "echo"
    version = "1"

    def echo(self, payload: Any) -> Any:
        return payload

    async def aecho(self, payload: Any) -> Any:
        return payload


SPEC = {
    "echo": {"args": ["payload"], "kind": "sync"},
    "aecho": {"args": ["payload"], "kind": "async"},
}


class Dropping:
    """A transport that takes every frame and keeps none."""

    def write(self, frame: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def per_call(hook: str, reads: int) -> float:
    """µs per call over ``reads`` reads of 64 Calls (after 50 reads of warm-up)."""
    loop = asyncio.get_running_loop()
    channel = WorkerChannel(
        loader.check(Echo(), SPEC), {}, Confinement(), FrameLimits(), loop.create_future()
    )
    channel.transport = Dropping()  # type: ignore[assignment]
    read = b"".join(
        encode(Call(id=i + 1, hook=hook, args={"payload": PAYLOAD}), side="host")
        for i in range(PER_READ)
    )

    async def run(count: int) -> None:
        for _ in range(count):
            channel.data_received(read)
            for _ in range(3):  # what a read's calls left for the loop
                await asyncio.sleep(0)

    await run(50)
    t0 = time.perf_counter()
    await run(reads)
    return (time.perf_counter() - t0) * 1e6 / (reads * PER_READ)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=8)
    args = ap.parse_args(argv)
    for hook in ("echo", "aecho"):
        best = min(asyncio.run(per_call(hook, args.reads)) for _ in range(args.repeat))
        print(f"{hook:6s} {best:6.2f} µs per call (fastest of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
