"""One registered plugin under supervision: calls, restarts with backoff, quarantine.

Every way a call can fail becomes a ``PluginFailure`` carrying a ``FailureReport``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import anyio

from ..errors import FAILURE_TYPES, PluginFailure, PluginLoadError
from ..protocol import Error, Handshake, LocalProtocolError, Result
from ..reports import FailureReport
from ..specs import HookSet
from . import admission
from .failure_reports import describe, failure_report
from .launch import launch_worker
from .launchers import Launcher
from .options import PluginOptions
from .quarantine import FailureAccounting
from .standby import Standby
from .tasks import HostTasks
from .worker_process import TimedOut, WorkerProcess


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


class SupervisedPlugin(FailureAccounting):
    """A plugin, its current worker and its failure history.

    A failure that killed the worker leaves the next call to start a fresh one, after a
    backoff that doubles with each failure in a row; ``max_failures`` such failures
    within ``failure_window`` seconds quarantine the plugin until ``reset()``. A
    plugin's own exceptions (``PluginRaised``) count only toward ``Limits.max_raises``.
    """

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
        self.identity: admission.Identity | None = None  # the first Handshake's: fixed
        self.name = options.ref
        self.version = ""
        self.hooks: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.layers: dict[str, bool] = {}
        self.dist_name = ""
        self.dist_version = ""
        self.sha256: str | None = None
        self.worker: WorkerProcess | None = None
        #: a worker forked and confined ahead of the next restart (``Limits.warm_spare``)
        self.standby = Standby(
            options.ref,
            inline=options.inline is not None,
            launch=lambda: self._launch(standby=True),
            needed=self._may_keep_standby,
            tg=tg,
        )
        #: have a standby made once the current call is answered
        self._want_standby = False
        self.restarts = 0
        self.calls = 0
        self.failures_in_row = 0
        self.recent_failures: deque[float] = deque()
        self.recent_raises: deque[float] = deque()  # with Limits.max_raises only
        self.last_failure_at = 0.0
        self.quarantine: FailureReport | None = None
        self.closed = False
        # no turn of the loop to take it when it is free: a restart is waited on
        self._start_lock = anyio.Lock(fast_acquire=True)
        self.logger = logging.getLogger("plugbox.plugin")

    # ---------------------------------------------------------------- starting
    async def start(self, first: FirstCall | None = None) -> Handshake:
        """Start a worker and load the plugin; PluginLoadError if it cannot be
        (PluginIntegrityError or PluginVersionError when a pin is not met). ``first``,
        a call to make once it is loaded, is sent at once when a standby worker is
        resumed and nothing in the Handshake could refuse the plugin (``first.sent``)."""
        await admission.check_integrity(self.options)
        worker = await self.standby.take(self.name, self.logger)
        if worker is None:
            worker = await self._launch()
        else:
            worker.resume()
            if first is not None and admission.may_call_before_handshake(self.options, worker):
                try:
                    first.sent = worker.send_call(first.hook, first.args, first.packed)
                except LocalProtocolError:
                    pass  # over the frame cap: the call fails the usual way, after
        # a restart logs as registered (set before its reader runs: nothing here waited)
        worker.registered_as = self.name if self.identity is not None else None
        try:
            return await self._load(worker)
        except BaseException:
            if self.worker is not worker:  # given up (its caller cancelled, say)
                worker.kill(None)  # a worker no one holds would live on unseen
            raise

    async def _load(self, worker: WorkerProcess) -> Handshake:
        """Wait for ``worker`` to load the plugin, check its Handshake and adopt it."""
        reply = await worker.wait_handshake(self.options.limits.start_timeout)
        if isinstance(reply, Handshake) and admission.same_identity(self.identity, worker, reply):
            await admission.admit(self.options, worker, reply)
            self._adopt(worker, reply)
            return reply
        if isinstance(reply, Error):
            worker.kill(None)
            await worker.wait_reaped()  # add() fails with nothing left
            raise admission.load_refusal(self.options, reply)
        cause, detail, death = await worker.wait_verdict()
        await worker.wait_reaped()
        report = failure_report(self, worker, "(load)", cause, f"while loading: {detail}", death)
        raise PluginLoadError(self.options.ref, f"{cause}: {detail}", report=report)

    async def _launch(self, *, standby: bool = False) -> WorkerProcess:
        """A new worker; with ``standby``, one told to confine itself and wait for Resume
        (``Standby``)."""
        parts = (self.options, self.spec, self.launcher, self.tg)
        return await launch_worker(*parts, label=self.name, logger=self.logger, standby=standby)

    def _may_keep_standby(self) -> bool:
        """Whether a standby worker is of use: the plugin is neither closed nor quarantined."""
        return not self.closed and self.quarantine is None

    def _schedule_standby(self) -> None:
        """Have a standby worker made in the background (called once the first call
        after a restart is over: the standby is not made beside it)."""
        self._want_standby = False
        self.standby.schedule(self.name, self.logger)

    def _adopt(self, worker: WorkerProcess, hello: Handshake) -> None:
        self.worker = worker
        if self.identity is None:  # the first Handshake (host.add) says who the plugin is
            self.identity = admission.Identity.of(hello)
            self.name, self.version = hello.plugin, hello.version
            self.dist_name, self.dist_version = hello.dist_name, hello.dist_version
        self.hooks = hello.hooks
        self.problems = hello.problems
        self.layers = hello.layers
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
                report = exc.report or failure_report(
                    self, None, hook, "crashed", f"restart failed: {exc.reason}", None
                )
                report = self._count_failure(replace(report, hook=hook))
                raise FAILURE_TYPES[report.cause](report) from None
            finally:
                # a plugin whose worker died once may well again: have the next one
                # ready, started once this call is answered (not beside it)
                self._want_standby = self.options.limits.warm_spare
            assert self.worker is not None
            return self.worker

    # ---------------------------------------------------------------- calling
    async def invoke(
        self,
        hook: str,
        args: dict[str, Any],
        packed: dict[str, bytes] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Call ``hook`` with ``args``: (value, changed arguments), or a PluginFailure.

        ``packed`` may hold the arguments already msgpack-encoded.
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

    async def begin(
        self, hook: str, args: dict[str, Any], packed: dict[str, bytes] | None = None
    ) -> SentCall:
        """``send``, starting a worker first if none is running: ``invoke`` in two
        halves, for a caller that needs to know which worker and wire id serve the call
        (the audit). ``finish`` waits for the reply."""
        call = self.send(hook, args, packed)
        if call is not None:
            return call
        first = FirstCall(hook, args, packed)
        worker = await self._ensure_worker(hook, first)
        started = time.monotonic()
        self.calls += 1
        call_id = first.sent  # sent with Resume, if a standby was resumed
        if call_id is None:
            call_id = worker.send_call(hook, args, packed, self.options.limits.call_timeout)
        return SentCall(worker, hook, call_id, started)

    def abandon(self, call: SentCall) -> None:
        """Give up on a call ``send`` made, unanswered (the worker is told to cancel it)."""
        call.worker.abandon(call.call_id)

    def refuse(self, hook: str, detail: str) -> PluginFailure:
        """The failure of a value this plugin answered ``hook`` with that cannot be passed
        on to the next plugin (``calling``): it broke the contract of what may cross, a
        protocol failure counted toward quarantine; its worker, whose frames were all within
        bounds, is not suspect and lives on."""
        report = failure_report(self, self.worker, hook, "protocol", detail, None)
        return FAILURE_TYPES["protocol"](self._count_failure(report))

    async def finish(self, call: SentCall) -> tuple[Any, dict[str, Any]]:
        """The reply to ``call`` (``send``): (value, changed arguments), or a
        PluginFailure."""
        reply = await call.worker.reply(call.call_id, call.hook, self.options.limits.call_timeout)
        if isinstance(reply, Result):
            return self._answered(reply)
        await self._failed(call.worker, call.hook, reply, call.started)

    def _answered(self, reply: Result) -> tuple[Any, dict[str, Any]]:
        self.failures_in_row = 0
        if self._want_standby:
            self._schedule_standby()
        return reply.value, reply.changed

    async def _failed(
        self, worker: WorkerProcess, hook: str, reply: Error | TimedOut | None, started: float
    ) -> NoReturn:
        """Raise the PluginFailure for a call ``reply`` did not answer with a Result."""
        duration = time.monotonic() - started
        if isinstance(reply, Error) and worker.memory_hint is None:
            report = failure_report(
                self, worker, hook, "raised", describe(reply), None, duration, exc=reply
            )
            self.record(report)
            if self._count_raise(report):
                worker.reported = True  # stopped for its quarantine: no failure of its own
                await worker.shutdown(self.options.limits.close_timeout)
            elif self._want_standby:
                self._schedule_standby()
            raise FAILURE_TYPES["raised"](report)
        if isinstance(reply, Error):  # out of memory: the worker's heap is suspect
            worker.kill("memory", f"ran out of memory: {describe(reply)}")
        cause, detail, death = await worker.wait_verdict()
        if isinstance(reply, TimedOut) and cause != "timeout":
            detail = f"{detail} (the call had timed out after {reply.timeout:g} s)"
        elif worker.closing:  # not the plugin's doing: its host closed it mid-call
            detail = f"the host closed the plugin during the call ({detail})"
        report = failure_report(
            self,
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
        if self._want_standby:  # once the failure is counted: none if it quarantined
            self._schedule_standby()
        raise FAILURE_TYPES[cause](report)

    async def _note_death(self, worker: WorkerProcess, hook: str) -> None:
        """A worker found dead between calls: report it once, unless it was closed."""
        if worker.reported or worker.closing:
            return
        cause, detail, death = await worker.wait_verdict()
        worker.reported = True
        self._count_failure(
            failure_report(self, worker, "(idle)", cause, f"between calls: {detail}", death)
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
        await self.standby.drop()
