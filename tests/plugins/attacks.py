"""Hostile plugins for the attack suite (tests/scenarios/test_attacks.py). Plain Python: nothing
here imports plugbox, as a real attacker's plugin would not.

``AttackPlugin.attack(what, target)`` runs the attack ``what`` with the parameters in
``target`` (a dict). Each attack lets the exception of the denied system call escape
unchanged (so the host reports it as the plugin's own error: ``PluginRaised`` with the
exception's type and ``[Errno N] ...`` message), or dies of what it provoked. An attack
that got through returns ``{"ok": True, ...}`` saying what it achieved, which the tests
treat as a failure of the sandbox. ``config`` (from ``host.add``) names the targets the
test gave, such as ``host`` (the host's pid), ``pgid`` (its process group) or ``sibling``
(the pid of another plugin's worker); a target names them as ``"$host"`` and so on.

``HealthyPlugin.ping()`` is the bystander that must keep answering after every attack.
"""

import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import resource
import signal
import socket
import threading
import time

F_SETOWN = 8
F_SETSIG = 10
PTRACE_ATTACH = 16
PTRACE_DETACH = 17
#: fcntl's syscall number (x86_64, aarch64): the wide-command attack calls it directly,
#: since Python's fcntl module refuses a command above 32 bits.
SYS_FCNTL = {"x86_64": 72, "aarch64": 25}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ptrace.restype = ctypes.c_long
_libc.process_vm_readv.restype = ctypes.c_ssize_t


