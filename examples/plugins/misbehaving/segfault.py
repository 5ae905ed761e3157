"""Misbehaving plugin: a segmentation fault.

``process`` reads address 0 through ``ctypes.string_at(0)``, which kills the worker
with SIGSEGV. In-process, this would take the whole host down with it.

The host must report cause ``"crashed"`` (PluginCrashed) with signal ``"SIGSEGV"``.
"""

import ctypes


class SegfaultPlugin:
    name = "segfault"
    version = "0.1.0"

    def process(self, input_data):
        return ctypes.string_at(0)
