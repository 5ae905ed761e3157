"""Misbehaving plugin: a hang that uses no CPU.

``process`` calls ``time.sleep`` forever. It burns no CPU time, so RLIMIT_CPU never
fires; only the host's wall-clock deadline (``Limits.call_timeout``) ends it.

The host must report cause ``"timeout"`` (PluginTimeout) and kill the worker.
"""

import time


class InfiniteSleepPlugin:
    name = "infinite-sleep"
    version = "0.1.0"

    def process(self, input_data):
        while True:
            time.sleep(3600)
