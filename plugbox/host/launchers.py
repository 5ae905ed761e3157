"""Starting workers: from a zygote (default) or as fresh interpreters.

A launcher hands back a ``SpawnedWorker``: the host's end of the channel, the read
ends of the worker's stdout and stderr pipes, its pid (and pidfd where the kernel has
them), and an ``ExitWatch`` the launcher fills when the worker is reaped.

``ZygoteLauncher`` keeps one pristine interpreter per host that has imported only the
worker and msgpack, and forks workers from it in about a millisecond; its workers are
not the host's children, so their exit status comes back from the zygote.
``SubprocessLauncher`` starts ``python -m plugbox.worker`` for each worker (slower;
the place to wrap workers in an outer sandbox command via ``command_prefix``).
"""

from __future__ import annotations

import itertools
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ..protocol import (
    ZYGOTE_TO_HOST,
    Exited,
    FrameDecoder,
    ProtocolError,
    Spawn,
    Spawned,
    encode,
)
from . import _linux
from .exits import ExitInfo, ExitWatch
from .tasks import HostTasks

_PLUGBOX_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _interpreter_command(module: str, fd: int, python: str | None) -> list[str]:
    """``python -I -c ...`` running ``module``'s main with the host's import path.

    Isolated mode keeps the host's environment (PYTHON* variables, the user site) out;
    the import path is handed over explicitly so plugins installed beside the host
    import in the worker.
    """
    paths = [_PLUGBOX_ROOT, *(p for p in sys.path if p and p != _PLUGBOX_ROOT)]
    boot = f"import sys; sys.path[:0] = {paths!r}; from {module} import main; main()"
    return [
        python or sys.executable,
        "-I",
        "-c",
        boot,
        "--fd",
        str(fd),
        "--parent",
        str(os.getpid()),
    ]


def close_watched(fd: int) -> None:
    """Wake tasks waiting on ``fd``, then close it."""
    try:
        anyio.notify_closing(fd)
    except Exception:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def _clean_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",
    }


@dataclass
class SpawnedWorker:
    """A started worker as the host holds it."""

    pid: int
    pidfd: int | None
    channel: socket.socket
    stdout: int
    stderr: int
    exit: ExitWatch = field(default_factory=ExitWatch)
    #: a pidfd of the process serving the plugin, where it is not ``pid`` (pid namespace)
    serving_pidfd: int | None = None
    #: the read end of the pipe the worker's init reports the plugin's end on
    #: (``plugbox.protocol._exit_report``), where the launcher made one
    exit_report: int | None = None

    def close_fds(self) -> None:
        """Close the host's fds for this worker, waking any task waiting on them
        (call from the event loop's thread; safe to call twice)."""
        if self.channel.fileno() >= 0:
            anyio.notify_closing(self.channel)
            self.channel.close()
        for name in ("stdout", "stderr", "pidfd", "serving_pidfd", "exit_report"):
            fd = getattr(self, name)
            if fd is not None and fd >= 0:
                setattr(self, name, -1 if name in ("stdout", "stderr") else None)
                close_watched(fd)


def _make_worker_fds() -> tuple[socket.socket, socket.socket, tuple[int, int], tuple[int, int]]:
    host_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    host_end.setblocking(False)
    out = os.pipe()
    err = os.pipe()
    for fd in (out[0], err[0]):
        os.set_blocking(fd, False)
    return host_end, worker_end, out, err


