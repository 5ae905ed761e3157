"""A hard exit: ``process`` calls ``os._exit(3)``, without cleanup or answer; the host
must report cause ``"crashed"`` with exit code 3."""

from __future__ import annotations

import os


class HardExitPlugin:
    name = "hard-exit"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        os._exit(3)
