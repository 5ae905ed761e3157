"""Fault plugins: one per way a plugin can misbehave, for crash-injection tests in CI.

Each class here is an ordinary plugin, referenced like any other::

    await host.add("plugbox.testing.faults:SegfaultPlugin",
                   config={"hooks": ["process"], "after": 2})

and each ``FAULTS`` entry (a ``Fault``) says what the host must report for it: the
``cause`` of the ``FailureReport`` (None: the call succeeds), with the ``limits`` and
``sandbox`` under which that cause is the true one.

Configuration (``config``, handed to ``initialize``), common to every fault:

- ``hooks`` (or ``hook``): the hook names the plugin implements; every one misbehaves.
  Default ``["process"]`` (``specs.PIPELINE``); ``Fault.add_to(host)`` passes every hook
  of the host's spec. ``"initialize"`` among them misbehaves while loading (the host's
  ``add`` raises ``PluginLoadError``, with a report when the worker died).
- ``after``: how many calls (to any of those hooks) are answered normally (None, so a
  chain goes on unchanged) before the fault strikes; default 0.
- ``times``: how many calls misbehave from then on; default every one. The count is
  per worker: a worker restarted after a crash starts again from zero.
- ``async``: install ``async def`` hooks instead of plain ones (for ``kind="async"``).
- ``name``: the plugin's name (default ``fault-<kind>``), to add one fault twice.
- fault-specific amounts, listed on each class (``mb``, ``seconds``, ``code``...).

How the hooks get installed: the worker validates a plugin's hooks (``check_hooks``)
after ``initialize(config)``, so ``initialize`` sets one ``(**kwargs)`` method per
configured hook name on the instance; a method taking ``**kwargs`` accepts every
argument of its spec. This works for any ``HookSet``, with no hook names baked in and
no "looks like a hook" problems for the names a host does not declare.

This module is imported inside workers: it uses the standard library only.
"""

from __future__ import annotations

import builtins
import ctypes
import mmap
import os
import re
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..limits import Limits, Sandbox

if TYPE_CHECKING:
    from ..host import PluginHost, PluginInfo

#: the channel's fd in every worker.
CHANNEL_FD = 3
_FOREVER = 3600.0


