"""What a plugin's worker may use: ``Limits`` (resources, deadlines, restarts).

Plain data, importable by both sides: the host hands ``Limits.to_worker()`` to the
worker, which applies it before the plugin is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: where a worker's private tmpfs is mounted, in its own mount namespace (the host's
#: /dev/shm stays as it was): its scratch directory is ``PRIVATE_SCRATCH`` in it
PRIVATE_TMPFS = "/dev/shm"
PRIVATE_SCRATCH = PRIVATE_TMPFS + "/scratch"
#: the variables numerical libraries read their thread count from (joblib's list for
#: its workers): OpenMP, OpenBLAS, MKL, BLIS, Apple's Accelerate, numba, numexpr
BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Resource caps, deadlines and the restart policy of one plugin.

    Memory: ``memory_mb`` is what the plugin may hold beyond the bare worker
    interpreter. Every ``rss_check_interval`` seconds the host counts what the worker
    holds (the anonymous and shared memory resident in each of its processes, the
    memfds they hold, mapped or not, and its scratch tmpfs; not the pages of library
    code they map) and kills it when that has grown past ``memory_mb`` since start-up
    (docs/sandbox.md, "How memory is counted"). As a backstop against fast bombs, the
    worker's private writable memory (RLIMIT_DATA: its heap, arrays, thread stacks) may
    grow by ``memory_mb`` from start-up, besides what its libraries reserve as it loads
    and what BLAS threads beyond the first reserve, so a bomb fails inside the worker
    with a MemoryError; its address space (RLIMIT_AS) is capped 1 GiB higher, so
    library code and reservations never count. ``address_space_cap=False`` leaves both
    off: the host's count alone.

    BLAS: ``blas_threads`` is how many threads the numerical libraries a plugin uses
    may start (OpenBLAS, OpenMP, MKL, BLIS, Accelerate, numexpr, numba: their
    ``*_NUM_THREADS`` variables in the worker's environment; a variable named in
    ``Sandbox(env=...)`` overrides them). One by default: each further thread reserves
    an OpenBLAS buffer and a stack (40 MiB per library), and its CPU counts against
    ``cpu_seconds``. None leaves them unset: a thread per CPU.

    CPU: ``cpu_seconds`` is the CPU time a call may use (the usage watch below also
    kills a plugin that ignores SIGXCPU, one second past the budget). Before each call the worker
    moves its RLIMIT_CPU soft limit to the time used so far plus ``cpu_seconds``; going
    past it delivers SIGXCPU, which kills the worker (PluginCPUExceeded). The kernel
    counts whole seconds, so the budget is rounded up: a call gets at least
    ``cpu_seconds`` and less than one second more. A plugin that ignores SIGXCPU is
    still bound by ``call_timeout``.

    CPU between calls: with no call in flight, the worker's CPU comes out of a budget
    of ``cpu_seconds`` that refills at ``idle_cpu_share`` of one CPU (CPU-seconds per
    second) and is full again at each call; background work within that share never
    runs it out. Past it the worker dies of SIGXCPU or, if it ignores that, the usage
    watch kills it one second later (PluginCPUExceeded, reported "between calls").

    Restarts: after a failure that killed the worker the next call starts a fresh one,
    waiting ``backoff_initial * 2**(n-1)`` seconds (at most ``backoff_max``) after the
    n-th failure in a row; ``max_failures`` failures within ``failure_window`` seconds
    quarantine the plugin until ``host.reset(name)``.

    Standby: once a plugin's worker has died, ``warm_spare`` keeps one more worker
    started for it, forked, confined and waiting, none of the plugin's code run in it,
    so the next restart only loads the plugin (a few ms sooner; see docs/BENCHMARKS.md).
    It holds one idle worker's memory per plugin that has failed; ``False`` keeps none.
    A file plugin's standby is not used if the file changed after it was started.

    Reports: the host keeps the plugin's newest ``report_history`` failure reports, and
    at most ``report_history_kb`` KiB of them, dropping the oldest first; its totals per
    cause count every report (``host.failure_counts(name)``). Each report's texts from
    the worker are capped in bytes as well (``docs/failures.md``).

    Raises: a plugin's own exception leaves its worker alive and does not count toward
    ``max_failures``. ``max_raises`` set to N quarantines the plugin once it has raised N
    times within ``raise_window`` seconds (its worker is shut down). It is off (None) by
    default: a hook may raise because its caller sent bad input, so counting raises
    would let callers quarantine a plugin; with the history bounded, a plugin that only
    raises costs its host no more than its calls do.

    Scratch: where the worker has a mount namespace, the scratch directory plugbox makes
    for it is a private tmpfs of ``scratch_mb`` (writes past it fail with ENOSPC), gone
    with the worker. tmpfs is memory: what is in it counts toward ``memory_mb``.
    """

    memory_mb: int | None = 256
    address_space_cap: bool = True
    rss_check_interval: float | None = 0.25
    cpu_seconds: float | None = 10.0
    call_timeout: float = 10.0
    start_timeout: float = 10.0
    close_timeout: float = 2.0
    open_files: int = 64
    file_size_mb: int = 64
    stack_kb: int = 8192
    #: the stack of each thread the plugin starts (Python's threading): LAPACK with one
    #: BLAS thread runs in 1 MiB; each thread's stack counts as private memory
    thread_stack_kb: int = 1024
    max_message_mb: int = 16
    max_failures: int = 5
    failure_window: float = 60.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    stderr_tail_lines: int = 40
    warm_spare: bool = True
    report_history: int = 100
    report_history_kb: int = 1024
    max_raises: int | None = None
    raise_window: float = 60.0
    scratch_mb: int = 64
    #: the share of one CPU a worker may use on average between calls (see CPU between
    #: calls above); None: between calls only the last call's budget applies, unrefilled
    idle_cpu_share: float | None = 0.1
    #: how many threads and processes the worker may have at once: RLIMIT_NPROC, set
    #: where the kernel counts it in the worker's own user namespace (Linux 5.14+), so
    #: one worker's threads never count against another's; None: no cap
    threads: int | None = 256
    #: threads a plugin's numerical libraries may start (see BLAS above); None: unset
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        positive = {
            "call_timeout": self.call_timeout,
            "start_timeout": self.start_timeout,
            "close_timeout": self.close_timeout,
            "open_files": self.open_files,
            "file_size_mb": self.file_size_mb,
            "stack_kb": self.stack_kb,
            "thread_stack_kb": self.thread_stack_kb,
            "max_message_mb": self.max_message_mb,
            "max_failures": self.max_failures,
            "failure_window": self.failure_window,
            "raise_window": self.raise_window,
            "scratch_mb": self.scratch_mb,
        }
        if self.memory_mb is not None:
            positive["memory_mb"] = self.memory_mb
        if self.cpu_seconds is not None:
            positive["cpu_seconds"] = self.cpu_seconds
        if self.rss_check_interval is not None:
            positive["rss_check_interval"] = self.rss_check_interval
        if self.max_raises is not None:
            positive["max_raises"] = self.max_raises
        if self.idle_cpu_share is not None:
            positive["idle_cpu_share"] = self.idle_cpu_share
        for name in ("threads", "blas_threads"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"Limits.{name} must be an int or None, not {value!r}")
                positive[name] = value
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, not {value!r}")
        for name in (
            "backoff_initial",
            "backoff_max",
            "stderr_tail_lines",
            "report_history",
            "report_history_kb",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Limits.{name} must be a number >= 0, not {value!r}")

    def thread_environment(self) -> dict[str, str]:
        """The variables that set how many threads numerical libraries start in the
        worker (``blas_threads``; none when it is None), as joblib sets them for its
        workers: read by each library when it loads, so they go in the environment."""
        if self.blas_threads is None:
            return {}
        value = str(self.blas_threads)
        return dict.fromkeys(BLAS_THREAD_VARIABLES, value)

    def to_worker(self) -> dict[str, Any]:
        """The part of the limits the worker applies to itself, as msgpack-able data
        (``Start.limits``): ``memory_mb`` is None without an address-space cap."""
        return {
            "memory_mb": self.memory_mb if self.address_space_cap else None,
            "cpu_seconds": self.cpu_seconds,
            "open_files": self.open_files,
            "file_size_mb": self.file_size_mb,
            "stack_kb": self.stack_kb,
            "thread_stack_kb": self.thread_stack_kb,
            "max_message_mb": self.max_message_mb,
            "idle_cpu_share": self.idle_cpu_share if self.cpu_seconds else None,
            "threads": self.threads,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Sandbox:
    """OS confinement of one plugin's worker beyond rlimits (Linux).

    - ``user``: the account a worker drops to when the host runs as root (default
      ``nobody``; None keeps root, for tests of the unconfined path only).
    - ``network``: whether the plugin may use the network (default no: a network
      namespace with no interfaces, Landlock TCP bind/connect denied, and seccomp
      allowing only AF_UNIX stream sockets and no connect(), so neither the network nor
      another process's unix socket is reachable). With it, connect() and unix datagram
      sockets are allowed too: seccomp cannot tell a TCP connect from a unix one, so
      unix sockets the worker's uid may write are reachable by path.
    - ``read_only``: paths the plugin may read beyond what every worker is given (the
      interpreter, plugbox, the plugin's own code: docs/sandbox.md, "What a worker
      may read"); a directory on the host's import path named here stays on the
      worker's (Landlock).
    - ``scratch``: a directory the plugin may write; None (default) makes a fresh one
      per worker: with a mount namespace a private tmpfs of ``Limits.scratch_mb``
      (``scratch_tmpfs``), gone with the worker, else a directory in the temporary
      directory, removed when the worker ends. It is the worker's cwd, ``HOME`` and
      ``TMPDIR``.
    - ``processes``: whether the plugin may start processes (default no: seccomp
      denies fork, vfork, clone without CLONE_THREAD and exec). With it, the
      interpreter itself is runnable and multiprocessing works (docs/sandbox.md,
      "Devices, /dev/shm and processes").
    - ``env``: host environment variables passed through, by name (default none), or
      a mapping of names to values to set; either overrides the thread counts
      ``Limits.blas_threads`` puts in the worker's environment.
    - ``namespaces`` / ``landlock`` / ``seccomp``: ask for each layer (default yes);
      a layer the kernel lacks is reported, not faked.
    - ``pid_namespace``: with ``namespaces``, also a pid namespace (default yes): the
      plugin sees no host process and all it starts dies with it. It costs two more
      processes per worker, and time per start and from a death to its report
      (``docs/BENCHMARKS.md`` has the figures); without it, Landlock and seccomp still keep the
      plugin from seeing or signalling other processes, and the zygote kills what a
      worker leaves behind.
    - ``strict``: refuse to start the plugin if any requested layer is not in force
      (``PluginLoadError`` naming the layer).
    """

    user: str | None = "nobody"
    network: bool = False
    read_only: tuple[str, ...] = ()
    scratch: str | None = None
    processes: bool = False
    env: tuple[str, ...] | Mapping[str, str] = ()
    namespaces: bool = True
    pid_namespace: bool = True
    landlock: bool = True
    seccomp: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "read_only", tuple(str(p) for p in self.read_only))
        env: Any = self.env
        if isinstance(env, Mapping):  # values to set, kept as "NAME=value"
            env = [f"{name}={value}" for name, value in env.items()]
        elif isinstance(env, str):
            env = [env]
        for entry in env:
            if not isinstance(entry, str) or not entry.partition("=")[0]:
                raise ValueError(f"Sandbox.env: {entry!r} is not a variable's name")
        object.__setattr__(self, "env", tuple(env))

    def environment(self, host: Mapping[str, str]) -> dict[str, str]:
        """The variables ``env`` gives the worker: a name's value from ``host`` (the
        host's environment; left out if it has none), or the value set with it."""
        found: dict[str, str] = {}
        for entry in self.env:
            name, given, value = entry.partition("=")
            if given:
                found[name] = value
            elif name in host:
                found[name] = host[name]
        return found

    def requested_layers(self, *, root: bool) -> list[str]:
        """The layer names (as workers report them) this policy asks for."""
        layers = ["no_new_privs"]
        if root and self.user is not None:
            layers.append("unprivileged")
        if self.namespaces:
            layers += ["user_namespace", "ipc_namespace", "mount_namespace"]
            if self.pid_namespace:
                layers.append("pid_namespace")
            if not self.network:
                layers.append("network_namespace")
            if self.scratch is None:
                layers.append("scratch_tmpfs")
        if self.landlock:
            layers += ["landlock_filesystem", "landlock_signals", "landlock_abstract_unix"]
            if not self.network:
                layers.append("landlock_tcp")
        if self.seccomp:
            layers.append("seccomp")
        return layers

    def to_worker(
        self,
        scratch: str,
        env: dict[str, str],
        *,
        scratch_mb: int | None = None,
        dumpable: bool = False,
    ) -> dict[str, Any]:
        """The sandbox settings as msgpack-able data for the worker: with ``scratch_mb``,
        ``scratch`` is plugbox's to replace with a private tmpfs of that size; with
        ``dumpable`` the worker stays readable to a host of its own uid (its memory
        watch reads the worker's /proc entries)."""
        return {
            "user": self.user,
            "network": self.network,
            "read_only": list(self.read_only),
            "scratch": scratch,
            "processes": self.processes,
            "env": env,
            "namespaces": self.namespaces,
            "pid_namespace": self.pid_namespace,
            "landlock": self.landlock,
            "seccomp": self.seccomp,
            "scratch_mb": scratch_mb,
            "dumpable": dumpable,
        }
