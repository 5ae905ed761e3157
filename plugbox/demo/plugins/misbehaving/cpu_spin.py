"""A CPU spin: ``process`` loops forever. Past ``Limits.cpu_seconds`` the kernel sends
SIGXCPU; the host must report cause ``"cpu"`` (if the CPU limit comes before
``Limits.call_timeout``, else ``"timeout"``)."""

from __future__ import annotations


class CpuSpinPlugin:
    name = "cpu-spin"
    version = "0.1.0"

    def process(self, input_data: object) -> None:
        n = 0
        while True:
            n += 1
