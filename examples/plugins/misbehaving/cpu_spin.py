"""Misbehaving plugin: a CPU spin.

``process`` runs a pure-Python busy loop forever and never answers. Under plugbox each
call may use ``Limits.cpu_seconds`` of CPU time (RLIMIT_CPU); past it the kernel sends
SIGXCPU, which kills the worker.

The host must report cause ``"cpu"`` (PluginCPUExceeded, signal SIGXCPU), as long as
the CPU limit comes before ``Limits.call_timeout``; otherwise the deadline ends it
first and the cause is ``"timeout"``.
"""


class CpuSpinPlugin:
    name = "cpu-spin"
    version = "0.1.0"

    def process(self, input_data):
        n = 0
        while True:
            n += 1
