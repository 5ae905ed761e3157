"""The exit report: how the process serving a plugin ended, written by the init of its
pid namespace on a pipe of its own to the host as soon as it reaps it.

The launcher's report of the worker's exit (the zygote's ``Exited``) comes only after
init and the outer process it runs under have exited in turn, each a forked Python
tearing down its copy of the worker's memory: about a millisecond and a half on the
development machines. This one comes first. Fixed size, little-endian: the wait status,
then the plugin's peak RSS in KiB and its CPU time in seconds (its rusage)::

    int32 wait status | int64 max RSS KiB | float64 user + system CPU seconds
"""

from __future__ import annotations

import math
import os
import struct

_FORMAT = struct.Struct("<iqd")
EXIT_REPORT_SIZE = _FORMAT.size


def pack_exit_report(status: int, max_rss_kb: int, cpu_time: float) -> bytes:
    """The report of a process that ended with wait status ``status``."""
    return _FORMAT.pack(status, max_rss_kb, cpu_time)


def unpack_exit_report(data: bytes) -> tuple[int | None, int | None, int, float] | None:
    """(exit code, signal, max RSS KiB, CPU seconds), one of the first two None; or None
    where ``data`` is not a report of a process that ended."""
    if len(data) != EXIT_REPORT_SIZE:
        return None
    status, max_rss_kb, cpu_time = _FORMAT.unpack(data)
    try:
        code = os.waitstatus_to_exitcode(status)
    except ValueError:  # stopped, or not a wait status at all
        return None
    if max_rss_kb < 0 or not math.isfinite(cpu_time) or cpu_time < 0:
        return None
    return (code, None, max_rss_kb, cpu_time) if code >= 0 else (None, -code, max_rss_kb, cpu_time)
