"""What a worker holds in memory, as the host counts it: the resident anonymous and
shared memory of each of its processes, the memfds they hold open (mapped or not) and
its private tmpfs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ..limits import PRIVATE_TMPFS
from . import _linux
from .death import DeathWatch


class Uncountable(Exception):
    """The host may not read a process of the worker (it made itself non-dumpable)."""


@dataclass(frozen=True, slots=True)
class Held:
    """One count of what a worker holds, in KiB."""

    rss_kb: int
    processes: int
    memfd_kb: int
    tmpfs_kb: int

    @property
    def total_kb(self) -> int:
        return self.rss_kb + self.memfd_kb + self.tmpfs_kb

    def over(self, memory_mb: int, baseline_kb: int) -> str:
        """The detail of a kill for holding this, over ``memory_mb``."""
        parts = [f"resident {self.rss_kb // 1024} MB in {self.processes} process"]
        if self.processes != 1:
            parts[0] += "es"
        if self.memfd_kb:
            parts.append(f"memfds {self.memfd_kb // 1024} MB")
        if self.tmpfs_kb:
            parts.append(f"scratch tmpfs {self.tmpfs_kb // 1024} MB")
        used = (self.total_kb - baseline_kb) // 1024
        return (
            f"used {used} MB of memory_mb={memory_mb}: its memory of "
            f"{self.total_kb // 1024} MB ({', '.join(parts)}) went over its cap of "
            f"{memory_mb} MB above the {baseline_kb // 1024} MB it started with; raise "
            f"Limits(memory_mb=...)"
        )


class MemoryCount:
    """Counts what one worker holds: the process serving the plugin and, where the
    plugin may have others (``Sandbox(processes=True)``, or no seccomp to stop a fork),
    every process of the worker but plugbox's own (the outer process and init of a pid
    namespace); their resident memory (the RSS of a lone process; with several, each
    one's proportional share, PSS, so a page a fork shares counts once) and memfds (one
    open in several counted once); and the private tmpfs of its scratch directory.

    Which processes: in a pid namespace with seccomp in force, those its own /proc
    lists (the plugin cannot mount over it); otherwise the descendants of the launched
    process, from a scan of the host's /proc (a process that left the tree without a pid
    namespace, reparented to the zygote, is not seen)."""

    def __init__(self, end: DeathWatch, layers: Mapping[str, bool]) -> None:
        self._serving = end.pid
        self._linux = sys.platform.startswith("linux")  # elsewhere: the RSS alone
        pidns = end.pid != end.spawned.pid
        #: plugbox's process from which the worker's filesystem and /proc are read: the
        #: pid namespace's init, which runs none of the plugin's code (no chroot)
        anchor = (_linux.parent_of(end.pid) or end.pid) if pidns else end.pid
        self._tmpfs = f"/proc/{anchor}/root{PRIVATE_TMPFS}" if layers.get("scratch_tmpfs") else None
        self._own_proc: str | None = None
        self._scan_from: int | None = None
        self._plugboxs: set[int] = set()
        if self._linux and (end.processes or not layers.get("seccomp")):
            if pidns and layers.get("seccomp") and layers.get("mount_namespace"):
                self._own_proc = f"/proc/{anchor}/root/proc"
            else:
                self._scan_from = end.spawned.pid
                if pidns:
                    self._plugboxs = {end.spawned.pid, anchor}

    def count(self, serving_rss_kb: int) -> Held:
        """What the worker holds now; ``serving_rss_kb``, its serving process's whole
        RSS (read already by the usage watch), stands in where the kernel does not tell
        resident anonymous and shared memory apart. Raises ``Uncountable`` where a
        process's /proc entry is closed to the host (only a host that is not root; its
        workers stay readable to it)."""
        seen: set[tuple[int, int]] = set()
        serving = f"/proc/{self._serving}"
        rss, processes = serving_rss_kb, 1
        if not self._linux:
            return Held(rss_kb=rss, processes=1, memfd_kb=0, tmpfs_kb=0)
        try:
            memfds = _linux.memfd_kb(serving, seen)
            for thread in _linux.own_fd_tables(self._serving):
                memfds += _linux.memfd_kb(thread, seen)
            others = self._others()
            if not others:
                rss = held_kb(serving) or serving_rss_kb
            else:
                # the pages a fork shares with its parent, once: each process's share
                rss = shared_held_kb(serving) or held_kb(serving) or serving_rss_kb
                for proc in others:
                    more = shared_held_kb(proc)
                    if more is None:
                        continue  # gone
                    rss, processes = rss + more, processes + 1
                    memfds += _linux.memfd_kb(proc, seen)
        except PermissionError as exc:
            raise Uncountable(
                "its memory cannot be counted: the host may not read its processes' "
                "/proc entries (a process of it made itself non-dumpable)"
            ) from exc
        tmpfs = _linux.tmpfs_used_kb(self._tmpfs) if self._tmpfs else 0
        return Held(rss_kb=rss, processes=processes, memfd_kb=memfds, tmpfs_kb=tmpfs)

    def _others(self) -> list[str]:
        """The /proc directories of the worker's processes but the serving one."""
        if self._own_proc is not None:
            try:
                pids = _linux.pids_in(self._own_proc)
            except FileNotFoundError:
                return []  # the worker has ended
            # 1 is init, 2 the plugin (pidns.split)
            return [f"{self._own_proc}/{pid}" for pid in pids if pid > 2]
        if self._scan_from is None:
            return []
        skip = {self._serving, *self._plugboxs}
        return [f"/proc/{pid}" for pid in _linux.descendants(self._scan_from) if pid not in skip]


def held_kb(proc: str) -> int | None:
    """The resident anonymous and shared memory (RssAnon + RssShmem) in KiB of the
    process whose /proc directory is ``proc``: what it holds, less the pages of the
    files it maps (library code, shared with every process that maps them, and dropped
    by the kernel when memory is short). None once it is gone or where not told."""
    data = _read(f"{proc}/status")
    fields = None if data is None else _kb_fields(data, (b"\nRssAnon:", b"\nRssShmem:"))
    return None if fields is None else sum(fields)


def shared_held_kb(proc: str) -> int | None:
    """As ``held_kb``, each page divided among the processes that share it (Pss_Anon +
    Pss_Shmem; the whole PSS on a kernel that does not split it). Walks the page tables:
    read only for a worker of several processes. Raises PermissionError where the
    process's entry is closed to the host."""
    data = _read(f"{proc}/smaps_rollup")
    if data is None:
        return None
    fields = _kb_fields(data, (b"\nPss_Anon:", b"\nPss_Shmem:")) or _kb_fields(data, (b"\nPss:",))
    return None if fields is None else sum(fields)


def _read(path: str) -> bytes | None:
    """The whole /proc file ``path``; None once its process is gone. Raises
    PermissionError where the entry is closed to the host."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _kb_fields(data: bytes, keys: tuple[bytes, ...]) -> list[int] | None:
    """The "kB" figures named ``keys`` in the /proc file's ``data``; None if it lacks
    one of them."""
    found = []
    for key in keys:
        at = data.find(key)
        if at < 0:
            return None
        try:
            found.append(int(data[at + len(key) : data.index(b"kB", at)]))
        except ValueError:
            return None
    return found
