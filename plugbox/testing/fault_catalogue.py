"""The catalogue of faults: for each, the plugin and configuration that cause it, and
what the host must report for it under the limits given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..limits import Limits, Sandbox
from .crash_faults import (
    AbortPlugin,
    ChannelPlugin,
    ExitPlugin,
    OversizePlugin,
    RaisePlugin,
    RecursionPlugin,
    SegfaultPlugin,
    UnserializablePlugin,
)
from .resource_faults import (
    CpuSpinCPlugin,
    CpuSpinPlugin,
    FdExhaustionPlugin,
    FloodPlugin,
    ForkBombPlugin,
    HugeFilePlugin,
    IgnoreSigtermPlugin,
    MemoryBombPlugin,
    SigstopPlugin,
    SleepPlugin,
    ThreadBombPlugin,
)

if TYPE_CHECKING:
    from ..host import PluginHost, PluginInfo
    from ..reports import Cause

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
    cause: Cause | None
    doc: str
    config: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = _QUICK
    sandbox: Sandbox | None = None
    signal: str | None = None
    exit_code: int | None = None
    exc_type: str | None = None
    kills_worker: bool = True
    also: tuple[Cause, ...] = ()
    other_causes: tuple[Cause, ...] = ()
    when: str = ""

    @property
    def causes(self) -> tuple[Cause | None, ...]:
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


#: the module a fault's plugin is referenced from
FAULTS_MODULE = "plugbox.testing.faults"


def _ref(cls: type) -> str:
    return f"{FAULTS_MODULE}:{cls.__name__}"


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
