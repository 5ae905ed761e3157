"""A memory bomb: ``process`` appends written 1 MiB chunks until allocation fails inside
the worker's capped address space (``Limits.memory_mb``); the host must report cause
``"memory"`` and kill the worker."""

from __future__ import annotations

CHUNK = 1 << 20


class MemoryBombPlugin:
    name = "memory-bomb"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        hoard: list[bytes] = []
        while True:
            hoard.append(b"\xff" * CHUNK)