class FaultPlugin:
    """Base of the fault plugins: installs the configured hooks, counts calls, and
    calls ``_strike`` when the fault is due. Subclasses set ``kind`` and ``_strike``."""

    kind = "fault"
    name = "fault"
    version = "1.0.0"

    def initialize(self, config: Mapping[str, Any]) -> None:
        self.config: dict[str, Any] = dict(config)
        hooks = config.get("hooks", config.get("hook", ["process"]))
        self.fault_hooks: list[str] = [hooks] if isinstance(hooks, str) else list(hooks)
        self.after = int(config.get("after", 0))
        times = config.get("times")
        self.times: int | None = None if times is None else int(times)
        self.calls = 0
        self.name = str(config.get("name") or f"fault-{self.kind}")
        use_async = bool(config.get("async", False))
        for hook in self.fault_hooks:
            if hook == "initialize":
                continue
            setattr(self, hook, self._async_hook(hook) if use_async else self._sync_hook(hook))
        if "initialize" in self.fault_hooks:
            self._strike("initialize", {})

    def _sync_hook(self, hook: str) -> Callable[..., Any]:
        def hook_method(**kwargs: Any) -> Any:
            return self._call(hook, kwargs)

        hook_method.__name__ = hook_method.__qualname__ = hook
        return hook_method

    def _async_hook(self, hook: str) -> Callable[..., Any]:
        async def hook_method(**kwargs: Any) -> Any:
            return self._call(hook, kwargs)

        hook_method.__name__ = hook_method.__qualname__ = hook
        return hook_method

    def _call(self, hook: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        n = self.calls - self.after
        if n >= 1 and (self.times is None or n <= self.times):
            return self._strike(hook, args)
        return None

    def _amount(self, key: str, default: Any) -> Any:
        return self.config.get(key, default)

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        raise NotImplementedError


class FaultError(Exception):
    """What ``RaisePlugin`` raises by default."""


class RaisePlugin(FaultPlugin):
    """Raises an exception: ``exception`` (a builtin exception's name, default
    ``FaultError``), ``message``. Cause ``raised``; the worker lives on."""

    kind = "raise"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        message = str(self._amount("message", f"fault injected in {hook}"))
        exc_name = self._amount("exception", None)
        exc_type = getattr(builtins, exc_name, None) if exc_name else FaultError
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            exc_type = FaultError
        raise exc_type(message)


class SegfaultPlugin(FaultPlugin):
    """Reads address 0 through ctypes: SIGSEGV. Cause ``crashed``."""

    kind = "segfault"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        ctypes.string_at(0)


class AbortPlugin(FaultPlugin):
    """``os.abort()``: SIGABRT. Cause ``crashed``."""

    kind = "abort"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        os.abort()


class ExitPlugin(FaultPlugin):
    """``os._exit(code)`` (``code``, default 3), skipping every cleanup. Cause
    ``crashed`` with that exit status."""

    kind = "exit"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        sys.stdout.flush()
        os._exit(int(self._amount("code", 3)))


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
        time.sleep(float(self._amount("seconds", _FOREVER)))
        return held


class CpuSpinPlugin(FaultPlugin):
    """Spins in a Python loop for ``seconds`` of wall time (default forever). Cause
    ``cpu`` (SIGXCPU once the call used ``cpu_seconds``), or ``timeout`` when the
    deadline comes first."""

    kind = "cpu"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        end = time.monotonic() + float(self._amount("seconds", _FOREVER))
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
        time.sleep(float(self._amount("seconds", _FOREVER)))


class SigstopPlugin(FaultPlugin):
    """Stops itself with SIGSTOP (it cannot be caught): the worker neither runs nor
    dies. Cause ``timeout``: the deadline's SIGKILL works on a stopped process."""

    kind = "sigstop"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(_FOREVER)


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
        time.sleep(float(self._amount("seconds", _FOREVER)))

    def close(self) -> None:
        if self.config.get("hang_close", True):
            time.sleep(_FOREVER)


class RecursionPlugin(FaultPlugin):
    """Recurses without end. ``through_c=False`` (default): Python's recursion limit
    raises RecursionError, cause ``raised``. ``through_c=True``: the recursion limit is
    lifted and each level goes through C (``sorted(key=...)``), so the C stack
    overflows its small RLIMIT_STACK: SIGSEGV, cause ``crashed``."""

    kind = "recursion"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        if self._amount("through_c", False):
            sys.setrecursionlimit(10**8)

            def down(n: int) -> Any:
                return sorted([n + 1], key=down)

            return down(0)

        def deeper(n: int) -> int:
            return deeper(n + 1) + 1

        return deeper(0)


class UnserializablePlugin(FaultPlugin):
    """Returns a value msgpack cannot carry (an ``object()``). Cause ``raised``
    (TypeError naming the hook), reported by the worker; it lives on."""

    kind = "unserializable"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        return object()


class OversizePlugin(FaultPlugin):
    """Returns ``mb`` megabytes (default 17: over the default ``max_message_mb`` of 16).
    Cause ``raised``: the worker refuses to send a frame over the limit and replies
    with a TypeError instead; it lives on."""

    kind = "oversize"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        return b"x" * int(float(self._amount("mb", 17)) * (1 << 20))


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


class ChannelPlugin(FaultPlugin):
    """Breaks the channel (fd 3) under the worker, then sleeps. ``how``: ``"close"``
    (default), ``"garbage"`` (an undecodable frame), ``"oversize"`` (a frame header
    announcing 1 GiB) or ``"unknown_id"`` (a well-formed reply to a call never made).
    Cause ``protocol``; the host kills the worker."""

    kind = "channel"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        how = self._amount("how", "close")
        if how == "close":
            os.close(CHANNEL_FD)
        elif how == "garbage":
            os.write(CHANNEL_FD, b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
        elif how == "oversize":
            os.write(CHANNEL_FD, struct.pack(">I", 1 << 30) + b"\x00" * 64)
        elif how == "unknown_id":
            from ..protocol import Result, encode

            os.write(CHANNEL_FD, encode(Result(id=999_999, value=None, changed={}), side="worker"))
        else:
            raise ValueError(f"unknown channel fault {how!r}")
        time.sleep(_FOREVER)


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
                time.sleep(_FOREVER)
                os._exit(0)
        time.sleep(float(self._amount("seconds", _FOREVER)))


class ThreadBombPlugin(FaultPlugin):
    """Starts up to ``threads`` threads (default 100 000), each sleeping. The address
    space cap (each thread's stack is reserved in it) makes ``start()`` fail first:
    cause ``raised`` (RuntimeError: can't start new thread); the worker lives on."""

    kind = "thread-bomb"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        started = 0
        for _ in range(int(self._amount("threads", 100_000))):
            threading.Thread(target=time.sleep, args=(_FOREVER,), daemon=True).start()
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


class CanaryPlugin(FaultPlugin):
    """Not a fault: a healthy plugin on the same hooks, to show the host still serves.
    Each call busy-works ``work_ms`` milliseconds (default 0) and returns None (a
    chain goes on unchanged); it holds ``hold_mb`` megabytes (default 0) from
    ``initialize`` on. ``after``/``times`` do not apply."""

    kind = "canary"

    def initialize(self, config: Mapping[str, Any]) -> None:
        super().initialize({**config, "after": 1 << 62})
        self.ballast = b"c" * int(float(config.get("hold_mb", 0)) * (1 << 20))

    def _call(self, hook: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        end = time.perf_counter() + float(self.config.get("work_ms", 0)) / 1000
        while time.perf_counter() < end:
            pass
        return None


# ---------------------------------------------------------------------- the table
#: limits under which each fault's ``cause`` is the true one, and quick to reach.
_QUICK = Limits(
    memory_mb=64, cpu_seconds=1, call_timeout=5.0, close_timeout=0.5, backoff_initial=0.0
)
_DEADLINE = Limits(
    memory_mb=64, cpu_seconds=1, call_timeout=0.5, close_timeout=0.5, backoff_initial=0.0
)
_FORKS = Sandbox(processes=True)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One misbehaviour and what the host must report for it.

    ``ref`` and ``config`` add the plugin (``config`` without ``hooks``: see
    ``add_to``); ``cause`` is the ``FailureReport.cause`` under ``limits`` and
    ``sandbox`` (None: the call succeeds). ``signal`` / ``exit_code`` / ``exc_type``,
    when set, are what a report of ``cause`` must also carry. ``also`` lists causes
    that may be reported instead under the same limits, and ``other_causes`` those the
    same fault gets under other limits; ``when`` says which and why.
    """

    name: str
    ref: str
    cause: str | None
    doc: str
    config: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = _QUICK
    sandbox: Sandbox | None = None
    signal: str | None = None
    exit_code: int | None = None
    exc_type: str | None = None
    kills_worker: bool = True
    also: tuple[str, ...] = ()
    other_causes: tuple[str, ...] = ()
    when: str = ""

    @property
    def causes(self) -> tuple[str | None, ...]:
        """Every cause the host may truthfully report under ``limits`` and ``sandbox``:
        ``cause``, then ``also`` (a race the fault cannot rule out; ``when`` says)."""
        return (self.cause, *self.also)

    def plugin_config(
        self, hooks: list[str] | tuple[str, ...] | str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The ``config`` for ``host.add``: this fault's, ``hooks``, then ``overrides``."""
        config = {**self.config, **overrides}
        if hooks is not None:
            config["hooks"] = [hooks] if isinstance(hooks, str) else list(hooks)
        return config

    async def add_to(
        self,
        host: PluginHost,
        *,
        hooks: list[str] | str | None = None,
        on_failure: str | None = "skip",
        limits: Limits | None = None,
        sandbox: Sandbox | None = None,
        **overrides: Any,
    ) -> PluginInfo:
        """Add this fault to ``host`` (every hook of its spec unless ``hooks``), with
        its limits and sandbox, and ``on_failure="skip"`` unless told otherwise."""
        chosen = list(host.hooks) if hooks is None else hooks
        return await host.add(
            self.ref,
            config=self.plugin_config(chosen, **overrides),
            limits=limits or self.limits,
            sandbox=sandbox or self.sandbox,
            on_failure=on_failure,  # type: ignore[arg-type]
        )


def _ref(cls: type) -> str:
    return f"{__name__}:{cls.__name__}"


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault(
            name="raise",
            ref=_ref(RaisePlugin),
            cause="raised",
            exc_type="FaultError",
            kills_worker=False,
            doc=RaisePlugin.__doc__ or "",
        ),
        Fault(
            name="segfault",
            ref=_ref(SegfaultPlugin),
            cause="crashed",
            signal="SIGSEGV",
            doc=SegfaultPlugin.__doc__ or "",
        ),
        Fault(
            name="abort",
            ref=_ref(AbortPlugin),
            cause="crashed",
            signal="SIGABRT",
            doc=AbortPlugin.__doc__ or "",
        ),
        Fault(
            name="exit",
            ref=_ref(ExitPlugin),
            cause="crashed",
            exit_code=3,
            doc=ExitPlugin.__doc__ or "",
        ),
        Fault(
            name="memory_list",
            ref=_ref(MemoryBombPlugin),
            cause="memory",
            config={"how": "list"},
            doc=MemoryBombPlugin.__doc__ or "",
        ),
        Fault(
            name="memory_mmap",
            ref=_ref(MemoryBombPlugin),
            cause="memory",
            config={"how": "mmap"},
            doc=MemoryBombPlugin.__doc__ or "",
        ),
        Fault(
            name="cpu_python",
            ref=_ref(CpuSpinPlugin),
            cause="cpu",
            signal="SIGXCPU",
            other_causes=("timeout",),
            when="timeout if call_timeout ends the call first",
            doc=CpuSpinPlugin.__doc__ or "",
        ),
        Fault(
            name="cpu_c",
            ref=_ref(CpuSpinCPlugin),
            cause="cpu",
            signal="SIGXCPU",
            other_causes=("timeout",),
            when="timeout if call_timeout ends the call first",
            doc=CpuSpinCPlugin.__doc__ or "",
        ),
        Fault(
            name="sleep",
            ref=_ref(SleepPlugin),
            cause="timeout",
            signal="SIGKILL",
            limits=_DEADLINE,
            doc=SleepPlugin.__doc__ or "",
        ),
        Fault(
            name="sigstop",
            ref=_ref(SigstopPlugin),
            cause="timeout",
            signal="SIGKILL",
            limits=_DEADLINE,
            doc=SigstopPlugin.__doc__ or "",
        ),
        Fault(
            name="ignore_sigterm",
            ref=_ref(IgnoreSigtermPlugin),
            cause="timeout",
            signal="SIGKILL",
            limits=_DEADLINE,
            doc=IgnoreSigtermPlugin.__doc__ or "",
        ),
        Fault(
            name="recursion",
            ref=_ref(RecursionPlugin),
            cause="raised",
            exc_type="RecursionError",
            kills_worker=False,
            doc=RecursionPlugin.__doc__ or "",
        ),
        Fault(
            name="stack_overflow",
            ref=_ref(RecursionPlugin),
            cause="crashed",
            signal="SIGSEGV",
            config={"through_c": True},
            doc=RecursionPlugin.__doc__ or "",
        ),
        Fault(
            name="unserializable",
            ref=_ref(UnserializablePlugin),
            cause="raised",
            exc_type="TypeError",
            kills_worker=False,
            doc=UnserializablePlugin.__doc__ or "",
        ),
        Fault(
            name="oversize_result",
            ref=_ref(OversizePlugin),
            cause="raised",
            exc_type="TypeError",
            kills_worker=False,
            config={"mb": 2},
            limits=Limits(
                memory_mb=64,
                cpu_seconds=1,
                call_timeout=5.0,
                max_message_mb=1,
                close_timeout=0.5,
                backoff_initial=0.0,
            ),
            other_causes=("memory",),
            when="memory when encoding the result passes memory_mb",
            doc=OversizePlugin.__doc__ or "",
        ),
        Fault(
            name="stdout_flood",
            ref=_ref(FloodPlugin),
            cause=None,
            kills_worker=False,
            config={"stream": "stdout"},
            doc=FloodPlugin.__doc__ or "",
        ),
        Fault(
            name="stderr_flood",
            ref=_ref(FloodPlugin),
            cause=None,
            kills_worker=False,
            config={"stream": "stderr"},
            doc=FloodPlugin.__doc__ or "",
        ),
        Fault(
            name="close_channel",
            ref=_ref(ChannelPlugin),
            cause="protocol",
            config={"how": "close"},
            doc=ChannelPlugin.__doc__ or "",
        ),
        Fault(
            name="corrupt_channel",
            ref=_ref(ChannelPlugin),
            cause="protocol",
            config={"how": "garbage"},
            doc=ChannelPlugin.__doc__ or "",
        ),
        Fault(
            name="oversize_frame",
            ref=_ref(ChannelPlugin),
            cause="protocol",
            config={"how": "oversize"},
            doc=ChannelPlugin.__doc__ or "",
        ),
        Fault(
            name="unknown_reply",
            ref=_ref(ChannelPlugin),
            cause="protocol",
            config={"how": "unknown_id"},
            doc=ChannelPlugin.__doc__ or "",
        ),
        Fault(
            name="fork_denied",
            ref=_ref(ForkBombPlugin),
            cause="raised",
            exc_type="PermissionError",
            kills_worker=False,
            doc=ForkBombPlugin.__doc__ or "",
        ),
        Fault(
            name="fork_bomb",
            ref=_ref(ForkBombPlugin),
            cause="timeout",
            signal="SIGKILL",
            limits=_DEADLINE,
            sandbox=_FORKS,
            doc=ForkBombPlugin.__doc__ or "",
        ),
        Fault(
            name="thread_bomb",
            ref=_ref(ThreadBombPlugin),
            cause="raised",
            exc_type="RuntimeError",
            kills_worker=False,
            also=("memory",),
            when=(
                "memory when the thread stacks leave the worker too little address "
                "space to build its full error reply: the bare reply it sends instead "
                "says it ran out of memory, and the worker is replaced"
            ),
            doc=ThreadBombPlugin.__doc__ or "",
        ),
        Fault(
            name="fd_exhaustion",
            ref=_ref(FdExhaustionPlugin),
            cause="raised",
            exc_type="OSError",
            kills_worker=False,
            doc=FdExhaustionPlugin.__doc__ or "",
        ),
        Fault(
            name="huge_file",
            ref=_ref(HugeFilePlugin),
            cause="raised",
            exc_type="OSError",
            kills_worker=False,
            limits=Limits(
                memory_mb=64,
                cpu_seconds=2,
                call_timeout=5.0,
                file_size_mb=8,
                close_timeout=0.5,
                backoff_initial=0.0,
            ),
            doc=HugeFilePlugin.__doc__ or "",
        ),
    ]
}


__all__ = [
    "FAULTS",
    "AbortPlugin",
    "CanaryPlugin",
    "ChannelPlugin",
    "CpuSpinCPlugin",
    "CpuSpinPlugin",
    "ExitPlugin",
    "Fault",
    "FaultError",
    "FaultPlugin",
    "FdExhaustionPlugin",
    "FloodPlugin",
    "ForkBombPlugin",
    "HugeFilePlugin",
    "IgnoreSigtermPlugin",
    "MemoryBombPlugin",
    "OversizePlugin",
    "RaisePlugin",
    "RecursionPlugin",
    "SegfaultPlugin",
    "SigstopPlugin",
    "SleepPlugin",
    "ThreadBombPlugin",
    "UnserializablePlugin",
]
