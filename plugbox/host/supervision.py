"""One registered plugin under supervision: start, restart with backoff, quarantine.

``SupervisedPlugin.invoke`` calls one hook on the plugin's current worker and turns
every way that can fail into a ``PluginFailure`` with a ``FailureReport``. A failure
that killed the worker leaves the next call to start a fresh one, after a backoff
that doubles with each failure in a row; ``max_failures`` killing failures within
``failure_window`` seconds quarantine the plugin until ``reset()``. A plugin's own
exceptions (``PluginRaised``) do not count toward quarantine: the worker lives on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import anyio
import anyio.abc

from ..errors import FAILURE_TYPES, PluginIntegrityError, PluginLoadError, PluginVersionError
from ..limits import Limits, Sandbox
from ..protocol import Error, Handshake, LocalProtocolError, Result, Start
from ..reports import Cause, FailureReport, signal_name
from ..specs import HookSet, OnFailure
from ..trust import integrity
from ..trust.pins import Found, VersionPin
from . import _linux
from .causes import Death
from .launchers import Launcher
from .tasks import HostTasks
from .worker_process import TimedOut, WorkerProcess


@dataclass
class PluginOptions:
    """What ``host.add`` was given for a plugin."""

    ref: str
    config: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    sandbox: Sandbox = field(default_factory=Sandbox)
    on_failure: OnFailure | None = None
    pins: tuple[VersionPin, ...] = ()
    sha256: str | None = None
    distribution: bool = False
    initialize: bool = True
    inline: bytes | None = None  # a class serialized by value (host.add(SomeClass))


@dataclass
class FirstCall:
    """The call that found the plugin's worker dead. A restart that resumes a standby
    worker sends it right behind Resume (``sent``: its id), so the worker answers it as
    soon as it has loaded the plugin, without a round trip for the Handshake between."""

    hook: str
    args: dict[str, Any]
    packed: dict[str, bytes] | None
    sent: int | None = None


@dataclass(slots=True)
class SentCall:
    """A call sent to a plugin's worker, its reply still to be read."""

    worker: WorkerProcess
    hook: str
    call_id: int | None
    started: float


