"""``PluginHost``: the public face of the host side."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ..errors import PluginLoadError
from ..limits import Limits, Sandbox
from ..protocol import check_crossable
from ..reports import FailureCounts, FailureReport, Outcome
from ..specs import HookSet, OnFailure
from ..trust import integrity
from ..trust.lock import Lock, as_lock
from . import _linux
from .audit import AuditTrail, audited_call_hook
from .calling import HookCaller, call_hook, check_args
from .history import ReportHistory
from .inline import inline_source
from .launchers import Launcher, SubprocessLauncher, ZygoteLauncher
from .options import PluginOptions
from .registration import PluginInfo, plugin_info, resolve_pins
from .supervision import SupervisedPlugin
from .tasks import HostTasks

log = logging.getLogger("plugbox.host")


class _DumpableGuard:
    """Keeps the process non-dumpable while any PluginHost is open (hosts may open and
    close in several threads: SyncPluginHost runs each on its own)."""

    open_hosts = 0
    before: bool | None = None
    lock = threading.Lock()

    @classmethod
    def enter(cls) -> None:
        with cls.lock:
            if cls.open_hosts == 0:
                cls.before = _linux.get_dumpable()
                _linux.set_dumpable(False)
            cls.open_hosts += 1

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.open_hosts -= 1
            if cls.open_hosts == 0 and cls.before:
                _linux.set_dumpable(True)


class PluginHost:
    """Runs plugins in sandboxed workers and calls their hooks.

    Use it as an async context manager (asyncio or trio)::

        async with PluginHost(specs.PIPELINE) as host:
            await host.add("plugbox.demo.plugins.message_logger")
            outcome = await host.call("process", input_data="hello")

    ``launcher`` is ``"zygote"`` (default: workers forked from a pristine interpreter)
    or ``"subprocess"`` (a fresh interpreter per worker), or a ``Launcher`` instance.
    ``on_failure`` overrides the specs' failure policy for every plugin that does not
    set its own.

    While a host is open its process is not dumpable (Linux), so processes of the same
    uid, plugins included when the host is not root, cannot ptrace it or read its
    ``/proc/<pid>/mem`` and ``environ``; ``dumpable=True`` opts out (for debuggers and
    profilers that attach to the host). The flag is restored when the last host closes.

    Trust: ``lock`` (a ``plugbox.lock`` path or a ``Lock``) makes every ``add`` refuse
    a reference the lock does not list and pin the others to the lock's name, version
    and sha256. ``audit_path`` appends an audit record of every registration and hook
    call to a JSON Lines file (one write per record); records also go to the logger
    ``plugbox.audit`` at INFO. ``audit_args=True`` puts hook arguments and results in
    the call records (see ``docs/AUDIT.md``). ``max_reports`` bounds the failure
    reports kept across plugins (``reports``).
    """

    def __init__(
        self,
        hooks: HookSet,
        *,
        launcher: str | Launcher = "zygote",
        on_failure: OnFailure | None = None,
        max_reports: int = 10_000,
        dumpable: bool = False,
        lock: Lock | str | os.PathLike[str] | None = None,
        audit_path: str | os.PathLike[str] | None = None,
        audit_args: bool = False,
    ) -> None:
        if not isinstance(hooks, HookSet):
            raise TypeError(
                f"PluginHost needs a HookSet (e.g. plugbox.specs.PIPELINE), "
                f"not {type(hooks).__name__}"
            )
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
        self._history = ReportHistory(max_reports)
        self._tg: anyio.abc.TaskGroup | None = None
        self._tasks: HostTasks | None = None
        self._closed = False
        self._dumpable = dumpable
        self._guarding = False
        self._lock = as_lock(lock) if lock is not None else None
        self._audit = AuditTrail(audit_path, args=audit_args)
        self._call_hook: HookCaller = call_hook
        self._audit_calls_if_on()

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
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
    async def add(
        self,
        ref: str | type,
        *,
        config: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        sandbox: Sandbox | None = None,
        on_failure: OnFailure | None = None,
        version: str | None = None,
        sha256: str | None = None,
        lock: Lock | str | os.PathLike[str] | None = None,
    ) -> PluginInfo:
        """Start a worker for the plugin at ``ref`` and register it.

        ``ref`` is ``path/to/file.py``, ``package.module``, either with ``:ClassName``;
        or a class (inline: sent by value, see ``plugbox.host.inline``).
        ``config`` is handed to the plugin's ``initialize(config)``. Raises
        ``PluginLoadError`` naming the reference and the reason when the plugin does not
        exist, does not import, has no or several candidate classes, has a hook that
        takes an argument the spec lacks, fails in ``initialize``, or dies loading.

        Pins (each also applies to every restart of the plugin's worker):

        - ``version``: a PEP 440 specifier (``"~=1.2"``) that the plugin's declared
          version and, if it comes from an installed distribution, the distribution's
          version must satisfy; else ``PluginVersionError`` (a ``PluginLoadError``)
          naming the pin and what was found. The worker is killed before any hook (or
          ``close``) is called.
        - ``sha256``: the hex digest of the plugin's code (``plugbox.trust.integrity``: a
          file's bytes, or a package's tree of files). The host checks it before a
          worker starts, and the worker checks the bytes it actually loads; a mismatch
          is ``PluginIntegrityError`` (a ``PluginLoadError``) naming the reference and
          both digests.
        - ``lock``: a lock file (or ``Lock``), instead of the host's: the reference
          must be listed in it, and its name, version, distribution and sha256 are then
          required.
        """
        self._require_open()
        try:
            return await self._add(ref, config, limits, sandbox, on_failure, version, sha256, lock)
        except PluginLoadError as exc:
            if self._audit.active():
                self._audit.refusal(exc.ref, exc)
            raise

    async def _add(
        self,
        ref: str | type,
        config: Mapping[str, Any] | None,
        limits: Limits | None,
        sandbox: Sandbox | None,
        on_failure: OnFailure | None,
        version: str | None,
        sha256: str | None,
        lock: Lock | str | os.PathLike[str] | None,
    ) -> PluginInfo:
        ref, inline = inline_source(ref)
        if not isinstance(ref, str) or not ref:
            raise PluginLoadError(repr(ref), "a plugin reference must be a non-empty str")
        if on_failure not in (None, "raise", "skip"):
            raise ValueError("on_failure must be 'raise' or 'skip'")
        cfg = dict(config or {})
        try:
            check_crossable(cfg)
        except TypeError as exc:
            raise PluginLoadError(ref, f"config cannot cross the process boundary: {exc}") from None
        pins = resolve_pins(
            ref,
            inline is not None,
            version,
            sha256,
            as_lock(lock) if lock is not None else self._lock,
        )
        digest = pins.sha256
        options = PluginOptions(
            ref=ref,
            config=cfg,
            limits=limits or Limits(),
            sandbox=sandbox or Sandbox(),
            on_failure=on_failure,
            inline=inline,
            pins=pins.versions,
            sha256=digest,
            distribution=self._audit.active(),
        )
        plugin = await self.start_unregistered(options)
        if pins.locked_name is not None and plugin.name != pins.locked_name:
            await plugin.close()
            raise PluginLoadError(
                ref,
                f"the plugin is named {plugin.name!r}, "
                f"but the lock pins the name {pins.locked_name!r}",
            )
        if any(p.name == plugin.name for p in self._plugins):
            await plugin.close()
            raise PluginLoadError(ref, f"a plugin named {plugin.name!r} is already added")
        for problem in plugin.problems:
            log.warning("%s", problem)
        self._plugins.append(plugin)
        if self._audit.active():
            if digest is None and inline is None:  # not pinned: best effort, for the record
                try:
                    digest = await anyio.to_thread.run_sync(integrity.digest, ref)
                except (LookupError, OSError):
                    digest = None
            plugin.sha256 = digest
            self._audit.registration(plugin, digest)
            self._audit_calls_if_on()
        return plugin_info(plugin)

    async def start_unregistered(self, options: PluginOptions) -> SupervisedPlugin:
        """A started plugin, not registered: ``add`` registers it, and
        ``plugbox.host.inspect`` only reads its name and versions."""
        tg = self._require_open()

        def record(report: FailureReport) -> None:
            self._record(report, options.limits)

        plugin = SupervisedPlugin(options, self.hooks, self._launcher, tg, record)
        await plugin.start()
        plugin.sha256 = options.sha256
        return plugin

    async def remove(self, name: str) -> None:
        """Close one plugin and forget it."""
        plugin = self._find(name)
        self._plugins.remove(plugin)
        await plugin.close()
        if self._audit.active():
            self._audit.removal(name, "remove")

    def reset(self, name: str) -> None:
        """Lift a plugin's quarantine; its next call starts a fresh worker."""
        self._find(name).reset()

    @property
    def plugins(self) -> list[PluginInfo]:
        """The registered plugins, in the order they were added."""
        return [plugin_info(p) for p in self._plugins]

    @property
    def reports(self) -> list[FailureReport]:
        """Every FailureReport the host keeps, oldest first: of each plugin its newest,
        within its ``Limits.report_history`` (count) and ``report_history_kb`` (bytes),
        and at most ``max_reports`` in all. ``failure_counts`` counts every report."""
        return self._history.reports()

    def failure_counts(self, name: str) -> FailureCounts:
        """The running totals of the failures of the plugin named ``name`` (added now or
        before): reports per cause, and how many the bounded history has dropped.
        KeyError for a name the host has neither added nor reported."""
        counts = self._history.counts(name)
        if counts is not None:
            return counts
        self._find(name)
        return FailureCounts(plugin=name)

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
        return await self._call_hook(spec, list(self._plugins), args, self.on_failure, packed)

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
            try:
                for plugin in reversed(self._plugins):
                    try:
                        await plugin.close()
                    except Exception:  # pragma: no cover - close must go on
                        log.exception("closing plugin %s failed", plugin.name)
                    if self._audit.active():
                        self._audit.removal(plugin.name, "close")
                await self._launcher.aclose()
            finally:
                self._audit.close()

    # ---------------------------------------------------------------- helpers
    def _require_open(self) -> HostTasks:
        if self._tasks is None:
            raise RuntimeError("use PluginHost as 'async with PluginHost(...) as host'")
        if self._closed:
            raise RuntimeError("this PluginHost is closed")
        return self._tasks

    def _record(self, report: FailureReport, limits: Limits) -> None:
        self._history.record(report, limits.report_history, limits.report_history_kb * 1024)
        log.warning("%s", report.summary())

    def _find(self, name: str) -> SupervisedPlugin:
        for plugin in self._plugins:
            if plugin.name == name:
                return plugin
        raise KeyError(
            f"no plugin named {name!r} (plugins: "
            f"{', '.join(p.name for p in self._plugins) or 'none'})"
        )

    def _audit_calls_if_on(self) -> None:
        """Once auditing is on (an audit file, or the ``plugbox.audit`` logger enabled
        for INFO) as the host is made or a plugin is added, every call goes through
        ``audited_call_hook``: decided here, not per call."""
        if self._call_hook is call_hook and self._audit.active():
            self._call_hook = audited_call_hook(self._audit)


__all__ = ["PluginHost"]