def _check(rc, what):
    """Raise the OSError (PermissionError etc.) a failed libc call left in errno."""
    if rc == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class AttackPlugin:
    name = "attacker"
    version = "6.6.6"

    def initialize(self, config):
        self.config = dict(config)

    def attack(self, what, target):
        """Run ``do_<what>``; a string ``"$name"`` in ``target`` stands for
        ``config["name"]`` (the host's pid is ``"$host"``)."""
        params = {
            key: self.config[value[1:]]
            if isinstance(value, str) and value.startswith("$")
            else value
            for key, value in (target or {}).items()
        }
        return getattr(self, f"do_{what}")(**params)

    # -- the host, its process group, everyone -----------------------------------------
    def do_pid(self):  # tests/forking.py whoami(): pid 2 to itself in a pid namespace
        return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"

    def do_list_processes(self):
        """Enumerate the machine's processes through /proc."""
        return {"ok": True, "pids": [n for n in os.listdir("/proc") if n.isdigit()]}

    def do_read_cmdline(self, pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return {"ok": True, "cmdline": f.read().decode(errors="replace")}

    def do_read_own_status(self):
        with open("/proc/self/status") as f:
            return {"ok": True, "has_pid": any(line.startswith("Pid:") for line in f)}

    def do_kill(self, pid, sig=int(signal.SIGKILL)):
        os.kill(pid, sig)
        return {"ok": True, "signalled": pid}

    def do_killpg(self, pgid):
        os.killpg(pgid, signal.SIGKILL)
        return {"ok": True, "signalled": -pgid}

    def do_setown(self, pid, wide=False):
        """Make a pipe deliver SIGIO to ``pid``: F_SETOWN on its read end, O_ASYNC,
        then a write. ``wide``: the command with bit 32 set, through the raw syscall (the
        kernel truncates fcntl's command to 32 bits)."""
        r, w = os.pipe()
        try:
            if wide:
                nr = SYS_FCNTL[platform.machine()]
                _check(
                    _libc.syscall(
                        ctypes.c_long(nr),
                        ctypes.c_int(r),
                        ctypes.c_ulong(F_SETOWN | (1 << 32)),
                        ctypes.c_long(pid),
                    ),
                    "fcntl(F_SETOWN | 1 << 32)",
                )
            else:
                fcntl.fcntl(r, F_SETOWN, pid)
            owner = fcntl.fcntl(r, fcntl.F_GETOWN)
            fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
            os.write(w, b"!")  # SIGIO (default action: terminate) to the owner
            return {"ok": True, "owner": owner}
        finally:
            os.close(r)
            os.close(w)

    def do_ptrace(self, pid):
        _check(
            _libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(pid), None, None),
            "ptrace(PTRACE_ATTACH)",
        )
        # attached: let it go again at once (the test fails on the return value)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0x40000000)  # __WALL
        _libc.ptrace(ctypes.c_long(PTRACE_DETACH), ctypes.c_long(pid), None, None)
        return {"ok": True, "attached": pid}

    def do_vm_read(self, pid, address, length):
        buf = ctypes.create_string_buffer(length)
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), length)
        remote = _Iovec(ctypes.c_void_p(address), length)
        n = _check(
            _libc.process_vm_readv(
                ctypes.c_int(pid),
                ctypes.byref(local),
                ctypes.c_ulong(1),
                ctypes.byref(remote),
                ctypes.c_ulong(1),
                ctypes.c_ulong(0),
            ),
            "process_vm_readv",
        )
        return {"ok": True, "read": buf.raw[:n]}

    def do_proc_mem(self, pid, address, length, write=False):
        with open(f"/proc/{pid}/mem", "r+b" if write else "rb", buffering=0) as mem:
            mem.seek(address)
            if write:
                return {"ok": True, "wrote": mem.write(b"\0" * length)}
            return {"ok": True, "read": mem.read(length)}

    def do_environ(self, pid):
        with open(f"/proc/{pid}/environ", "rb") as f:
            return {"ok": True, "environ": f.read()}

    def do_prlimit(self, pid):
        """Set another process's RLIMIT_CORE (to its present value: harmless if it
        worked, and proof that it did)."""
        current = resource.prlimit(pid, resource.RLIMIT_CORE)
        resource.prlimit(pid, resource.RLIMIT_CORE, current)
        return {"ok": True, "limits": list(current)}

    # -- the network and other processes' sockets ---------------------------------------
    def do_tcp(self, port):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.sendall(b"leak")
            return {"ok": True, "connected": port}

    def do_udp(self, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            sent = s.sendto(b"leak", ("127.0.0.1", port))
            return {"ok": True, "sent": sent}

    def do_unix(self, address):
        """Connect to a unix socket: a path, or an abstract name given as bytes
        starting with NUL."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(address)
            s.sendall(b"leak")
            return {"ok": True, "connected": True}

    def do_unix_dgram(self, address):
        """Send a datagram to a unix datagram socket (a path or an abstract name)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            return {"ok": True, "sent": s.sendto(b"leak", address)}

    # -- files -----------------------------------------------------------------------------
    def do_write(self, path):
        with open(path, "w") as f:
            f.write("pwned")
        return {"ok": True, "wrote": path}

    def do_symlink_write(self, outside):
        """Plant a symlink in the scratch directory (the cwd) to a directory outside
        it, then write through it."""
        os.symlink(outside, "escape")
        return self.do_write(os.path.join("escape", "pwned.txt"))

    def do_scratch_write(self):
        with open("mine.txt", "w") as f:
            f.write("allowed")
        return {"ok": True, "cwd": os.getcwd()}

    # -- processes and threads --------------------------------------------------------------
    def do_fork_bomb(self, limit=64):
        """fork in a loop; bounded (children sleep, they do not fork on), so a sandbox
        that let it through leaves a test failure rather than a dead machine."""
        children = []
        for n in range(limit):
            try:
                pid = os.fork()
            except OSError as exc:
                raise type(exc)(exc.errno, f"fork #{n + 1} refused: {exc.strerror}") from None
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
        return {"ok": True, "forked": len(children)}

    def do_thread_bomb(self, count=5000):
        """Start ``count`` threads that never end; what stops them ends the call."""
        park = threading.Event()
        for n in range(count):
            try:
                threading.Thread(target=park.wait, daemon=True).start()
            except (RuntimeError, MemoryError) as exc:
                raise type(exc)(f"thread #{n + 1}: {exc}") from None
        return {"ok": True, "started": count}

    def do_daemon(self):
        """Double fork and setsid; the grandchild (a daemon in its own session, orphaned
        from the worker) reports its pid and lives on."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                if os.fork() == 0:
                    os.write(w, str(os.getpid()).encode())
                    while True:
                        time.sleep(3600)
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        daemon = int(os.read(r, 64))
        os.close(r)
        return {"ok": True, "daemon": daemon}

    def do_exit(self, code=3):
        os._exit(code)

    # -- limits -------------------------------------------------------------------------------
    def do_raise_hard_limit(self, which="RLIMIT_AS"):
        res = getattr(resource, which)
        soft, hard = resource.getrlimit(res)
        new_hard = resource.RLIM_INFINITY if hard != resource.RLIM_INFINITY else hard
        if new_hard == hard:
            raise OSError(errno.EINVAL, f"{which} has no hard limit to raise")
        resource.setrlimit(res, (soft, new_hard))
        return {"ok": True, which: list(resource.getrlimit(res))}


class HealthyPlugin:
    """The bystander: it must answer after every attack, from the same worker."""

    name = "healthy"
    version = "1.0"

    def ping(self):
        return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"
