"""The zygote: a pristine interpreter that forks workers on request.

The host starts it once (``python -m plugbox.worker.zygote --fd N``) over a
SOCK_SEQPACKET socket. For each Spawn packet, carrying the worker's channel, stdout and
stderr fds as SCM_RIGHTS, it forks a worker and answers Spawned (with a pidfd beside
it where the kernel has pidfds). It reaps its children on SIGCHLD and reports each
worker's exit status and rusage as Exited. It is a child subreaper: descendants a
worker leaves behind reparent to it and are killed, and a worker's Exited waits (up to
``STRAY_GRACE`` seconds) until they are reaped too, so that when the host hears of an
exit nothing of the worker is left. It dies with the host.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

from ..protocol import (
    HOST_TO_ZYGOTE,
    Exited,
    FrameDecoder,
    ProtocolError,
    Spawn,
    Spawned,
    encode,
)
from . import _linux, lean
from .sandbox import process as confine

#: the channel, stdout, stderr, and the exit report pipe (``protocol._exit_report``)
FDS_PER_SPAWN = 4
#: how long an Exited may wait for the strays of its worker to be reaped
STRAY_GRACE = 1.0


def _status(pid: int, status: int, rusage: object) -> Exited:
    code = os.waitstatus_to_exitcode(status)
    return Exited(
        pid=pid,
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        max_rss_kb=int(getattr(rusage, "ru_maxrss", 0)),
        user_cpu=float(getattr(rusage, "ru_utime", 0.0)),
        system_cpu=float(getattr(rusage, "ru_stime", 0.0)),
    )


class Zygote:
    """The fork loop: packets in, workers out, exit statuses back."""

    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.workers: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.held: list[bytes] = []  # Exited frames waiting for strays to be reaped
        self.held_until = 0.0

    def send(self, frame: bytes, fds: list[int] | None = None) -> None:
        try:
            if fds:
                socket.send_fds(self.ctl, [frame], fds)
            else:
                self.ctl.send(frame)
        except OSError:
            pass  # the host has gone; the loop sees the closed socket and shuts down

    def loop(self) -> None:
        while True:
            timeout = max(0.0, self.held_until - time.monotonic()) if self.held else None
            try:
                ready, _, _ = select.select([self.ctl.fileno(), self.wake_r], [], [], timeout)
            except InterruptedError:
                continue
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if self.ctl.fileno() in ready and not self.receive():
                return

    def receive(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, 1 << 16, FDS_PER_SPAWN)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        decoder = FrameDecoder(peer="host", accept=HOST_TO_ZYGOTE)
        decoder.feed(data, time.monotonic())
        try:
            msg = decoder.next_message()
        except ProtocolError as exc:
            print(f"plugbox zygote: {exc}", file=sys.stderr)
            msg = None
        if not isinstance(msg, Spawn) or len(fds) != FDS_PER_SPAWN:
            for fd in fds:
                os.close(fd)
            return True
        self.spawn(msg, fds)
        return True

    def spawn(self, msg: Spawn, fds: list[int]) -> None:
        channel, out, err, exit_report = fds
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send(encode(Spawned(request=msg.request, pid=0, error=str(exc)), side="zygote"))
            return
        if pid == 0:
            self.become_worker(channel, out, err, exit_report)
        for fd in fds:
            os.close(fd)
        self.workers.add(pid)
        pidfd = _linux.pidfd_open(pid)
        frame = encode(Spawned(request=msg.request, pid=pid), side="zygote")
        try:
            self.send(frame, [pidfd] if pidfd is not None else None)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def become_worker(self, channel: int, out: int, err: int, exit_report: int) -> None:
        parent = os.getppid()
        try:
            signal.set_wakeup_fd(-1)
            _linux.set_disposition(signal.SIGCHLD, signal.SIG_DFL)
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.ctl.close()
        except BaseException:
            os._exit(70)
        from . import bootstrap  # imported by main(), before any fork

        bootstrap.run(channel, parent, out, err, exit_report)

    def reap(self) -> None:
        reaped_worker = False
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.workers:
                self.workers.discard(pid)
                reaped_worker = True
                if not self.held:
                    self.held_until = time.monotonic() + STRAY_GRACE
                try:
                    self.held.append(encode(_status(pid, status, rusage), side="zygote"))
                except OSError:
                    pass
        if self.held:
            # a stray may still be dying: its reap wakes us again
            strays = self.kill_strays() if reaped_worker else self.strays()
            if not strays or time.monotonic() >= self.held_until:
                for frame in self.held:
                    self.send(frame)
                self.held.clear()

    def strays(self) -> list[int]:
        """Children that are not workers: descendants a worker left behind."""
        return [pid for pid in _linux.own_children() if pid not in self.workers]

    def kill_strays(self) -> list[int]:
        """Kill descendants that outlived their worker and were reparented here."""
        strays = self.strays()
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return strays

    def shutdown(self) -> None:
        for pid in list(self.workers) + _linux.own_children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.wait4(-1, 0)
            except ChildProcessError:
                break
            if not _linux.own_children():
                try:
                    while os.wait4(-1, os.WNOHANG)[0]:
                        pass
                except ChildProcessError:
                    pass
                break


def main() -> None:
    """Entry point: ``python -m plugbox.worker.zygote --fd N --parent PID``."""
    args = sys.argv[1:]
    fd = int(args[args.index("--fd") + 1])
    parent = int(args[args.index("--parent") + 1]) if "--parent" in args else os.getppid()
    _linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    _linux.set_child_subreaper()
    _linux.set_dumpable(False)  # workers of the same uid cannot read or trace it
    ctl = socket.socket(fileno=fd)
    ctl.setblocking(False)
    zygote = Zygote(ctl)
    lean.import_asyncio()  # without ssl: see worker.lean
    from . import bootstrap  # imported now, so forks start warm

    bootstrap.prepare()  # what every worker would otherwise redo after its fork
    import gc

    confine.remember_packages()  # everything is imported now

    gc.collect()
    gc.freeze()  # what the zygote holds stays out of its workers' collections: fewer
    #              copy-on-write faults after each fork
    try:
        zygote.loop()
    finally:
        zygote.shutdown()


if __name__ == "__main__":
    main()
