"""Hostile plugins for tests/scenarios/test_hostile_process.py: attacks on the bounds
that hold for the whole worker process (its CPU between calls, its threads, its inotify
instances, its parent-death signal, its process group). Plain Python: nothing here
imports plugbox, as a real attacker's plugin would not.

A denied system call escapes as its own exception (``PluginRaised`` with its type and
``[Errno N] ...`` message); an attack that got through returns ``{"ok": True, ...}``.
``Bystander`` is the healthy plugin that must keep serving beside the attacker.
"""

import ctypes
import os
import platform
import resource
import signal
import threading

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
SYS_KILL = {"x86_64": 62, "aarch64": 129}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(rc, what):
    if rc == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def whoami():
    """This process as tests/forking.py ``whoami`` names it (pid 2 in a pid namespace)."""
    return f"{os.getpid()}:{os.readlink('/proc/self/ns/pid')}"


def _spin():
    while True:
        pass


class ProcessAttacker:
    name = "attacker"
    version = "6.6.6"

    def __init__(self):
        self.held = []  # threads and fds kept alive between calls
        self.release = threading.Event()
        self.linger = False

    def close(self):
        """Asked to close, or its host gone (the worker closes the plugin when its
        channel ends): with ``linger``, never return, so that the worker lives on."""
        if self.linger:
            threading.Event().wait()

    def pid(self):
        return whoami()

    # -- CPU between calls -------------------------------------------------------------
    def spin_between_calls(self, evade):
        """Burn a CPU in a background thread after the call has been answered. With
        ``evade``, first ignore SIGXCPU and lift its own RLIMIT_CPU soft limit, as one
        who read how the worker bounds a call would."""
        if evade:
            signal.signal(signal.SIGXCPU, signal.SIG_IGN)
            _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        threading.Thread(target=_spin, daemon=True).start()
        return {"spinning": True}

    # -- threads -----------------------------------------------------------------------
    def thread_bomb(self, count):
        """Start ``count`` threads that stay alive (small stacks, so that memory is not
        what stops them); raise at the first that cannot start."""
        threading.stack_size(64 * 1024)
        for n in range(count):
            thread = threading.Thread(target=self.release.wait, daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:
                raise RuntimeError(f"thread #{n + 1}: {exc}") from None
            self.held.append(thread)
        return {"ok": True, "started": count}

    def tasks(self):
        """How many threads this process has now."""
        return len(os.listdir("/proc/self/task"))

    def stop_threads(self):
        self.release.set()
        for thread in self.held:
            if isinstance(thread, threading.Thread):
                thread.join()
        self.held = [fd for fd in self.held if isinstance(fd, int)]
        return self.tasks()

    # -- inotify -----------------------------------------------------------------------
    def inotify_bomb(self, count):
        """Hold ``count`` inotify instances; raise at the first the kernel refuses."""
        for n in range(count):
            fd = _libc.inotify_init1(os.O_CLOEXEC)
            if fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"inotify instance #{n + 1}: {os.strerror(err)}")
            self.held.append(fd)
        return {"ok": True, "held": count}

    def raise_inotify_limit(self):
        """Try to lift its user namespace's inotify limit back (where it may write)."""
        with open("/proc/sys/user/max_inotify_instances", "w") as f:
            f.write("100000")
        return {"ok": True}

    # -- the parent-death signal -------------------------------------------------------
    def reset_pdeathsig(self):
        """Take back the SIGKILL the worker asked for when its parent dies, and linger
        in ``close`` when the host is gone, so as to outlive it."""
        self.linger = True
        _check(_libc.prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0), "prctl(PR_SET_PDEATHSIG, 0)")
        return {"ok": True, "reset": True}

    def pdeathsig(self):
        sig = ctypes.c_int(-1)
        _check(_libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0), "PR_GET_PDEATHSIG")
        return sig.value

    # -- its own process group ---------------------------------------------------------
    def signal_own_group(self, how):
        """SIGTERM its own process group (its pid namespace's init and outer process are
        in it), itself immune: ``kill0`` kill(0, ...), ``killpg0`` killpg(0, ...),
        ``wide`` the kill syscall with pid 0 in the low word and a high bit set."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if how == "kill0":
            os.kill(0, signal.SIGTERM)
        elif how == "killpg0":
            os.killpg(0, signal.SIGTERM)
        else:
            nr = SYS_KILL[platform.machine()]
            _check(_libc.syscall(nr, ctypes.c_long(1 << 32), signal.SIGTERM), "kill(1 << 32)")
        return {"ok": True, "signalled": how}


class Bystander:
    name = "bystander"
    version = "1.0.0"

    def ping(self):
        return whoami()

    def threads(self, count):
        """Start and join ``count`` threads: its own quota is untouched by the attacker's."""
        threads = [threading.Thread(target=lambda: None) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return count

    def inotify(self):
        """Open one inotify instance and close it."""
        fd = _check(_libc.inotify_init1(os.O_CLOEXEC), "inotify_init1")
        os.close(fd)
        return True