class Launcher:
    """Interface of a launcher."""

    name = "?"

    async def spawn(self, tg: HostTasks) -> SpawnedWorker:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop what the launcher runs (workers should be gone already)."""


class SubprocessLauncher(Launcher):
    """One fresh ``python -m plugbox.worker`` per worker."""

    name = "subprocess"

    def __init__(self, python: str | None = None, command_prefix: Sequence[str] = ()) -> None:
        self.python = python
        self.command_prefix = list(command_prefix)

    async def spawn(self, tg: HostTasks) -> SpawnedWorker:
        host_end, worker_end, out, err = _make_worker_fds()
        fd = worker_end.fileno()
        cmd = self.command_prefix + _interpreter_command("plugbox.worker.__main__", fd, self.python)
        # the child's ru_maxrss starts at this process's peak: the kernel records the
        # high-water mark of the memory it leaves at exec (fork and vfork alike), so a
        # peak at or under it says nothing about the worker
        host_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out[1],
                stderr=err[1],
                pass_fds=(fd,),
                start_new_session=True,
                env=_clean_env(),
            )
        except BaseException:
            host_end.close()
            for f in (*out, *err):
                os.close(f)
            raise
        finally:
            worker_end.close()
            os.close(out[1])
            os.close(err[1])
        spawned = SpawnedWorker(
            pid=proc.pid,
            pidfd=_linux.pidfd_open(proc.pid),
            channel=host_end,
            stdout=out[0],
            stderr=err[0],
        )
        tg.start_soon(self._reap, proc, spawned, host_peak_kb)
        return spawned

    async def _reap(
        self, proc: subprocess.Popen[bytes], spawned: SpawnedWorker, host_peak_kb: int
    ) -> None:
        """Wait for the process to end (pidfd readable, else a thread) and reap it."""
        with anyio.CancelScope(shield=True):
            pidfd = spawned.pidfd
            if pidfd is not None:
                try:
                    await anyio.wait_readable(pidfd)
                except anyio.ClosedResourceError:
                    pass
                _pid, status, rusage = os.wait4(proc.pid, 0)
            else:
                _pid, status, rusage = await anyio.to_thread.run_sync(os.wait4, proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        spawned.exit.set(
            ExitInfo(
                exit_code=code if code >= 0 else None,
                signal=-code if code < 0 else None,
                max_rss_kb=rusage.ru_maxrss if rusage.ru_maxrss > host_peak_kb else 0,
                cpu_time=rusage.ru_utime + rusage.ru_stime,
            )
        )


class ZygoteLauncher(Launcher):
    """Forks workers from one pristine interpreter, restarted if it dies."""

    name = "zygote"

    def __init__(self, python: str | None = None) -> None:
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._requests = itertools.count(1)
        self._spawns: dict[int, tuple[anyio.Event, list[object]]] = {}
        self._watches: dict[int, ExitWatch] = {}
        self._lock = anyio.Lock()
        self._dead = anyio.Event()

    @property
    def pid(self) -> int | None:
        """The zygote's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    async def _ensure(self, tg: HostTasks) -> socket.socket:
        async with self._lock:
            if self._ctl is not None and not self._dead.is_set():
                return self._ctl
            await self._stop()
            host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            host_end.setblocking(False)
            fd = zygote_end.fileno()
            try:
                self._proc = subprocess.Popen(
                    _interpreter_command("plugbox.worker.zygote", fd, self.python),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    pass_fds=(fd,),
                    start_new_session=True,
                    env=_clean_env(),
                )
            except BaseException:
                host_end.close()
                raise
            finally:
                zygote_end.close()
            self._ctl = host_end
            self._dead = anyio.Event()
            tg.start_soon(self._read, host_end, self._dead)
            return host_end

    async def spawn(self, tg: HostTasks) -> SpawnedWorker:
        ctl = await self._ensure(tg)
        host_end, worker_end, out, err = _make_worker_fds()
        report_r, report_w = os.pipe()
        os.set_blocking(report_r, False)

        def close_host_ends() -> None:  # when no worker comes of them
            host_end.close()
            for fd in (out[0], err[0], report_r):
                os.close(fd)

        request = next(self._requests)
        done = anyio.Event()
        box: list[object] = []
        self._spawns[request] = (done, box)
        try:
            frame = encode(Spawn(request=request), side="host")
            fds = [worker_end.fileno(), out[1], err[1], report_w]
            while True:
                try:
                    socket.send_fds(ctl, [frame], fds)
                    break
                except BlockingIOError:
                    await anyio.wait_writable(ctl)
        except BaseException:
            self._spawns.pop(request, None)
            close_host_ends()
            raise
        finally:
            worker_end.close()
            for fd in (out[1], err[1], report_w):
                os.close(fd)
        try:
            await done.wait()
        except BaseException:
            close_host_ends()
            raise
        finally:
            self._spawns.pop(request, None)
        reply = box[0] if box else None
        if not isinstance(reply, tuple):
            close_host_ends()
            raise OSError(f"the zygote could not fork a worker: {reply or 'it died'}")
        pid, pidfd = reply
        spawned = SpawnedWorker(
            pid=pid,
            pidfd=pidfd,
            channel=host_end,
            stdout=out[0],
            stderr=err[0],
            exit_report=report_r,
        )
        early = self._watches.pop(pid, None)
        self._watches[pid] = spawned.exit
        if early is not None and early.info is not None:
            spawned.exit.set(early.info)
            self._watches.pop(pid, None)
        return spawned

    async def _read(self, ctl: socket.socket, dead: anyio.Event) -> None:
        decoder = FrameDecoder(peer="zygote", accept=ZYGOTE_TO_HOST)
        try:
            while True:
                await anyio.wait_readable(ctl)
                try:
                    data, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 16, 1)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                decoder.feed(data, time.monotonic())
                msg = decoder.next_message()
                self._dispatch(msg, fds)
        except (ProtocolError, anyio.ClosedResourceError):
            pass
        finally:
            dead.set()
            self._lost()

    def _dispatch(self, msg: object, fds: list[int]) -> None:
        if isinstance(msg, Spawned):
            entry = self._spawns.get(msg.request)
            pidfd = fds[0] if fds else None
            if entry is None:
                if pidfd is not None:
                    os.close(pidfd)
                return
            done, box = entry
            box.append((msg.pid, pidfd) if msg.pid else msg.error)
            done.set()
            return
        for fd in fds:
            os.close(fd)
        if isinstance(msg, Exited):
            info = ExitInfo(
                exit_code=msg.exit_code,
                signal=msg.signal,
                max_rss_kb=msg.max_rss_kb,
                cpu_time=msg.user_cpu + msg.system_cpu,
            )
            watch = self._watches.pop(msg.pid, None)
            if watch is None:  # reaped before its Spawned was handled
                watch = ExitWatch()
                self._watches[msg.pid] = watch
            watch.set(info)

    def _lost(self) -> None:
        """The zygote is gone: its workers died with it (parent-death signal)."""
        for done, box in self._spawns.values():
            box.append("the zygote died")
            done.set()
        for watch in self._watches.values():
            watch.set(ExitInfo(lost=True))
        self._watches.clear()  # its socket and process are cleaned up by the next _ensure

    async def _stop(self) -> None:
        proc, ctl = self._proc, self._ctl
        self._proc, self._ctl = None, None
        if ctl is not None:
            anyio.notify_closing(ctl)
            ctl.close()
        if proc is None:
            return
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(5):
                await anyio.to_thread.run_sync(proc.wait)
            if proc.poll() is None:
                proc.kill()
                await anyio.to_thread.run_sync(proc.wait)

    async def aclose(self) -> None:
        async with self._lock:
            await self._stop()
