"""A test plugin that misbehaves on request: ``process(input_data={"do": ...})``.

Each action is one way a plugin can go wrong (or right); the tests name the action and
assert the cause the host reports.
"""

import asyncio
import ctypes
import os
import signal
import stat
import struct
import sys
import time

#: this worker's identity: the pid a plugin sees is its pid namespace's (2), the same
#: in every worker, so "same worker" and "a fresh worker" are told by this token
BOOT = os.urandom(8).hex()
HOARD = []  # what "exhaust_then_raise" keeps


def _channel_fd():
    if not stat.S_ISSOCK(os.fstat(3).st_mode):
        raise RuntimeError("fd 3 is not the channel")
    return 3


class BehavePlugin:
    name = "behave"
    version = "2.1.0"

    def initialize(self, config):
        self.config = config
        if config.get("init") == "raise":
            raise RuntimeError("initialize refused: bad config")
        if config.get("init") == "sleep":
            time.sleep(3600)
        if config.get("init") == "segfault":
            ctypes.string_at(0)
        if config.get("name"):
            self.name = config["name"]

    def process(self, input_data):
        do = input_data.get("do", "echo") if isinstance(input_data, dict) else "echo"
        arg = input_data.get("arg") if isinstance(input_data, dict) else None
        if do == "echo":
            return input_data
        if do == "pid":
            return os.getpid()
        if do == "boot":
            return BOOT
        if do == "whoami":  # see tests/forking.py whoami()
            return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"
        if do == "raise":
            raise ValueError(f"bad input: {arg}")
        if do == "unserializable":
            return object()
        if do == "bomb":
            hoard = []
            while True:
                hoard.append(b"x" * (1 << 20))
        if do == "bomb_caught_exit":
            hoard = []
            try:
                while True:
                    hoard.append(b"x" * (1 << 20))
            except MemoryError:
                hoard.clear()
                os._exit(5)
        if do == "bomb_caught_raise":
            try:
                hoard = []
                while True:
                    hoard.append(b"x" * (1 << 20))
            except MemoryError:
                hoard = None
                raise RuntimeError("could not build the cache") from None
        if do == "exhaust_then_raise":
            # every byte of the address space taken and kept (in HOARD, past this
            # frame): from chunks of 1 MiB down to the smallest object of each size
            for size in [1 << 20, 1 << 16, 1 << 12, *range(1024, 1, -8)]:
                try:
                    while True:
                        HOARD.append(b"x" * size)
                except MemoryError:
                    pass
            raise RuntimeError("gave up with the address space full")
        if do == "grow_rss":
            hoard = []
            for _ in range(int(arg)):
                hoard.append(b"x" * (1 << 20))
            time.sleep(3600)
        if do == "huge_alloc":
            return len(bytearray(1 << 40))
        if do == "spin":
            while True:
                pass
        if do == "spin_ignoring_sigxcpu":
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            while True:
                pass
        if do == "sleep":
            time.sleep(3600)
        if do == "segfault":
            ctypes.string_at(0)
        if do == "abort":
            os.abort()
        if do == "exit":
            os._exit(int(arg or 3))
        if do == "sys_exit":
            sys.exit(4)
        if do == "kill_self":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        if do == "garbage":
            os.write(_channel_fd(), b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
            time.sleep(3600)
        if do == "oversize":
            os.write(_channel_fd(), struct.pack(">I", 1 << 30) + b"\x00" * 100)
            time.sleep(3600)
        if do == "unknown_id":
            # a well-formed Result (tag 3) for call id 999, which was never sent
            os.write(_channel_fd(), b"\x00\x00\x00\x07\x94\x03\xcd\x03\xe7\xc0\x80")
            time.sleep(3600)
        if do == "close_channel":
            os.close(_channel_fd())
            time.sleep(3600)
        if do == "close_channel_and_return":
            os.close(_channel_fd())
            return "nobody hears this"
        if do == "print":
            print(arg)
            print(f"to stderr: {arg}", file=sys.stderr)
            return "printed"
        if do == "stderr_then_exit":
            print(arg, file=sys.stderr, flush=True)
            os._exit(9)
        if do == "flood":
            for i in range(int(arg or 100_000)):
                print(f"flood line {i}")
            return "flooded"
        if do == "info":
            import resource

            return {
                "uid": os.getuid(),
                "euid": os.geteuid(),
                "pid": os.getpid(),
                "sid": os.getsid(0),
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "fds": _fds(),
                "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
                "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
                "fsize": list(resource.getrlimit(resource.RLIMIT_FSIZE)),
                "as": list(resource.getrlimit(resource.RLIMIT_AS)),
                "cpu": list(resource.getrlimit(resource.RLIMIT_CPU)),
                "stack": list(resource.getrlimit(resource.RLIMIT_STACK)),
                "pdeathsig": _pdeathsig(),
            }
        if do == "threads":
            import threading

            threads = [threading.Thread(target=time.sleep, args=(0,)) for _ in range(int(arg))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return len(threads)
        if do == "cwd":
            return os.getcwd()
        if do == "await_cancel":
            raise LookupError("await_cancel is an async action: use AsyncBehave")
        if do == "fork_child_sleep":
            pid = os.fork()
            if pid == 0:
                time.sleep(3600)
                os._exit(0)
            return pid
        if do == "double_fork_daemon":
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(w, str(os.getpid()).encode())
                    time.sleep(3600)
                os._exit(0)
            os.waitpid(pid, 0)
            return int(os.read(r, 64))
        raise LookupError(f"unknown action {do!r}")


def _fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return out


def _pdeathsig():
    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(0)
    libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    return sig.value


class AsyncBehave:
    """Async hooks: many calls in flight on one worker."""

    name = "async-behave"
    version = "1.0"

    cancelled = 0

    async def process(self, input_data):
        if input_data.get("do") == "cancelled_count":
            return AsyncBehave.cancelled
        if input_data.get("do") == "wait_forever":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                AsyncBehave.cancelled += 1
                raise
        await asyncio.sleep(input_data.get("delay", 0))
        if input_data.get("do") == "raise":
            raise KeyError(input_data.get("arg"))
        return input_data["value"]
