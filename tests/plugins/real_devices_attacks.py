"""Hostile plugins against the devices, the private /dev/shm and the interpreter a
plugin with processes may run (tests/scenarios/test_real_devices.py). Plain Python:
nothing here imports plugbox.

``DeviceAttacker.attack(what, params)`` runs ``do_<what>``; a refused call escapes as
its own exception (``PluginRaised``), an attack that got through returns what it did.
``Bystander.ping()`` must keep answering from its first worker.
"""

import errno
import multiprocessing
import os
import select
import stat
import subprocess
import sys
import tempfile

MB = 1 << 20
#: devices a process may open for writing by their modes (0666), beyond /dev/null and
#: /dev/zero: the entropy pool, a full disk, terminals, the kernel log
OTHER_DEVICES = ("/dev/urandom", "/dev/random", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/kmsg")


def _block():
    """Wait for ever, holding what was made (the host's kill ends it)."""
    while True:
        select.select([], [], [])


def _hoard(mb):
    """A pool worker's start: hold ``mb`` of memory, written."""
    global HELD
    HELD = bytearray(b"\xa5" * (mb * MB))


def _pid(_):
    return os.getpid()


class DeviceAttacker:
    name = "device-attacker"
    version = "1.0.0"

    def attack(self, what, params):
        return getattr(self, f"do_{what}")(**(params or {}))

    def do_ping(self):
        return os.getpid()

    def do_write(self, path):
        with open(path, "wb") as f:
            return f.write(b"planted by a plugin\n")

    def do_other_devices(self):
        """Open each device for writing: what each attempt came to."""
        seen = {}
        for path in OTHER_DEVICES:
            try:
                with open(path, "wb", buffering=0) as f:
                    f.write(b"x")
                seen[path] = "written"
            except OSError as exc:
                seen[path] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return seen

    def do_mknod(self, path):
        """A device node of its own (/dev/null's numbers) in a directory it may write."""
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return path

    def do_fill(self, path, limit_mb, block=False):
        """Write ``path`` 1 MB at a time, up to ``limit_mb``, and hold it (``block``)."""
        chunk = b"\x5a" * MB
        with open(path, "wb") as f:
            for _ in range(limit_mb):
                f.write(chunk)
                f.flush()
        if block:
            _block()
        return limit_mb

    def do_hoard_pool(self, mb):
        """A pool whose two workers each hold ``mb``, and the plugin waiting on it."""
        self.pool = multiprocessing.Pool(2, initializer=_hoard, initargs=(mb,))
        self.pool.map(_pid, range(2))
        _block()

    def do_run(self, argv):
        """Start ``argv`` as a process: its exit status and output."""
        done = subprocess.run(argv, capture_output=True, text=True)
        return {"status": done.returncode, "out": done.stdout, "err": done.stderr[-400:]}

    def do_exec_interpreter(self):
        """Become the interpreter (this process is replaced if it may)."""
        os.execv(sys.executable, [sys.executable, "-c", "print(6 * 7)"])

    def do_read(self, path):
        with open(path, "rb") as f:
            return len(f.read())

    def do_kill(self, pid, sig):
        os.kill(pid, sig)
        return "sent"

    def do_parent(self):
        return os.getppid()

    def do_leave_behind(self, marker):
        """Start a pool and leave files everywhere it may: they must all go with it."""
        self.pool = multiprocessing.Pool(2)
        self.pool.map(_pid, range(4))
        pids = [child.pid for child in multiprocessing.active_children()]
        self.lock = multiprocessing.Lock()
        from multiprocessing import shared_memory

        self.segment = shared_memory.SharedMemory(name=marker, create=True, size=MB)
        made = [self.segment.name]
        for where in (tempfile.gettempdir(), "/dev/shm", "/tmp", "/var/tmp"):
            try:
                with open(os.path.join(where, marker), "w") as f:
                    f.write("left behind")
                made.append(os.path.join(where, marker))
            except OSError:
                pass
        return {"made": made, "pool": sorted(set(pids))}


class Bystander:
    name = "bystander"
    version = "1.0.0"

    def ping(self):
        return os.getpid()
