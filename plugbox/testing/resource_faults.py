"""Fault plugins that use up a resource or hang: memory, CPU, time, processes,
threads, fds, disk and output. Imported inside workers: stdlib only.
"""

from __future__ import annotations

import mmap
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from .fault_plugin import FOREVER, FaultPlugin


class MemoryBombPlugin(FaultPlugin):
    """Allocates ``step_mb`` (default 1) at a time, ``how="list"`` (bytes objects in a
    growing list, default) or ``how="mmap"`` (anonymous maps, every page touched), up
    to ``mb`` in all (default: until it fails); with ``mb`` set and reached it holds
    the memory and sleeps ``seconds`` (default forever). Cause ``memory``: the address
    space cap makes the allocation fail (MemoryError / ENOMEM), or the host's RSS
    watch kills it when ``Limits(address_space_cap=False)``."""

    kind = "memory"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        step = int(float(self._amount("step_mb", 1)) * (1 << 20))
        total = self._amount("mb", None)
        limit = None if total is None else int(float(total) * (1 << 20))
        hoard: list[Any] = []
        held = 0
        how = self._amount("how", "list")
        while limit is None or held < limit:
            if how == "mmap":
                m = mmap.mmap(-1, step)
                for offset in range(0, step, mmap.PAGESIZE):
                    m[offset] = 1
                hoard.append(m)
            else:
                hoard.append(b"x" * step)
            held += step
        time.sleep(float(self._amount("seconds", FOREVER)))
        return held


class CpuSpinPlugin(FaultPlugin):
    """Spins in a Python loop for ``seconds`` of wall time (default forever). Cause
    ``cpu`` (SIGXCPU once the call used ``cpu_seconds``), or ``timeout`` when the
    deadline comes first."""

    kind = "cpu"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        end = time.monotonic() + float(self._amount("seconds", FOREVER))
        n = 0
        while time.monotonic() < end:
            n += 1
        return n


class CpuSpinCPlugin(FaultPlugin):
    """Spins in C holding the GIL: a catastrophically backtracking regular expression
    (``(a+)+$`` against ``n`` a's and a b, default ``n=64``: about 2**64 steps) inside
    ``_sre``, which neither releases the GIL nor returns to the eval loop, so no Python
    signal handler or thread of the worker runs. Cause ``cpu`` (the kernel's SIGXCPU
    needs no cooperation), or ``timeout``."""

    kind = "cpu-c"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        n = int(self._amount("n", 64))
        return bool(re.match(r"(a+)+$", "a" * n + "b"))


class SleepPlugin(FaultPlugin):
    """Sleeps ``seconds`` (default forever). Cause ``timeout``."""

    kind = "sleep"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        time.sleep(float(self._amount("seconds", FOREVER)))


class SigstopPlugin(FaultPlugin):
    """Stops itself with SIGSTOP (it cannot be caught): the worker neither runs nor
    dies. Cause ``timeout``: the deadline's SIGKILL works on a stopped process."""

    kind = "sigstop"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(FOREVER)


class IgnoreSigtermPlugin(FaultPlugin):
    """Ignores SIGTERM, SIGINT and SIGHUP from ``initialize`` on; when struck it sleeps
    ``seconds`` (default forever), and its ``close()`` hangs as well unless
    ``hang_close`` is false. Cause ``timeout``; closing the host must still end it
    (SIGKILL after ``close_timeout``)."""

    kind = "ignore-sigterm"

    def initialize(self, config: Mapping[str, Any]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        super().initialize(config)

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        time.sleep(float(self._amount("seconds", FOREVER)))

    def close(self) -> None:
        if self.config.get("hang_close", True):
            time.sleep(FOREVER)


class ForkBombPlugin(FaultPlugin):
    """Forks ``processes`` children (default 32), each of which sleeps, then sleeps
    itself. Under the default sandbox fork is denied (PermissionError): cause
    ``raised``. With ``Sandbox(processes=True)`` the forks succeed and the call ends
    by its deadline: cause ``timeout``, and the host must kill every child with the
    worker."""

    kind = "fork-bomb"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        for _ in range(int(self._amount("processes", 32))):
            if os.fork() == 0:
                time.sleep(FOREVER)
                os._exit(0)
        time.sleep(float(self._amount("seconds", FOREVER)))


class ThreadBombPlugin(FaultPlugin):
    """Starts up to ``threads`` threads (default 100 000), each sleeping. The address
    space cap (each thread's stack is reserved in it) makes ``start()`` fail first:
    cause ``raised`` (RuntimeError: can't start new thread); the worker lives on."""

    kind = "thread-bomb"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        started = 0
        for _ in range(int(self._amount("threads", 100_000))):
            threading.Thread(target=time.sleep, args=(FOREVER,), daemon=True).start()
            started += 1
        return started


class FdExhaustionPlugin(FaultPlugin):
    """Opens pipes until the open-files limit (``Limits.open_files``) refuses more, and
    keeps them. Cause ``raised`` (OSError EMFILE); the worker lives on and still
    answers on its channel."""

    kind = "fd-exhaustion"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        self.held: list[int] = getattr(self, "held", [])
        for _ in range(int(self._amount("fds", 1 << 20))):
            self.held.extend(os.pipe())
        return len(self.held)


class HugeFilePlugin(FaultPlugin):
    """Writes ``mb`` megabytes (default 100 000) to a file in its scratch directory.
    RLIMIT_FSIZE (``Limits.file_size_mb``) stops it: Python ignores SIGXFSZ, so the
    write fails with EFBIG. Cause ``raised`` (OSError); the worker lives on."""

    kind = "huge-file"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        chunk = b"x" * (1 << 20)
        path = str(self._amount("path", "plugbox-fault-huge-file.bin"))
        with open(path, "wb") as f:
            for _ in range(int(self._amount("mb", 100_000))):
                f.write(chunk)
                f.flush()
        return os.path.getsize(path)


class FloodPlugin(FaultPlugin):
    """Writes ``lines`` lines (default 50 000) to ``stream`` (``"stdout"``, default, or
    ``"stderr"``), then returns None. No failure: the host logs the output rate-limited
    and keeps serving (cause None)."""

    kind = "flood"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        stream = sys.stderr if self._amount("stream", "stdout") == "stderr" else sys.stdout
        line = "flood " + "x" * int(self._amount("width", 80)) + "\n"
        for _ in range(int(self._amount("lines", 50_000))):
            stream.write(line)
        stream.flush()
