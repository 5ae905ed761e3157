"""Hostile plugins against the memory cap and the scratch directory
(tests/scenarios/test_hostile_memory.py). Plain Python: nothing here imports plugbox.

``MemoryAttacker.attack(what, **params)`` runs ``do_<what>``. The attacks hold memory
where an address-space cap does not see it (memfds written but never mapped, child
processes), fill the scratch directory, or leave it in modes its owner cannot clean.
``Bystander.ping()`` must keep answering from its first worker.
"""

import ctypes
import os
import select
import signal
import stat

MB = 1 << 20


def _block():
    """Wait for ever, holding what was made (the host's kill ends it)."""
    while True:
        select.select([], [], [])


class MemoryAttacker:
    name = "memory-attacker"
    version = "1.0.0"

    def attack(self, what, params):
        return getattr(self, f"do_{what}")(**(params or {}))

    def do_pid(self):
        return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"

    def do_where(self):
        """The scratch directory and what holds it."""
        st = os.statvfs(os.getcwd())
        return {
            "cwd": os.getcwd(),
            "home": os.environ.get("HOME"),
            "tmpdir": os.environ.get("TMPDIR"),
            "size_mb": st.f_blocks * st.f_frsize // MB,
        }

    def do_memfds(self, count=16, each_mb=64, block=True):
        """``count`` memfds of ``each_mb`` each, written (not mapped) 1 MB at a time:
        1 GB in the default, with no address space used for it."""
        chunk = b"\xa5" * MB
        self.held = []
        for i in range(count):
            fd = os.memfd_create(f"hoard-{i}")
            self.held.append(fd)
            for _ in range(each_mb):
                os.write(fd, chunk)
        if block:
            _block()
        return {"ok": True, "memfds": len(self.held), "mb": count * each_mb}

    def do_undumpable_memfds(self, count=16, each_mb=64):
        """Close this process's /proc entries to its own uid (non-dumpable), then hoard
        memfds: a host of the same uid could no longer see them."""
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0)")
        return self.do_memfds(count, each_mb)

    def do_thread_memfds(self, count=16, each_mb=64):
        """Hoard memfds in a thread with an fd table of its own (unshare(CLONE_FILES):
        its fds are not in /proc/<pid>/fd), while the calling thread waits."""
        import threading

        libc = ctypes.CDLL(None, use_errno=True)
        failed = []

        def hoard():
            if libc.unshare(0x400) != 0:  # CLONE_FILES
                failed.append(ctypes.get_errno())
                return
            self.do_memfds(count, each_mb, block=True)

        thread = threading.Thread(target=hoard, daemon=True)
        thread.start()
        thread.join()
        raise OSError(failed[0] if failed else 0, "unshare(CLONE_FILES)")

    def do_children(self, count=40, each_mb=8):
        """Fork ``count`` children that each touch ``each_mb`` of fresh memory and wait;
        each stays under its own address-space cap, their sum does not."""
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    held = bytearray(each_mb * MB)
                    for at in range(0, len(held), 4096):
                        held[at] = 1
                    while True:
                        signal.pause()
                finally:
                    os._exit(0)
        _block()

    def do_fill_scratch(self, chunk_mb=1, limit_mb=4096):
        """Write files into the scratch directory until a write fails (the error goes
        to the host as the plugin's own) or ``limit_mb`` is written."""
        chunk = b"\x5a" * (chunk_mb * MB)
        written = 0
        index = 0
        while written < limit_mb * MB:
            with open(f"fill-{index}.bin", "wb") as f:
                for _ in range(16):  # 16 MB a file: under file_size_mb
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
            index += 1
        return {"ok": True, "written_mb": written // MB}

    def do_fill_and_block(self, mb=32):
        """Write ``mb`` into the scratch directory, then wait: the host must count it."""
        chunk = b"\x5a" * MB
        for index in range(0, mb, 16):  # 16 MB a file: under file_size_mb
            with open(f"held-{index}.bin", "wb") as f:
                for _ in range(min(16, mb - index)):
                    f.write(chunk)
        _block()

    def do_write_files(self, count=4):
        """A few files in the scratch directory; its path."""
        for i in range(count):
            with open(f"file-{i}.txt", "w") as f:
                f.write("x" * 1000)
        return os.getcwd()

    def do_lock_up(self):
        """Leave the scratch directory in modes its owner cannot clean: a subdirectory
        without write permission holding files, one without any permission, a file
        without permission, and a symlink out (which must not be followed)."""
        os.makedirs("locked/deeper", exist_ok=True)
        for i in range(3):
            with open(f"locked/deeper/f{i}", "w") as f:
                f.write("x")
        os.makedirs("sealed/inner", exist_ok=True)
        with open("sealed/inner/g", "w") as f:
            f.write("y")
        with open("bare", "w") as f:
            f.write("z")
        os.symlink("/etc", "out")
        os.chmod("bare", 0)
        os.chmod("locked/deeper", stat.S_IRUSR | stat.S_IXUSR)
        os.chmod("locked", stat.S_IRUSR | stat.S_IXUSR)
        os.chmod("sealed/inner", 0)
        os.chmod("sealed", 0)
        return os.getcwd()


class Bystander:
    name = "bystander"
    version = "1.0.0"

    def ping(self):
        return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"
