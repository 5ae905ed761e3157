"""A hang that uses no CPU: ``process`` sleeps forever, so only ``Limits.call_timeout``
ends it; the host must report cause ``"timeout"`` and kill the worker."""

from __future__ import annotations

import time


class InfiniteSleepPlugin:
    name = "infinite-sleep"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        while True:
            time.sleep(3600)
