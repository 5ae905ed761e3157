"""``PluginHost``: the public face of the host side."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc

from ..errors import PluginLoadError
from ..limits import Limits, Sandbox
from ..protocol import check_crossable
from ..reports import FailureReport, Outcome
from ..specs import HookSet, OnFailure
from . import _linux
from .calling import call_hook, check_args
from .launchers import Launcher, SubprocessLauncher, ZygoteLauncher
from .supervision import PluginOptions, SupervisedPlugin
from .tasks import HostTasks

log = logging.getLogger("plugbox.host")


class _DumpableGuard:
    """Keeps the process non-dumpable while any PluginHost is open."""

    open_hosts = 0
    before: bool | None = None

    @classmethod
    def enter(cls) -> None:
        if cls.open_hosts == 0:
            cls.before = _linux.get_dumpable()
            _linux.set_dumpable(False)
        cls.open_hosts += 1

    @classmethod
    def leave(cls) -> None:
        cls.open_hosts -= 1
        if cls.open_hosts == 0 and cls.before:
            _linux.set_dumpable(True)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A registered plugin as the host knows it."""

    name: str
    version: str
    ref: str
    hooks: tuple[str, ...]
    pid: int | None
    state: Literal["running", "stopped", "quarantined", "closed"]
    restarts: int
    calls: int
    failures: int
    problems: tuple[str, ...]
    layers: dict[str, bool]


