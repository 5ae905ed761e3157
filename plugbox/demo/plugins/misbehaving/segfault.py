"""A segmentation fault: ``process`` reads address 0 (``ctypes.string_at(0)``), which
would take an in-process host down; the host must report cause ``"crashed"``, SIGSEGV."""

from __future__ import annotations

import ctypes


class SegfaultPlugin:
    name = "segfault"
    version = "0.1.0"

    def process(self, input_data: object) -> bytes:
        return ctypes.string_at(0)
