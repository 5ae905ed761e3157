"""Misbehaving plugin: a memory bomb.

``process`` keeps appending 1 MiB bytes objects (each one written, so the pages are
really resident) to a list until the allocation fails. Under plugbox the worker's
address space is capped (``Limits.memory_mb``), so the allocation fails inside the
worker with a MemoryError instead of pressing on the host.

The host must report cause ``"memory"`` (PluginMemoryExceeded) and kill the worker.
"""

CHUNK = 1 << 20


class MemoryBombPlugin:
    name = "memory-bomb"
    version = "0.1.0"

    def process(self, input_data):
        hoard = []
        while True:
            hoard.append(b"\xff" * CHUNK)
