"""Confinement the worker applies to itself before any plugin code is imported.

Order: new session, stdio onto the capture pipes, every other fd closed but the
channel, a scrubbed environment, privileges dropped when running as root, the
parent-death signal, rlimits. Each step records what it did in ``Confinement`` so the
host (and ``plugbox doctor``) can be told which layers are in force.
"""

from __future__ import annotations

import importlib.machinery
import itertools
import math
import mmap
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ...limits import Limits
from .. import _linux
from . import memory, quotas
from .memory import held_kb, set_limit

#: variables a scrubbed environment keeps (with these values).
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}


@dataclass
class Confinement:
    """What confinement did, layer by layer (name -> in force)."""

    layers: dict[str, bool] = field(default_factory=dict)
    #: the caps set on its memory (RLIMIT_DATA, RLIMIT_AS), None: none
    memory_caps: memory.MemoryCaps | None = None
    #: the address space cap in KiB (0: none)
    address_space_kb: int = 0
    #: how many modules were loaded before the plugin (``plugin_loaded``)
    modules_before_load: int = 0
    cpu_seconds: float | None = None
    cpu_soft: int = 0
    #: the CPU clock when the soft limit was last renewed, and CLOCK_MONOTONIC before
    cpu_used: float = 0.0
    cpu_used_at: float = 0.0
    #: between calls: the share of one CPU the budget refills at, the CPU clock value it
    #: runs out at as last refilled (``refill_cpu_budget``), and CLOCK_MONOTONIC then
    idle_cpu_share: float | None = None
    refilled_end: float = 0.0
    refilled_at: float = 0.0
    #: memory held back under the memory cap (``memory.RESERVE_BYTES``), released for
    #: the error reply of a plugin that has used up the rest (``serve`` takes it over)
    reserve: mmap.mmap | None = None


def new_session() -> bool:
    """Leave the host's session and process group (a no-op if already a leader)."""
    try:
        os.setsid()
    except OSError:
        return os.getsid(0) == os.getpid()
    return True


def close_other_fds(*keep: int | None) -> None:
    """Close every fd above stderr except those in ``keep`` (None: none)."""
    low = 3
    for fd in sorted(fd for fd in keep if fd is not None and fd >= low):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def scrub_environment() -> None:
    """Replace the environment with a minimal, secret-free one."""
    environ = os.environ
    for key in list(environ):  # what clear() does, without its popitem() per variable
        del environ[key]
    for key, value in CLEAN_ENV.items():
        environ[key] = value


def drop_privileges(user: str | None) -> bool:
    """As root, become ``user`` (groups cleared); as anyone else, nothing to drop.

    Returns True when the worker ends up without root's uid.
    """
    if os.geteuid() != 0:
        return True
    if user is None:
        return False
    import pwd

    entry = pwd.getpwnam(str(user))
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = "/"
    return os.geteuid() != 0


#: import finders taken out of use (``ImportPaths.after_drop``), kept from being freed
_RETIRED: list[dict[str, Any]] = []
#: the packages loaded in the zygote before it forks (``remember_packages``), and how
#: many modules were loaded then
_PACKAGES: tuple[int, list[ModuleType]] | None = None


def _package_path(module: object) -> object:
    """``getattr(module, "__path__", None)``, read from a plain module's namespace
    without raising and catching AttributeError for each of the many modules that are
    not packages (the same result: a plain module's attribute is its namespace's entry,
    unless the module defines ``__getattr__``)."""
    if type(module) is ModuleType:
        namespace = module.__dict__
        if "__path__" in namespace or "__getattr__" not in namespace:
            return namespace.get("__path__")
    return getattr(module, "__path__", None)


def remember_packages() -> None:
    """In the zygote, once everything its workers share is imported: note the loaded
    packages (the modules with a ``__path__`` list), so that ``ImportPaths.after_drop``
    in each worker it forks looks at those, not at every loaded module. Looking at a
    module writes to it (its reference count), and a just-forked worker pays a page
    copy for each page it first writes: for the 178 modules of a zygote and its 15
    packages, about 0.7 ms of each worker's start."""
    global _PACKAGES
    _PACKAGES = (
        len(sys.modules),
        [module for module in sys.modules.values() if isinstance(_package_path(module), list)],
    )


def _loaded_packages() -> list[Any]:
    """The loaded modules that may be packages: the zygote's packages if no module was
    loaded since (plugbox's own code runs between the fork and ``after_drop``, and it
    loads none as it does), else every module."""
    if _PACKAGES is not None and _PACKAGES[0] == len(sys.modules):
        return _PACKAGES[1]
    return list(sys.modules.values())


