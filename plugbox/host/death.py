"""A worker's end: which process serves the plugin, killing it and what it left,
how it ended (its init's exit report, or the launcher's reap), and the verdict.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence

import anyio
import anyio.lowlevel

from ..limits import Limits
from ..protocol import EXIT_REPORT_SIZE, ProtocolError, unpack_exit_report
from ..reports import Cause
from . import _linux
from .causes import Death, classify, fault_handled, native_memory_failure
from .exits import ExitInfo, ExitWatch
from .launchers import SpawnedWorker, close_watched
from .scratch import OwnedScratch
from .tasks import HostTasks

#: how long a worker that closed its channel may take to exit before it is killed.
CLOSED_CHANNEL_GRACE = 1.0
#: how long the host waits for the rest of a dead worker's stderr.
OUTPUT_DRAIN = 0.5


class DeathWatch:
    """One worker's processes: watched for their end, killed when the host says so,
    and judged once dead (``verdict``: the cause, its detail, and the facts)."""

    def __init__(
        self,
        spawned: SpawnedWorker,
        limits: Limits,
        *,
        on_end: Callable[[], None],
        written: Sequence[anyio.Event],
    ) -> None:
        self.spawned = spawned
        self.limits = limits
        #: the process serving the plugin: the launched one, until Confined names another
        self.pid = spawned.pid
        self.kill_reason: Cause | None = None
        self.kill_detail = ""
        #: the MemoryError a call raised, if one did: the likely cause of a death after
        self.memory_hint: str | None = None
        #: the RSS the memory cap counts from (the Handshake's)
        self.baseline_rss_kb = 0
        #: the highest RSS the usage watch saw: the peak where the exit's is unknown
        self.peak_seen_kb = 0
        #: the scratch directory made for the worker on disk, removed once it has died
        self.scratch: OwnedScratch | None = None
        #: whether the plugin may start processes: the memory watch then counts them all
        self.processes = False
        self.verdict: tuple[Cause, str, Death] | None = None
        self._verdict = anyio.Event()
        #: how the plugin's process ended: from its init's exit report, or the reap
        self.ended = ExitWatch()
        #: what of the exit report has come (``_take_exit_report``)
        self._exit_report = b""
        #: called as the end is known (the worker's ``_mark_dead``)
        self._on_end = on_end
        #: set once all the worker wrote has been read (its output, its channel)
        self._written = written
        #: the last lines of the worker's stderr (set by whoever launched it), read for
        #: what they say of its end: whether faulthandler ran, a library out of memory
        self.stderr_tail: Callable[[], Sequence[str]] | None = None

    def start(self, tg: HostTasks, dead: anyio.Event) -> None:
        """Watch for the end, and judge the worker once ``dead`` is set."""
        tg.start_soon(self._watch_exit)
        if self.spawned.exit_report is not None:
            tg.start_soon(self._read_exit_report, self.spawned.exit_report)
        tg.start_soon(self._judge, dead)

    def kill(self, reason: Cause | None, detail: str = "") -> None:
        """SIGKILL the worker and its process group; ``reason`` becomes the cause."""
        if self.kill_reason is None and reason is not None and self.ended.info is None:
            self.kill_reason, self.kill_detail = reason, detail
        if self.ended.info is not None:
            self._on_end()
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
        self._on_end()

    def confined(self, layers: Mapping[str, bool]) -> None:
        """The worker's sandbox is in force (Confined). Where it works in a private
        tmpfs it has removed the directory made for it: let go of that now, before any
        of the plugin's code runs, not after its death (the close frees the directory's
        inode: a fraction of a millisecond that the report of a death, and a restart,
        would wait on)."""
        if layers.get("scratch_tmpfs") and self.scratch is not None:
            self.scratch.remove()
            self.scratch = None

    def adopt(self, pid: int) -> None:
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

    async def death(self) -> Death:
        """Everything known about the worker's end (waits for the reap and stderr)."""
        if self.ended.info is None:
            self._take_exit_report()
        info = self.ended.info  # (what is here already is not waited for again)
        if info is None:
            if self.kill_reason is None:
                with anyio.move_on_after(CLOSED_CHANNEL_GRACE):
                    await self.ended.wait()
                # a process that has ended, whose status is slow to come (its init or
                # the zygote not yet scheduled, on a loaded machine), was not killed
                if self.ended.info is None and not _linux.has_ended(self._serving_pidfd()):
                    self.kill("protocol", "the worker closed its channel")
            info = await self.ended.wait()
        if not all(event.is_set() for event in self._written):
            with anyio.move_on_after(OUTPUT_DRAIN):
                for event in self._written:  # stderr, and log records sent before the end
                    await event.wait()
        tail = self.stderr_tail() if self.stderr_tail is not None else None
        return Death(
            kill_reason=self.kill_reason,
            kill_detail=self.kill_detail,
            exit_code=info.exit_code,
            signal=info.signal,
            peak_rss_kb=info.max_rss_kb or self.peak_seen_kb,
            cpu_time=info.cpu_time,
            memory_mb=self.limits.memory_mb,
            baseline_rss_kb=self.baseline_rss_kb,
            cpu_seconds=self.limits.cpu_seconds,
            memory_hint=self.memory_hint,
            lost=info.lost,
            stack_kb=self.limits.stack_kb,
            thread_stack_kb=self.limits.thread_stack_kb,
            # (read only where it can matter: a death by a signal)
            fault_handled=None if tail is None or info.signal is None else fault_handled(tail),
            native_memory=None if tail is None else native_memory_failure(tail),
        )

    async def wait_verdict(self) -> tuple[Cause, str, Death]:
        """(cause, detail, death) once the worker has died and been reaped."""
        if self.verdict is None:
            await self._verdict.wait()
        assert self.verdict is not None
        return self.verdict

    def _serving_pidfd(self) -> int | None:
        """The pidfd of the plugin's own process (pid 2 of its namespace, or the
        launched process)."""
        if self.pid != self.spawned.pid:
            return self.spawned.serving_pidfd
        return self.spawned.pidfd

    async def _judge(self, dead: anyio.Event) -> None:
        """When the worker dies: name the cause, then close the host's fds for it."""
        await dead.wait()
        with anyio.CancelScope(shield=True):
            death = await self.death()
            cause, detail = classify(death)
            self.verdict = (cause, detail, death)
            self._verdict.set()
            # the caller's report first; the fds and the scratch directory can wait a turn
            await anyio.lowlevel.checkpoint()
            self.spawned.close_fds()
            if self.scratch is not None:
                self.scratch.remove()

    async def _watch_exit(self) -> None:
        self.ended.set(await self.spawned.exit.wait())
        self._on_end()

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
            self.ended.set(
                ExitInfo(exit_code=exit_code, signal=sig, max_rss_kb=max_rss_kb, cpu_time=cpu_time)
            )
            self._on_end()
        return True


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
