"""One live worker as the host sees it: its channel, calls in flight, output, death.

Replies are routed by call id from one reader task; sends go straight to the socket
when it can take them and otherwise through one writer task that batches what is
queued, so no call waits on a lock. Death is noticed by events only: the channel's
EOF, or the launcher reaping the process.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..limits import Limits
from ..protocol import (
    EXIT_REPORT_SIZE,
    LOAD_CALL_ID,
    WORKER_TO_HOST,
    Cancel,
    Confined,
    Error,
    FrameDecoder,
    FrameLimits,
    Handshake,
    Log,
    Message,
    ProtocolError,
    Result,
    Resume,
    Shutdown,
    Start,
    encode,
    encode_call,
    pack,
    unpack_exit_report,
)
from ..reports import Cause
from . import _linux
from .causes import Death, classify, is_memory_error
from .channel import open_channel
from .exits import ExitInfo, ExitWatch
from .launchers import SpawnedWorker, close_watched
from .output import OutputCapture
from .pending import EXPIRED, Pending, deadlines_for_running_loop
from .tasks import HostTasks

#: how long a worker that closed its channel may take to exit before it is killed.
CLOSED_CHANNEL_GRACE = 1.0
#: log records kept from a worker before its handshake names the plugin.
EARLY_LOG_LIMIT = 1000
#: how long the host waits for the rest of a dead worker's stderr.
OUTPUT_DRAIN = 0.5


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The call passed its deadline (the worker has been killed)."""

    timeout: float