class ImportPaths:
    """Keeps the import path usable after privileges are dropped.

    An interpreter installed under a directory the unprivileged user cannot enter (such
    as root's home) would leave the worker unable to import anything it has not
    imported yet. Before the drop, an O_PATH fd is opened on each import directory;
    after it, each directory the user cannot read is replaced, in ``sys.path`` and in
    the ``__path__`` of loaded packages, by ``/proc/self/fd/N``, which a process may
    always traverse. Only directories (and what is under them) are reachable this way.
    """

    def __init__(self, extra: list[str]) -> None:
        self.fds: dict[str, int] = {}
        self.remap: dict[str, str] = {}
        flags = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY
        for path in [*sys.path, *extra]:
            if path and path not in self.fds:
                try:  # O_DIRECTORY: only a directory opens
                    self.fds[path] = os.open(path, flags)
                except (OSError, ValueError):
                    continue

    def after_drop(self) -> None:
        """Remap what the dropped user cannot read; close the other fds."""
        for path, fd in self.fds.items():
            if os.access(path, os.R_OK | os.X_OK) or not os.path.isdir(f"/proc/self/fd/{fd}"):
                os.close(fd)
            else:
                self.remap[path] = f"/proc/self/fd/{fd}"
        if not self.remap:
            return
        sys.path[:] = [self.fix(p) for p in sys.path]
        for module in _loaded_packages():
            search = _package_path(module)
            if isinstance(search, list):
                search[:] = [self.fix(p) for p in search]
        # forget every finder, as clear() does, but keep them alive: the zygote made
        # them, and freeing their caches would write to (and so copy) the pages this
        # process shares with it, for nothing, as it ends with os._exit
        _RETIRED.append(sys.path_importer_cache.copy())
        sys.path_importer_cache.clear()

    def fix(self, path: str) -> str:
        """``path`` as the dropped user can reach it."""
        for old, new in self.remap.items():
            if path == old or path.startswith(old + os.sep):
                return new + path[len(old) :]
        return path


def die_with_parent(parent: int) -> bool:
    """SIGKILL this process when its parent dies; exit now if it already has."""
    ok = _linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    return ok


#: the value of each limit a Start leaves out
DEFAULT_LIMITS = Limits()
#: the endings of an extension module's file (native code)
_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def baseline_kb(state: Confinement) -> int:
    """What the worker holds before any of the plugin's code runs, as the host counts it
    (the baseline of its count): read as the rlimits were set, or now."""
    return state.memory_caps.held_start_kb if state.memory_caps is not None else held_kb()


def plugin_loaded(state: Confinement) -> None:
    """Once the plugin has loaded: what its libraries reserved as they loaded does not
    count against its memory cap (``memory.credit_reservations``). Only native code
    reserves memory it leaves unwritten: a load that brought in no extension module (a
    plain Python plugin's) is neither measured nor credited, and its caps stay as they
    were set (the hard limit on private memory ``memory.LOAD_CREDIT_MAX`` above the
    soft one), sparing a standby resumed for a restart some 0.06 ms of first reads
    and page copies on the way to its Handshake."""
    caps = state.memory_caps
    if caps is None:
        return
    if _loaded_native(len(sys.modules) - state.modules_before_load):
        memory.credit_reservations(caps)
        state.address_space_kb = caps.address_space_kb


def _loaded_native(count: int) -> bool:
    """Whether one of the ``count`` modules loaded last is an extension module. Only
    those are looked at, from the end: looking at a module writes to it (its reference
    count), which costs a just-forked worker a page copy for each. Run once over none
    as the worker is confined, so that its own code is copied then, not as a standby
    resumed for a restart loads its plugin."""
    return any(
        str(getattr(module, "__file__", "") or "").endswith(_EXTENSION_SUFFIXES)
        for module in itertools.islice(reversed(sys.modules.values()), max(count, 0))
    )


def apply_rlimits(limits: Mapping[str, Any], state: Confinement) -> None:
    """Apply the limit values of the host's Start (``Limits.to_worker``) as rlimits;
    one it leaves out is ``Limits``' default."""
    set_limit(resource.RLIMIT_CORE, 0, 0)
    open_files = int(limits.get("open_files", DEFAULT_LIMITS.open_files))
    set_limit(resource.RLIMIT_NOFILE, open_files, open_files)
    fsize = int(limits.get("file_size_mb", DEFAULT_LIMITS.file_size_mb)) * 1024 * 1024
    set_limit(resource.RLIMIT_FSIZE, fsize, fsize)
    memory.limit_stacks(
        int(limits.get("stack_kb", DEFAULT_LIMITS.stack_kb)),
        int(limits.get("thread_stack_kb", DEFAULT_LIMITS.thread_stack_kb)),
    )
    memory_mb = limits.get("memory_mb", DEFAULT_LIMITS.memory_mb)
    if memory_mb:
        state.reserve, state.memory_caps = memory.limit_memory(int(memory_mb))
        state.address_space_kb = state.memory_caps.address_space_kb
        state.modules_before_load = len(sys.modules)
        _loaded_native(0)
    state.layers["rlimits"] = True
    threads = limits.get("threads", DEFAULT_LIMITS.threads)
    in_own_namespace = bool(state.layers.get("user_namespace"))
    state.layers["thread_limit"] = quotas.limit_threads(threads, in_own_namespace)
    cpu = limits.get("cpu_seconds", DEFAULT_LIMITS.cpu_seconds)
    state.cpu_seconds = float(cpu) if cpu else None
    share = limits.get("idle_cpu_share", DEFAULT_LIMITS.idle_cpu_share)
    state.idle_cpu_share = float(share) if share else None
    renew_cpu_budget(state)