class PluginHost:
    """Runs plugins in sandboxed workers and calls their hooks.

    Use it as an async context manager (asyncio or trio)::

        async with PluginHost(specs.PIPELINE) as host:
            await host.add("examples/plugins/message_logger.py")
            outcome = await host.call("process", input_data="hello")

    ``launcher`` is ``"zygote"`` (default: workers forked from a pristine interpreter)
    or ``"subprocess"`` (a fresh interpreter per worker), or a ``Launcher`` instance.
    ``on_failure`` overrides the specs' failure policy for every plugin that does not
    set its own.

    While a host is open its process is not dumpable (Linux), so processes of the same
    uid, plugins included when the host is not root, cannot ptrace it or read its
    ``/proc/<pid>/mem`` and ``environ``; ``dumpable=True`` opts out (for debuggers and
    profilers that attach to the host). The flag is restored when the last host closes.
    """

    def __init__(self, hooks: HookSet, *, launcher: str | Launcher = "zygote",
                 on_failure: OnFailure | None = None, max_reports: int = 10_000,
                 dumpable: bool = False) -> None:
        if not isinstance(hooks, HookSet):
            raise TypeError(f"PluginHost needs a HookSet (e.g. plugbox.specs.PIPELINE), "
                            f"not {type(hooks).__name__}")
        if on_failure not in (None, "raise", "skip"):
            raise ValueError("on_failure must be 'raise' or 'skip'")
        self.hooks = hooks
        self.on_failure = on_failure
        if isinstance(launcher, Launcher):
            self._launcher = launcher
        elif launcher == "zygote":
            self._launcher = ZygoteLauncher()
        elif launcher == "subprocess":
            self._launcher = SubprocessLauncher()
        else:
            raise ValueError(f"unknown launcher {launcher!r}: use 'zygote' or 'subprocess'")
        self._plugins: list[SupervisedPlugin] = []
        self._reports: list[FailureReport] = []
        self._max_reports = max_reports
        self._tg: anyio.abc.TaskGroup | None = None
        self._tasks: HostTasks | None = None
        self._closed = False
        self._dumpable = dumpable
        self._guarding = False

    # ---------------------------------------------------------------- context
    async def __aenter__(self) -> PluginHost:
        if self._tg is not None or self._closed:
            raise RuntimeError("a PluginHost can be entered once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._tasks = HostTasks(tg)
        self._guarding = not self._dumpable
        if self._guarding:
            _DumpableGuard.enter()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        tg = self._tg
        assert tg is not None
        try:
            await self.aclose()
        finally:
            # The host's own tasks are done with once every worker is closed. The body's
            # exception, if any, is left to propagate as it is (not in an ExceptionGroup).
            assert self._tasks is not None
            self._tasks.cancel_all()
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            if self._guarding:
                _DumpableGuard.leave()
        return None

    # ---------------------------------------------------------------- plugins
    async def add(self, ref: str, *, config: Mapping[str, Any] | None = None,
                  limits: Limits | None = None, sandbox: Sandbox | None = None,
                  on_failure: OnFailure | None = None) -> PluginInfo:
        """Start a worker for the plugin at ``ref`` and register it.

        ``ref`` is ``path/to/file.py``, ``package.module``, either with ``:ClassName``.
        ``config`` is handed to the plugin's ``initialize(config)``. Raises
        ``PluginLoadError`` naming the reference and the reason when the plugin does not
        exist, does not import, has no or several candidate classes, has a hook that
        takes an argument the spec lacks, fails in ``initialize``, or dies loading.
        """
        tg = self._require_open()
        if not isinstance(ref, str) or not ref:
            raise PluginLoadError(repr(ref), "a plugin reference must be a non-empty str")
        if on_failure not in (None, "raise", "skip"):
            raise ValueError("on_failure must be 'raise' or 'skip'")
        cfg = dict(config or {})
        try:
            check_crossable(cfg)
        except TypeError as exc:
            raise PluginLoadError(ref, f"config cannot cross the process boundary: {exc}") from None
        options = PluginOptions(ref=ref, config=cfg, limits=limits or Limits(),
                                sandbox=sandbox or Sandbox(), on_failure=on_failure)
        plugin = SupervisedPlugin(options, self.hooks, self._launcher, tg, self._record)
        await plugin.start()
        if any(p.name == plugin.name for p in self._plugins):
            await plugin.close()
            raise PluginLoadError(ref, f"a plugin named {plugin.name!r} is already added")
        for problem in plugin.problems:
            log.warning("%s", problem)
        self._plugins.append(plugin)
        return self._info(plugin)

    async def remove(self, name: str) -> None:
        """Close one plugin and forget it."""
        plugin = self._find(name)
        self._plugins.remove(plugin)
        await plugin.close()

    def reset(self, name: str) -> None:
        """Lift a plugin's quarantine; its next call starts a fresh worker."""
        self._find(name).reset()

    @property
    def plugins(self) -> list[PluginInfo]:
        """The registered plugins, in the order they were added."""
        return [self._info(p) for p in self._plugins]

    @property
    def reports(self) -> list[FailureReport]:
        """Every FailureReport so far, oldest first (the newest ``max_reports``)."""
        return list(self._reports)

    # ---------------------------------------------------------------- calling
    async def call(self, hook: str, /, **args: Any) -> Outcome:
        """Call ``hook`` on every plugin that implements it, per the hook's mode.

        Raises TypeError (naming hook and argument) for an unknown hook, an unknown or
        missing argument, or a value that cannot cross the process boundary, before
        anything is sent; a ``PluginFailure`` for a plugin failure whose policy is
        ``"raise"``.
        """
        self._require_open()
        spec = self.hooks.get(hook)
        if spec is None:
            raise TypeError(f"unknown hook {hook!r} (this host's hooks: {', '.join(self.hooks)})")
        packed = check_args(spec, args)
        return await call_hook(spec, list(self._plugins), args, self.on_failure, packed)

    # ---------------------------------------------------------------- closing
    async def aclose(self) -> None:
        """Close every plugin in reverse order of adding, then the launcher.

        Each plugin gets its ``close_timeout`` to close; then its worker is killed. Runs
        to the end even if the calling task is cancelled.
        """
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            for plugin in reversed(self._plugins):
                try:
                    await plugin.close()
                except Exception:  # pragma: no cover - close must go on
                    log.exception("closing plugin %s failed", plugin.name)
            await self._launcher.aclose()

    # ---------------------------------------------------------------- helpers
    def _require_open(self) -> HostTasks:
        if self._tasks is None:
            raise RuntimeError("use PluginHost as 'async with PluginHost(...) as host'")
        if self._closed:
            raise RuntimeError("this PluginHost is closed")
        return self._tasks

    def _record(self, report: FailureReport) -> None:
        self._reports.append(report)
        if len(self._reports) > self._max_reports:
            del self._reports[: len(self._reports) - self._max_reports]
        log.warning("%s", report.summary())

    def _find(self, name: str) -> SupervisedPlugin:
        for plugin in self._plugins:
            if plugin.name == name:
                return plugin
        raise KeyError(f"no plugin named {name!r} (plugins: "
                       f"{', '.join(p.name for p in self._plugins) or 'none'})")

    def _info(self, p: SupervisedPlugin) -> PluginInfo:
        state: Literal["running", "stopped", "quarantined", "closed"]
        if p.closed:
            state = "closed"
        elif p.quarantine is not None:
            state = "quarantined"
        elif p.worker is not None and p.worker.alive:
            state = "running"
        else:
            state = "stopped"
        return PluginInfo(name=p.name, version=p.version, ref=p.options.ref,
                          hooks=tuple(p.hooks), pid=p.worker.pid if p.worker else None,
                          state=state, restarts=p.restarts, calls=p.calls,
                          failures=len(p.recent_failures), problems=tuple(p.problems),
                          layers=dict(p.layers))


__all__ = ["PluginHost", "PluginInfo"]