class WorkerProcess:
    """The host's handle on one worker process."""

    def __init__(
        self, spawned: SpawnedWorker, *, label: str, limits: Limits, logger: logging.Logger
    ) -> None:
        self.spawned = spawned
        self.pid = spawned.pid  # the launched process, until a Handshake names another
        #: the highest RSS the usage watch saw: the peak where the exit's is unknown
        self.peak_seen_kb = 0
        self.label = label
        self.limits = limits
        self.logger = logger
        #: the layers and RSS the worker reported before the plugin's code ran
        self.confined: Confined | None = None
        self.handshake: Handshake | None = None
        self.load_error: Error | None = None
        self.kill_reason: Cause | None = None
        self.kill_detail = ""
        self.memory_hint: str | None = None
        self.closing = False
        self.reported = False
        self.scratch_to_remove: str | None = None
        self.protocol_error: ProtocolError | None = None
        self.channel_closed_by_host = False
        self.answered = 0
        self.calls = 0
        self.verdict: tuple[Cause, str, Death] | None = None
        self._verdict = anyio.Event()
        #: set at the Handshake, the load error or the death, whichever comes first
        self._settled = anyio.Event()
        #: how the plugin's process ended: from its init's exit report, or the reap
        self._ended = ExitWatch()
        #: what of the exit report has come (``_take_exit_report``)
        self._exit_report = b""
        self._confined = anyio.Event()  # (or died first)
        self._dead = anyio.Event()
        #: not ``_dead.is_set()``: read on every call (``alive``), so kept plain
        self._alive = True
        self._drained = anyio.Event()
        self._channel_done = anyio.Event()
        self._outputs_open = 2
        self._pending: dict[int, Pending] = {}
        self._early_logs: list[Log] = []
        self._abandoned: set[int] = set()
        self._next_id = 1
        self.channel = open_channel(spawned.channel)
        self._deadlines = deadlines_for_running_loop(self._call_expired)
        self._decoder = FrameDecoder(
            peer="worker",
            accept=WORKER_TO_HOST,
            limits=FrameLimits(max_frame_bytes=limits.max_message_mb << 20),
        )
        self._max_frame = limits.max_message_mb << 20
        #: a standby worker, not yet told to load the plugin (``resume``)
        self.standby = False
        #: each hook the host offered (Start) and the arguments it has
        self._offered: dict[str, frozenset[str]] = {}
        self.stdout = OutputCapture(logger, logging.INFO, tail_lines=limits.stderr_tail_lines)
        self.stderr = OutputCapture(logger, logging.WARNING, tail_lines=limits.stderr_tail_lines)

    # ---------------------------------------------------------------- life
    def start(self, tg: HostTasks, start: Start) -> None:
        """Start the reader, writer, output and exit tasks, then send ``start``."""
        self._offered = {
            hook: frozenset(spec.get("args", ()))
            for hook, spec in start.hooks.items()
            if isinstance(spec, dict)
        }
        self.standby = bool(start.limits.get("standby"))
        tg.start_soon(self._read_channel)
        tg.start_soon(self._deadlines.run)
        tg.start_soon(self._read_output, self.spawned.stdout, self.stdout)
        tg.start_soon(self._read_output, self.spawned.stderr, self.stderr)
        tg.start_soon(self._watch_exit)
        if self.spawned.exit_report is not None:
            tg.start_soon(self._read_exit_report, self.spawned.exit_report)
        tg.start_soon(self._supervise)
        if self.limits.rss_check_interval and (self.limits.memory_mb or self.limits.cpu_seconds):
            tg.start_soon(self._watch_usage, self.limits.rss_check_interval)
        self.send(encode(start, side="host", max_frame_bytes=self._max_frame))

    def resume(self) -> None:
        """Tell a standby worker (started with ``standby`` in its Start) to load the
        plugin; ``wait_handshake`` then waits for it as for any worker."""
        self.standby = False
        self.send(encode(Resume(), side="host"))

    async def wait_confined(self) -> bool:
        """Wait until the worker has reported its sandbox (Confined) or died; whether
        it is alive and confined."""
        if not self._confined.is_set():  # (no turn of the loop for what is here)
            await self._confined.wait()
        return self.alive and self.confined is not None

    @property
    def alive(self) -> bool:
        """Whether the worker can still take calls."""
        return self._alive

    @property
    def exit_info(self) -> ExitInfo | None:
        """How the plugin's process ended, once it has (None before)."""
        return self._ended.info

    async def wait_handshake(self, timeout: float) -> Handshake | Error | None:
        """The Handshake, the load Error, or None if the worker died or timed out
        (then ``kill_reason`` says which)."""
        if not self._settled.is_set():
            with anyio.move_on_after(timeout):
                await self._settled.wait()
        if self.handshake is not None:
            return self.handshake
        if self.load_error is not None:
            return self.load_error
        if self.alive:
            self.kill("timeout", f"did not finish loading within {timeout:g} s")
        return None

    def kill(self, reason: Cause | None, detail: str = "") -> None:
        """SIGKILL the worker and its process group; ``reason`` becomes the cause."""
        if self.kill_reason is None and reason is not None and self.exit_info is None:
            self.kill_reason, self.kill_detail = reason, detail
        if self.exit_info is not None:
            self._mark_dead()
            return
        launched = self.spawned.pid
        if self.pid != launched:
            # a pid namespace: the plugin's death ends its init, which ends everything
            # left in the namespace, and the launched process, which reports the death
            # with the rusage of both (killing the launched process first would lose it)
            _linux.send_signal(self.pid, self.spawned.serving_pidfd, signal.SIGKILL)
        else:
            _kill_descendants(launched)
            _linux.send_signal(launched, self.spawned.pidfd, signal.SIGKILL)
            _linux.kill_group(launched)
        self._mark_dead()

    async def wait_exit(self) -> ExitInfo:
        """Wait until the plugin's process has ended: its init's exit report (in a pid
        namespace), or the launcher's reap of the worker, whichever comes first."""
        return await self._ended.wait()

    async def wait_reaped(self) -> ExitInfo:
        """Wait until the launcher has reaped the launched process: then nothing of the
        worker is left (in a pid namespace, its init and the plugin went first)."""
        return await self.spawned.exit.wait()

    async def shutdown(self, grace: float) -> None:
        """Ask the plugin to close; kill the worker if it has not exited within ``grace``."""
        self.closing = True
        if self.alive and not self.channel.broken:
            self.send(encode(Shutdown(), side="host"))
        with anyio.move_on_after(grace):
            await self.wait_exit()
        if self.exit_info is None:
            self.logger.warning(
                "plugin did not close within %g s; its worker (pid %d) was killed", grace, self.pid
            )
            self.kill("crashed", f"killed when the host closed it, after a {grace:g} s grace")
            await self.wait_exit()
        self._mark_dead()

    async def death(self) -> Death:
        """Everything known about the worker's end (waits for the reap and stderr)."""
        if self.exit_info is None:
            self._take_exit_report()
        info = self.exit_info  # (what is here already is not waited for again)
        if info is None:
            if self.kill_reason is None:
                with anyio.move_on_after(CLOSED_CHANNEL_GRACE):
                    await self.wait_exit()
                # a process that has ended, whose status is slow to come (its init or
                # the zygote not yet scheduled, on a loaded machine), was not killed
                if self.exit_info is None and not _linux.has_ended(self._serving_pidfd()):
                    self.kill("protocol", "the worker closed its channel")
            info = await self.wait_exit()
        if not (self._drained.is_set() and self._channel_done.is_set()):
            with anyio.move_on_after(OUTPUT_DRAIN):
                await self._drained.wait()
                await self._channel_done.wait()  # log records sent before the end
        baseline = self.handshake.baseline_rss_kb if self.handshake else 0
        return Death(
            kill_reason=self.kill_reason,
            kill_detail=self.kill_detail,
            exit_code=info.exit_code,
            signal=info.signal,
            peak_rss_kb=info.max_rss_kb or self.peak_seen_kb,
            cpu_time=info.cpu_time,
            memory_mb=self.limits.memory_mb,
            baseline_rss_kb=baseline,
            cpu_seconds=self.limits.cpu_seconds,
            memory_hint=self.memory_hint,
            lost=info.lost,
        )

    def _serving_pidfd(self) -> int | None:
        """The pidfd of the plugin's own process (pid 2 of its namespace, or the
        launched process)."""
        if self.pid != self.spawned.pid:
            return self.spawned.serving_pidfd
        return self.spawned.pidfd

    async def wait_verdict(self) -> tuple[Cause, str, Death]:
        """(cause, detail, death) once the worker has died and been reaped."""
        if self.verdict is None:
            await self._verdict.wait()
        assert self.verdict is not None
        return self.verdict

    async def _supervise(self) -> None:
        """When the worker dies: name the cause, then close the host's fds for it."""
        await self._dead.wait()
        with anyio.CancelScope(shield=True):
            death = await self.death()
            cause, detail = classify(death)
            self.verdict = (cause, detail, death)
            self._verdict.set()
            # the caller's report first; the fds and the scratch directory can wait a turn
            await anyio.lowlevel.checkpoint()
            self.spawned.close_fds()
            if self.scratch_to_remove is not None:
                shutil.rmtree(self.scratch_to_remove, ignore_errors=True)

    def name_logger(self, plugin: str) -> None:
        """Send the worker's logs and output to ``plugbox.plugin.<plugin>``."""
        self.logger = logging.getLogger(f"plugbox.plugin.{plugin}")
        self.stdout.logger = self.logger
        self.stderr.logger = self.logger

    # ---------------------------------------------------------------- calls
    def send_call(
        self,
        hook: str,
        args: dict[str, Any],
        packed: Mapping[str, bytes] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Send a Call of ``hook`` now; its id for ``reply``, or None if the worker is
        dead. ``packed`` holds the arguments already msgpack-encoded (the host encodes
        each argument once per call, however many plugins receive it). ``timeout``
        starts the call's deadline now rather than when ``reply`` waits. A frame over
        the cap raises LocalProtocolError and nothing is sent."""
        if not self.alive:
            return None
        call_id = self._next_id
        self._next_id += 1
        if packed is None:
            packed = {name: pack(value) for name, value in args.items()}
        frame = encode_call(call_id, hook, packed, side="host", max_frame_bytes=self._max_frame)
        pending = self._pending[call_id] = self._deadlines.pending(hook)
        if timeout is not None:
            pending.arm(timeout)
        self.calls += 1
        if len(self._pending) > 1:  # others in flight: coalesce this turn's sends
            self.channel.write_soon(frame)
        else:
            self.channel.write(frame)
        return call_id

    async def reply(
        self,
        call_id: int | None,
        hook: str,
        timeout: float,
    ) -> Result | Error | TimedOut | None:
        """The reply to call ``call_id`` (``send_call``): a Result or an Error; TimedOut
        if ``timeout`` seconds pass first (the worker is then killed); None if the
        worker died. A caller cancelled while it waits has the worker sent a Cancel."""
        if call_id is None:
            return None
        pending = self._pending.get(call_id)
        if pending is None:
            return None
        try:
            reply = await pending.wait(timeout)
            if reply is EXPIRED:  # (the worker was killed as it expired: _call_expired)
                return TimedOut(timeout)
            return reply
        except anyio.get_cancelled_exc_class():
            self.abandon(call_id)
            raise
        finally:
            self._pending.pop(call_id, None)

    def _call_expired(self, hook: str, timeout: float) -> None:
        """A call's deadline passed unanswered: the worker is killed then, whether or
        not its caller is waiting on the reply yet (an observe hook reads its plugins'
        replies in turn)."""
        self.kill("timeout", f"{hook} did not answer within {timeout:g} s")

    def abandon(self, call_id: int | None) -> None:
        """Give up on call ``call_id`` (``send_call``) without its reply: a worker that
        has yet to answer it is sent a Cancel, and a reply that still comes is dropped."""
        if call_id is None:
            return
        pending = self._pending.pop(call_id, None)
        if pending is None:
            return
        pending.disarm()
        if not pending.done and self.alive and not self.channel.broken:
            self._abandoned.add(call_id)
            self.send(encode(Cancel(id=call_id), side="host"))

    def send(self, frame: bytes) -> None:
        """Send a frame; it never waits (what the socket cannot take now is queued)."""
        self.channel.write(frame)

    # ---------------------------------------------------------------- tasks
    async def _read_channel(self) -> None:
        decoder = self._decoder

        def on_late() -> None:
            decoder.check_deadline(time.monotonic())

        try:
            await self.channel.run(
                self._guard(self._received), decoder.deadline, self._guard(on_late)
            )
        except anyio.ClosedResourceError:
            pass
        self._channel_done.set()
        self._mark_dead()

    def _received(self, data: bytes) -> None:
        now = time.monotonic()
        decoder = self._decoder
        decoder.feed(data, now)
        while (msg := decoder.next_message(now)) is not None:
            self._dispatch(msg)

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Run ``fn``; a protocol error kills the worker and ends the channel."""

        def guarded(*args: Any) -> None:
            if self.protocol_error is not None:
                return
            try:
                fn(*args)
            except ProtocolError as exc:
                self.protocol_error = exc
                self.kill("protocol", str(exc))
                self.channel.close()

        return guarded

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, (Result, Error)):
            if isinstance(msg, Error) and msg.id == LOAD_CALL_ID and self.handshake is None:
                self.load_error = msg
                self._settled.set()
                return
            pending = self._pending.get(msg.id)
            if pending is None:
                if msg.id in self._abandoned:
                    self._abandoned.discard(msg.id)
                    return
                raise ProtocolError(
                    f"a reply to call id {msg.id}, which is not in flight", side="worker"
                )
            if isinstance(msg, Error) and is_memory_error(msg.exc_type, msg.chain):
                self.memory_hint = f"{msg.exc_type}: {msg.message}"[:200]
            pending.resolve(msg)
            self.answered += 1
        elif isinstance(msg, Log):
            if self.handshake is None:
                if len(self._early_logs) < EARLY_LOG_LIMIT:
                    self._early_logs.append(msg)
                return
            self.logger.log(msg.level, "%s: %s", msg.logger, msg.message)
        elif isinstance(msg, Confined):
            if self.confined is not None or self.handshake is not None:
                raise ProtocolError(
                    "a second Confined"
                    if self.confined is not None
                    else "a Confined after the Handshake",
                    side="worker",
                )
            if msg.pid != self.spawned.pid:
                self._adopt_serving_process(msg.pid)
            self.confined = msg
            self._confined.set()
        elif isinstance(msg, Handshake):
            if self.handshake is not None:
                raise ProtocolError("a second Handshake", side="worker")
            if self.standby:
                raise ProtocolError(
                    "a Handshake from a standby worker before Resume", side="worker"
                )
            self._check_confinement_claimed(msg)
            self._check_claimed_hooks(msg.hooks)
            self.handshake = msg
            self.name_logger(msg.plugin)
            for early in self._early_logs:
                self.logger.log(early.level, "%s: %s", early.logger, early.message)
            self._early_logs.clear()
            self._settled.set()

    def _check_confinement_claimed(self, hello: Handshake) -> None:
        """The Handshake comes after the plugin's code ran; the Confined before it. The
        layers in force and the RSS the memory cap counts from are taken from the
        Confined, and a Handshake that says otherwise was rewritten."""
        confined = self.confined
        if confined is None:
            raise ProtocolError(
                "a Handshake without the Confined that comes before it", side="worker"
            )
        if hello.layers != confined.layers:
            changed = sorted(
                k
                for k in {*hello.layers, *confined.layers}
                if hello.layers.get(k) != confined.layers.get(k)
            )
            raise ProtocolError(
                f"the Handshake's sandbox layers differ from those reported "
                f"before the plugin's code ran: {changed}",
                side="worker",
            )
        if hello.pid != confined.pid:
            raise ProtocolError(
                f"the Handshake names pid {hello.pid}, not the "
                f"{confined.pid} reported before the plugin's code ran",
                side="worker",
            )
        if hello.baseline_rss_kb != confined.baseline_rss_kb:
            raise ProtocolError(
                f"the Handshake's baseline RSS ({hello.baseline_rss_kb} KiB) "
                f"differs from the {confined.baseline_rss_kb} KiB reported "
                f"before the plugin's code ran",
                side="worker",
            )

    def _check_claimed_hooks(self, hooks: dict[str, list[str]]) -> None:
        """The Handshake comes after the plugin's code ran, so its word on the hooks
        implemented is checked against what the host offered: each a hook of the
        host's, taking only (and each only once) arguments that hook has."""
        for hook, accepted in hooks.items():
            offered = self._offered.get(hook)
            if offered is None:
                raise ProtocolError(
                    f"the Handshake claims hook {hook!r}, which the host did not offer",
                    side="worker",
                )
            if len(set(accepted)) != len(accepted) or not offered.issuperset(accepted):
                raise ProtocolError(
                    f"the Handshake claims hook {hook!r} takes {accepted}, "
                    f"not a set of its arguments {sorted(offered)}",
                    side="worker",
                )

    def _adopt_serving_process(self, pid: int) -> None:
        """Watch and kill ``pid``, the process serving the plugin (pid 2 of a pid
        namespace, beneath the launched process and its init), as the worker reported it
        (Confined, before any of the plugin's code ran), once it is shown to be one:
        checked on a pidfd, which cannot change process while it is held."""
        pidfd = _linux.pidfd_open(pid)
        if not _linux.descends_from(pid, self.spawned.pid, generations=2):
            if pidfd is not None:
                os.close(pidfd)
            if pidfd is None and _linux.parent_of(pid) is None:
                # gone, and reaped by its init, before the host read its Confined (a
                # plugin that failed to load at once, on a loaded machine): nothing to
                # adopt, and no breach; what it sent after is read as it comes
                return
            raise ProtocolError(
                f"the worker names pid {pid}, which is neither the "
                f"worker ({self.spawned.pid}) nor beneath it",
                side="worker",
            )
        self.spawned.serving_pidfd = pidfd
        self.pid = pid

    async def _read_exit_report(self, fd: int) -> None:
        """The plugin's end as its pid namespace's init reports it, before init and the
        launched process have exited and been reaped (``protocol._exit_report``): the
        worker's exit, as far as the host is concerned. Nothing comes where there is no
        pid namespace; then the launcher's report of the exit is the one."""
        try:
            while not self._take_exit_report():
                await anyio.wait_readable(fd)
        except (anyio.ClosedResourceError, OSError):
            return

    def _take_exit_report(self) -> bool:
        """Read what the exit report pipe holds, without waiting; whether the reading is
        over (the report taken, or the pipe ended without one). ``death()`` looks too,
        as it starts: the report is usually there by then, while the task above waits
        its turn behind the handling of the worker's closed channel and streams."""
        fd = self.spawned.exit_report
        if fd is None:
            return True
        while len(self._exit_report) < EXIT_REPORT_SIZE:
            try:
                chunk = os.read(fd, EXIT_REPORT_SIZE - len(self._exit_report))
            except BlockingIOError:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                break
            self._exit_report += chunk
        # all there is to read: the pipe is closed now, which also ends the task that
        # waits on it (rather than its waking as init exits, during a restart)
        self.spawned.exit_report = None
        close_watched(fd)
        report = unpack_exit_report(self._exit_report)
        if report is not None:
            exit_code, sig, max_rss_kb, cpu_time = report
            self._ended.set(
                ExitInfo(exit_code=exit_code, signal=sig, max_rss_kb=max_rss_kb, cpu_time=cpu_time)
            )
            self._mark_dead()
        return True

    async def _read_output(self, fd: int, capture: OutputCapture) -> None:
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                capture.feed(data)
        except anyio.ClosedResourceError:
            pass
        finally:
            capture.close()
            self._outputs_open -= 1
            if self._outputs_open == 0:
                self._drained.set()

    async def _watch_usage(self, interval: float) -> None:
        """Sample the worker's RSS and CPU time; kill it past its caps.

        Memory use has no event to wait for, so this one watch samples (deaths are still
        noticed by events only). RSS: the RSS added since loading must stay within
        ``memory_mb``. CPU: a backstop for a plugin that ignores SIGXCPU; CPU burned
        with calls in flight and none answered must stay within ``cpu_seconds`` plus
        one second (the kernel's SIGXCPU comes first for any plugin that lets it).
        """
        await self._settled.wait()  # loaded (or failed to, or died: then the loop ends)
        # behind the task that waited on the same Handshake to make a call (a restart):
        # reading /proc here first would hold that call back by as long as the read
        await anyio.lowlevel.checkpoint()
        baseline = self.handshake.baseline_rss_kb if self.handshake else 0
        memory_mb, cpu_seconds = self.limits.memory_mb, self.limits.cpu_seconds
        cpu_mark: float | None = None
        answered = self.answered
        while self.alive:
            sample = _linux.usage(self.pid)
            if sample is None:
                return
            rss, cpu = sample
            self.peak_seen_kb = max(self.peak_seen_kb, rss)
            if memory_mb and rss - baseline > memory_mb * 1024:
                self.kill(
                    "memory",
                    f"its RSS of {rss // 1024} MB went over its cap of "
                    f"{memory_mb} MB above the {baseline // 1024} MB it "
                    f"started with",
                )
                return
            if not self._pending or self.answered != answered:
                cpu_mark, answered = (cpu if self._pending else None), self.answered
            elif cpu_mark is None:
                cpu_mark = cpu
            elif cpu_seconds and cpu - cpu_mark > cpu_seconds + 1.0:
                self.kill(
                    "cpu",
                    f"ignored SIGXCPU and used {cpu - cpu_mark:.1f} s of CPU "
                    f"in a call, over its {cpu_seconds:g} s budget",
                )
                return
            with anyio.move_on_after(interval):
                await self._dead.wait()

    async def _watch_exit(self) -> None:
        self._ended.set(await self.spawned.exit.wait())
        self._mark_dead()

    def _mark_dead(self) -> None:
        if self._dead.is_set():
            return
        if not self.channel.broken and self.protocol_error is None:
            # its end was heard (its exit status, or the host's own kill) before the
            # reader took all it had written: the rest is in the socket, unread. A reply
            # among it answers its call, which would otherwise fail with the death.
            unread = self.channel.unread()
            if unread:
                self._guard(self._received)(unread)
            if self._dead.is_set():  # (a protocol error in it ended the worker already)
                return
        self._alive = False
        self._dead.set()
        self._settled.set()
        self._confined.set()
        if not self.channel.broken:
            self.channel_closed_by_host = True
        self.channel.close()
        self._deadlines.stop()
        for pending in list(self._pending.values()):
            pending.resolve(None)


def _kill_descendants(pid: int) -> None:
    """SIGKILL every descendant of ``pid`` (they may have left its process group)."""
    try:
        import psutil

        children = psutil.Process(pid).children(recursive=True)
    except Exception:
        return
    for child in children:
        try:
            child.kill()
        except Exception:
            pass