class SupervisedPlugin:
    """A plugin, its current worker and its failure history."""

    def __init__(
        self,
        options: PluginOptions,
        hooks: HookSet,
        launcher: Launcher,
        tg: HostTasks,
        record: Callable[[FailureReport], None],
    ) -> None:
        self.options = options
        self.spec = hooks
        self.launcher = launcher
        self.tg = tg
        self.record = record
        self.name = options.ref
        self.version = ""
        self.hooks: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.layers: dict[str, bool] = {}
        self.dist_name = ""
        self.dist_version = ""
        self.sha256: str | None = None
        self.worker: WorkerProcess | None = None
        #: a standby worker (``Limits.warm_spare``), and the plugin file as it was read
        self.spare: WorkerProcess | None = None
        self._spare_source: tuple[int, ...] | None = None
        self._spare_launching: anyio.Event | None = None
        self._want_spare = False
        self.restarts = 0
        self.calls = 0
        self.failures_in_row = 0
        self.recent_failures: deque[float] = deque()
        self.last_failure_at = 0.0
        self.quarantine: FailureReport | None = None
        self.closed = False
        # no turn of the loop to take it when it is free: a restart is waited on
        self._start_lock = anyio.Lock(fast_acquire=True)
        self.logger = logging.getLogger("plugbox.plugin")

    # ---------------------------------------------------------------- starting
    def _start_message(self, scratch: str, standby: bool = False) -> Start:
        limits = self.options.limits.to_worker()
        if standby:  # confine, send Confined, then wait for Resume
            limits["standby"] = True
        # the plugin's own logger may not exist before its name is known: the level of
        # "plugbox.plugin" decides what workers send at all
        limits["log_level"] = logging.getLogger("plugbox.plugin").getEffectiveLevel()
        options = self.options
        if options.sha256 is not None:  # checked again on the bytes the worker loads
            limits["sha256"] = options.sha256
        if options.distribution or options.pins:
            limits["distribution"] = True
        if not options.initialize:
            limits["initialize"] = False
        sandbox = self.options.sandbox
        env = {name: os.environ[name] for name in sandbox.env if name in os.environ}
        return Start(
            ref=self.options.ref,
            config=self.options.config,
            hooks=self.spec.to_worker(),
            limits=limits,
            sandbox=sandbox.to_worker(scratch, env),
            inline=self.options.inline,
        )

    def _make_scratch(self) -> tuple[str, bool]:
        """The worker's scratch directory, and whether it is ours to remove after."""
        sandbox = self.options.sandbox
        if sandbox.scratch is not None:
            return sandbox.scratch, False
        path = tempfile.mkdtemp(prefix="plugbox-scratch-")
        if os.geteuid() == 0 and sandbox.user is not None:
            import pwd

            entry = pwd.getpwnam(sandbox.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path, True

    async def check_integrity(self) -> None:
        """The host's check of a pinned sha256, before any worker starts; it reads the
        plugin's files without importing them (``plugbox.trust.integrity``)."""
        expected = self.options.sha256
        if expected is None:
            return
        ref = self.options.ref
        try:
            actual = await anyio.to_thread.run_sync(integrity.digest, ref)
        except LookupError as exc:
            raise PluginLoadError(ref, f"cannot check its sha256: {exc}") from None
        except OSError as exc:
            raise PluginLoadError(ref, f"cannot check its sha256: {exc}") from None
        if actual != expected:
            try:
                what = integrity.locate(ref).describe()
            except LookupError:  # pragma: no cover - it was just located
                what = ""
            raise PluginIntegrityError(ref, expected, actual, checked_by="host", what=what)

    async def start(self, first: FirstCall | None = None) -> Handshake:
        """Start a worker and load the plugin; PluginLoadError if it cannot be
        (PluginIntegrityError or PluginVersionError when a pin is not met). ``first``,
        a call to make once it is loaded, is sent at once when a standby worker is
        resumed and nothing in the Handshake could refuse the plugin (``first.sent``)."""
        await self.check_integrity()
        worker = await self._take_spare()
        if worker is None:
            worker = await self._launch()
        else:
            worker.resume()
            if first is not None and self._may_call_before_handshake(worker):
                try:
                    first.sent = worker.send_call(first.hook, first.args, first.packed)
                except LocalProtocolError:
                    pass  # over the frame cap: the call fails the usual way, after
        try:
            return await self._load(worker)
        except BaseException:
            if self.worker is not worker:  # given up (its caller cancelled, say)
                worker.kill(None)  # a worker no one holds would live on unseen
            raise

    async def _load(self, worker: WorkerProcess) -> Handshake:
        """Wait for ``worker`` to load the plugin, check its Handshake and adopt it."""
        limits = self.options.limits
        reply = await worker.wait_handshake(limits.start_timeout)
        if isinstance(reply, Handshake):
            missing = self._missing_layers(reply.layers)
            if missing and self.options.sandbox.strict:
                await worker.shutdown(0)
                await worker.wait_reaped()
                raise PluginLoadError(
                    self.options.ref,
                    (
                        f"strict sandbox: layer {missing[0]!r} is not in force on this system "
                        f"(missing: {', '.join(missing)})"
                    ),
                )
            found = Found(reply.version, reply.dist_name, reply.dist_version)
            for pin in self.options.pins:
                problem = pin.problem(found)
                if problem is not None:  # no hook is ever called, nor close()
                    worker.kill(None)
                    await worker.wait_reaped()  # add() fails with nothing left
                    raise PluginVersionError(self.options.ref, pin.spec, found.as_dict(), problem)
            self._adopt(worker, reply)
            return reply
        ref = self.options.ref
        if isinstance(reply, Error):
            worker.kill(None)
            await worker.wait_reaped()  # add() fails with nothing left
            if reply.exc_type == "PluginIntegrityError":
                said = re.match(r"sha256 of (.*) is ([0-9a-f]{64}), expected", reply.message)
                raise PluginIntegrityError(
                    ref,
                    self.options.sha256 or "?",
                    said.group(2) if said else "?",
                    checked_by="worker",
                    what=said.group(1) if said else reply.message,
                )
            reason = (
                reply.message
                if reply.exc_type == "PluginLoadError"
                else (f"{reply.exc_type}: {reply.message}")
            )
            raise PluginLoadError(ref, reason + (f"\n{reply.traceback}" if reply.traceback else ""))
        cause, detail, death = await worker.wait_verdict()
        await worker.wait_reaped()
        report = self._report(worker, "(load)", cause, f"while loading: {detail}", death)
        raise PluginLoadError(ref, f"{cause}: {detail}", report=report)

    def _may_call_before_handshake(self, worker: WorkerProcess) -> bool:
        """Whether a call may go to a resumed standby before its Handshake: only when
        the Handshake cannot refuse the plugin. A version pin is checked on it (and a
        refused version must never have a hook called); a strict sandbox on the layers,
        which the Handshake must repeat from Confined, so those are known already."""
        if self.options.pins:
            return False
        if not self.options.sandbox.strict:
            return True
        return worker.confined is not None and not self._missing_layers(worker.confined.layers)

    def _missing_layers(self, layers: dict[str, bool]) -> list[str]:
        """The sandbox layers the plugin's options ask for that ``layers`` lacks."""
        return [
            layer
            for layer in self.options.sandbox.requested_layers(root=os.geteuid() == 0)
            if not layers.get(layer)
        ]

    async def _launch(self, standby: bool = False) -> WorkerProcess:
        """A new worker, sent its Start (to load the plugin, or with ``standby`` to
        confine itself and wait for Resume)."""
        scratch, owned = self._make_scratch()
        try:
            spawned = await self.launcher.spawn(self.tg)
        except BaseException:
            if owned:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        worker = WorkerProcess(
            spawned, label=self.name, limits=self.options.limits, logger=self.logger
        )
        worker.scratch_to_remove = scratch if owned else None
        worker.start(self.tg, self._start_message(scratch, standby=standby))
        return worker

    # ---------------------------------------------------------------- the standby worker
    def _schedule_spare(self) -> None:
        """Start a standby worker in the background, unless there is one (called once
        the first call after a restart is over: the standby is not made beside it)."""
        self._want_spare = False
        if (
            self.closed
            or self.quarantine is not None
            or self.spare is not None
            or self._spare_launching is not None
        ):
            return
        self._spare_launching = anyio.Event()
        self.tg.start_soon(self._make_spare, self._spare_launching)

    async def _make_spare(self, launching: anyio.Event) -> None:
        """Start a standby worker: forked, confined and waiting, so that the next
        restart skips all that and only loads the plugin (``Limits.warm_spare``)."""
        try:
            if self.closed:
                return
            source = self._source_stamp()  # before the worker reads the file
            try:
                spare = await self._launch(standby=True)
            except Exception as exc:  # the zygote cannot fork: restarts start afresh
                self.logger.warning("plugin %s: no standby worker: %s", self.name, exc)
                return
            if self.closed or self.quarantine is not None:
                await _discard(spare)
                return
            self.spare, self._spare_source = spare, source
        finally:
            self._spare_launching = None
            launching.set()

    async def _drop_spare(self) -> None:
        """Stop the standby worker, if there is one (or one being made)."""
        if self._spare_launching is not None:
            await self._spare_launching.wait()
        spare, self.spare = self.spare, None
        if spare is not None:
            await _discard(spare)

    async def _take_spare(self) -> WorkerProcess | None:
        """The standby worker, if one is confined and ready for this plugin as it now
        is; otherwise None (and a dead or outdated one is disposed of)."""
        if self._spare_launching is not None:  # forking now: a moment from ready
            await self._spare_launching.wait()
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            confined = await spare.wait_confined()
        except BaseException:
            spare.kill(None)  # taken, then given up: no one else would stop it
            raise
        if confined and self._source_stamp() == self._spare_source:
            return spare
        if spare.alive:  # the plugin's file changed since the standby read it
            self.logger.info(
                "plugin %s: standby worker discarded: %s changed", self.name, self.options.ref
            )
        else:
            cause, detail, _ = await spare.wait_verdict()
            self.logger.warning(
                "plugin %s: its standby worker (pid %d) died before it was needed: %s: %s",
                self.name,
                spare.pid,
                cause,
                detail,
            )
        await _discard(spare)
        return None

    def _source_stamp(self) -> tuple[int, ...] | None:
        """The identity of a file plugin's file (inode, size, times): a standby worker
        read it when it started, and one that read an older file is not used."""
        if self.options.inline is not None:
            return None
        target, is_file = integrity.split_ref(self.options.ref)
        if not is_file:
            return None  # a module: imported by name after Resume, so never stale
        try:
            st = os.stat(target)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _adopt(self, worker: WorkerProcess, hello: Handshake) -> None:
        self.worker = worker
        self.name = hello.plugin
        self.version = hello.version
        self.hooks = hello.hooks
        self.problems = hello.problems
        self.layers = hello.layers
        self.dist_name = hello.dist_name
        self.dist_version = hello.dist_version
        self.logger = worker.logger

    async def _ensure_worker(self, hook: str, first: FirstCall | None = None) -> WorkerProcess:
        worker = self.worker
        if worker is not None and worker.alive:  # the common case takes no lock
            return worker
        async with self._start_lock:
            worker = self.worker
            if worker is not None and worker.alive:
                return worker
            if worker is not None:
                await self._note_death(worker, hook)
                self.worker = None
            self._check_quarantine(hook)
            wait = self.backoff() - (time.monotonic() - self.last_failure_at)
            if wait > 0:
                await anyio.sleep(wait)
            self.restarts += 1
            try:
                await self.start(first)
            except PluginLoadError as exc:
                report = exc.report or self._report(
                    None, hook, "crashed", f"restart failed: {exc.reason}", None
                )
                report = self._count_failure(replace(report, hook=hook))
                raise FAILURE_TYPES[report.cause](report) from None
            finally:
                # a plugin whose worker died once may well again: have the next one
                # ready, started once this call is answered (not beside it)
                self._want_spare = self.options.limits.warm_spare
            assert self.worker is not None
            return self.worker

    def backoff(self) -> float:
        """Seconds to wait before the next start, after ``failures_in_row`` failures."""
        limits = self.options.limits
        if self.failures_in_row == 0:
            return 0.0
        # the exponent is capped: 2.0 ** 1024 overflows, and a plugin that never meets
        # quarantine (failures spaced past its window) may fail that often in a row
        doubling = 2.0 ** min(self.failures_in_row - 1, 64)
        return float(min(limits.backoff_initial * doubling, limits.backoff_max))

    # ---------------------------------------------------------------- calling
    async def invoke(
        self,
        hook: str,
        args: dict[str, Any],
        packed: dict[str, bytes] | None = None,
        trace: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Call ``hook`` with ``args``: (value, changed arguments), or a PluginFailure.

        ``packed`` may hold the arguments already msgpack-encoded. ``trace`` (auditing
        only) receives the worker's ``pid`` and the call's ``wire_id``.
        """
        self._check_quarantine(hook)
        worker = self.worker
        call_id = None
        if worker is None or not worker.alive:
            first = FirstCall(hook, args, packed)
            worker = await self._ensure_worker(hook, first)
            call_id = first.sent  # sent with Resume, if a standby was resumed
        started = time.monotonic()
        self.calls += 1
        if call_id is None:
            call_id = worker.send_call(hook, args, packed)
        if trace is not None:
            trace["pid"] = worker.pid
            trace["wire_id"] = call_id
        reply = await worker.reply(call_id, hook, self.options.limits.call_timeout)
        if isinstance(reply, Result):
            return self._answered(reply)
        await self._failed(worker, hook, reply, started)

    def send(
        self, hook: str, args: dict[str, Any], packed: dict[str, bytes] | None = None
    ) -> SentCall | None:
        """Send ``hook`` to the plugin's running worker without waiting (``finish``
        waits for the reply, ``abandon`` gives it up): None, and nothing sent, when no
        worker is running (``invoke`` starts one). PluginQuarantined if quarantined.
        The call's timeout counts from now."""
        self._check_quarantine(hook)
        worker = self.worker
        if worker is None or not worker.alive:
            return None
        started = time.monotonic()
        self.calls += 1
        call_id = worker.send_call(hook, args, packed, self.options.limits.call_timeout)
        return SentCall(worker, hook, call_id, started)

    def abandon(self, call: SentCall) -> None:
        """Give up on a call ``send`` made, unanswered (the worker is told to cancel it)."""
        call.worker.abandon(call.call_id)

    async def finish(self, call: SentCall) -> tuple[Any, dict[str, Any]]:
        """The reply to ``call`` (``send``): (value, changed arguments), or a
        PluginFailure."""
        reply = await call.worker.reply(call.call_id, call.hook, self.options.limits.call_timeout)
        if isinstance(reply, Result):
            return self._answered(reply)
        await self._failed(call.worker, call.hook, reply, call.started)

    def _answered(self, reply: Result) -> tuple[Any, dict[str, Any]]:
        self.failures_in_row = 0
        if self._want_spare:
            self._schedule_spare()
        return reply.value, reply.changed

    async def _failed(
        self, worker: WorkerProcess, hook: str, reply: Error | TimedOut | None, started: float
    ) -> NoReturn:
        """Raise the PluginFailure for a call ``reply`` did not answer with a Result."""
        duration = time.monotonic() - started
        if isinstance(reply, Error) and worker.memory_hint is None:
            report = self._report(
                worker, hook, "raised", _describe(reply), None, duration, exc=reply
            )
            self.record(report)
            if self._want_spare:
                self._schedule_spare()
            raise FAILURE_TYPES["raised"](report)
        if isinstance(reply, Error):  # out of memory: the worker's heap is suspect
            worker.kill("memory", f"ran out of memory: {_describe(reply)}")
        cause, detail, death = await worker.wait_verdict()
        if isinstance(reply, TimedOut) and cause != "timeout":
            detail = f"{detail} (the call had timed out after {reply.timeout:g} s)"
        elif worker.closing:  # not the plugin's doing: its host closed it mid-call
            detail = f"the host closed the plugin during the call ({detail})"
        report = self._report(
            worker,
            hook,
            cause,
            detail,
            death,
            duration,
            exc=reply if isinstance(reply, Error) else None,
        )
        if worker.reported:  # one death fails every call in flight; it counts once
            report = replace(report, backoff=self.backoff())
            self.record(report)
        else:
            worker.reported = True
            report = self._count_failure(report)
        if self._want_spare:  # once the failure is counted: none if it quarantined
            self._schedule_spare()
        raise FAILURE_TYPES[cause](report)

    async def _note_death(self, worker: WorkerProcess, hook: str) -> None:
        """A worker found dead between calls: report it once, unless it was closed."""
        if worker.reported or worker.closing:
            return
        cause, detail, death = await worker.wait_verdict()
        worker.reported = True
        self._count_failure(
            self._report(worker, "(idle)", cause, f"between calls: {detail}", death)
        )

    def _count_failure(self, report: FailureReport) -> FailureReport:
        """Record a failure that killed the worker; returns the report as recorded
        (with the backoff the next start will wait)."""
        now = time.monotonic()
        self.failures_in_row += 1
        self.last_failure_at = now
        report = replace(report, backoff=self.backoff())
        self.record(report)
        window = self.options.limits.failure_window
        self.recent_failures.append(now)
        while self.recent_failures and now - self.recent_failures[0] > window:
            self.recent_failures.popleft()
        if len(self.recent_failures) >= self.options.limits.max_failures:
            n = len(self.recent_failures)
            self.quarantine = FailureReport(
                plugin=self.name,
                version=self.version,
                hook=report.hook,
                cause="quarantined",
                detail=(
                    f"quarantined after {n} failures within {window:g} s "
                    f"(last: {report.cause}: {report.detail}); host.reset({self.name!r}) "
                    f"lets it run again"
                ),
                pid=report.pid,
                restarts=self.restarts,
                time=time.time(),
            )
            self.record(self.quarantine)
            if self.spare is not None or self._spare_launching is not None:
                self.tg.start_soon(self._drop_spare)  # no restart until reset()
        return report

    def _check_quarantine(self, hook: str) -> None:
        if self.quarantine is not None:
            q = self.quarantine
            raise FAILURE_TYPES["quarantined"](
                FailureReport(
                    plugin=q.plugin,
                    version=q.version,
                    hook=hook,
                    cause="quarantined",
                    detail=q.detail,
                    restarts=self.restarts,
                    time=time.time(),
                )
            )

    def reset(self) -> None:
        """Lift a quarantine and forget the failure history."""
        self.quarantine = None
        self.recent_failures.clear()
        self.failures_in_row = 0

    # ---------------------------------------------------------------- reports
    def _report(
        self,
        worker: WorkerProcess | None,
        hook: str,
        cause: Cause,
        detail: str,
        death: Death | None,
        duration: float = 0.0,
        exc: Error | None = None,
    ) -> FailureReport:
        pid = worker.pid if worker is not None else None
        peak, cpu = 0, 0.0
        if death is not None:
            peak, cpu = death.peak_rss_kb, death.cpu_time
        elif pid is not None:
            peak, cpu = _linux.peak_rss_kb(pid), _linux.cpu_time(pid)
        return FailureReport(
            plugin=self.name,
            version=self.version,
            hook=hook,
            cause=cause,
            detail=detail,
            pid=pid,
            exit_code=death.exit_code if death is not None else None,
            signal=signal_name(death.signal) if death is not None else None,
            duration=duration,
            peak_rss_kb=peak,
            cpu_time=cpu,
            stderr_tail=tuple(worker.stderr.tail) if worker is not None else (),
            restarts=self.restarts,
            exc_type=exc.exc_type if exc else None,
            exc_message=exc.message if exc else None,
            traceback=exc.traceback if exc else None,
            killed=bool(death is not None and death.kill_reason is not None),
            time=time.time(),
        )

    # ---------------------------------------------------------------- closing
    async def close(self) -> None:
        """Shut the worker down within the grace period, then kill it."""
        self.closed = True
        worker, self.worker = self.worker, None
        if worker is not None:
            await worker.shutdown(self.options.limits.close_timeout)
            await worker.wait_verdict()
            with anyio.move_on_after(self.options.limits.close_timeout):
                await worker.wait_reaped()  # closed: nothing of it left
        await self._drop_spare()


async def _discard(spare: WorkerProcess) -> None:
    """Stop a standby worker (none of the plugin's code ran in it) and wait for it."""
    spare.closing = True
    spare.kill(None)
    await spare.wait_verdict()


def _describe(error: Error) -> str:
    """'ValueError: bad input', or just 'MemoryError' when the message is empty."""
    return f"{error.exc_type}: {error.message}" if error.message else error.exc_type
