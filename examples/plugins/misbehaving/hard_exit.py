"""Misbehaving plugin: a hard exit.

``process`` calls ``os._exit(3)``: the worker process ends at once, without cleanup
and without answering the call.

The host must report cause ``"crashed"`` (PluginCrashed) with exit code 3.
"""

import os


class HardExitPlugin:
    name = "hard-exit"
    version = "0.1.0"

    def process(self, input_data):
        os._exit(3)