#: the clock the kernel holds RLIMIT_CPU against: the process's "prof" CPU clock
#: (user + system time as the scheduler tick charges it), a POSIX CPU clock id
#: (MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_PROF)). It can run ahead of process_time()
#: (the precise runtime): a process that is running whenever a tick comes is charged
#: whole ticks, as happens under heavy load, where a budget measured on
#: process_time() once ran out a second early.
PROF_CLOCK = -8


def cpu_clock() -> float:
    """CPU seconds used, as RLIMIT_CPU counts them (process_time() elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            return time.clock_gettime(PROF_CLOCK)
        except OSError:
            pass
    return time.process_time()


#: how far the CPU clock can run ahead of the wall clock, per CPU: the kernel charges
#: whole scheduler ticks (HZ is 100 or more) to the task running when each comes
_TICK = 0.01
#: how many CPUs this process's threads could run on at once (at most)
_CPUS = os.cpu_count() or 1024


def renew_cpu_budget(state: Confinement) -> None:
    """Move the RLIMIT_CPU soft limit to the CPU time used so far plus the per-call budget.

    The soft limit is whole seconds, so it moves about once a second of CPU. Between
    moves the CPU clock (a system call) is not read when it cannot have crossed into
    the next second: since it was last read it has run at most as long as the wall
    clock (a vDSO read), plus a tick, on every CPU."""
    if state.cpu_seconds is None:
        return
    now = time.monotonic()
    if (
        state.cpu_soft
        and math.ceil(
            state.cpu_used + state.cpu_seconds + _CPUS * (now - state.cpu_used_at + _TICK)
        )
        <= state.cpu_soft
    ):
        return  # the soft limit would stay where it is
    used = cpu_clock()
    state.cpu_used, state.cpu_used_at = used, now
    soft = math.ceil(used + state.cpu_seconds)
    if soft == state.cpu_soft:  # within the same whole second: nothing to move
        return
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
        state.cpu_soft = soft
    except (ValueError, OSError):
        try:
            set_limit(resource.RLIMIT_CPU, soft)
            state.cpu_soft = soft
        except (ValueError, OSError):
            pass


def refill_cpu_budget(state: Confinement) -> None:
    """Between calls: refill the CPU budget at ``idle_cpu_share`` of one CPU since it
    was last renewed (by a call) or refilled, never past a full budget (``cpu_seconds``
    from the CPU used now), and move the soft limit up to it. Background work within the
    share so never runs the budget out; a call renews it in full, as before."""
    share, budget = state.idle_cpu_share, state.cpu_seconds
    if share is None or budget is None:
        return
    now, used = time.monotonic(), cpu_clock()
    if state.cpu_used_at > state.refilled_at:  # a call renewed it since
        end, since = state.cpu_used + budget, state.cpu_used_at
    else:
        end, since = state.refilled_end, state.refilled_at
    end = min(end + share * (now - since), used + budget)
    state.refilled_end, state.refilled_at = end, now
    soft = math.ceil(end)
    if soft > state.cpu_soft:
        try:
            set_limit(resource.RLIMIT_CPU, soft)
            state.cpu_soft = soft
        except (ValueError, OSError):
            pass


def keep_refilling(loop: Any, state: Confinement, idle: Callable[[], bool]) -> None:
    """Have ``loop`` refill the CPU budget (``refill_cpu_budget``) while ``idle()`` says
    no call is in flight: every ``1 / idle_cpu_share`` seconds (1 to 10), which moves
    the whole-second soft limit by about one second each time. Nothing is added to a
    call's path; an idle worker wakes once per period."""
    share = state.idle_cpu_share
    if share is None or state.cpu_seconds is None:
        return
    period = min(10.0, max(1.0, 1.0 / share))

    def tick() -> None:
        if idle():
            refill_cpu_budget(state)
        loop.call_later(period, tick)

    loop.call_later(period, tick)
