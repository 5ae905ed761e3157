"""Built-in plugin ``probe``: what ``plugbox doctor`` runs to look at the sandbox from
inside a worker.

    await host.add("plugbox.plugins.probe",
                   config={"port": 8080, "outside": "/tmp/open-dir"})

Its one hook, ``probe()``, tries three things the default sandbox must refuse and says
how each went: a TCP connection to ``config["port"]`` on 127.0.0.1 (a listener the host
opened; port 9 without one), a new file in ``config["outside"]`` (a directory outside
the scratch directory that anyone may write, so that only the sandbox can refuse;
without one, the scratch directory's parent), and a fork, each straight through libc:
plugbox's audit hook, which words what the sandbox refuses, is not what is probed, the
sandbox's layers are. Each entry is
``{"refused": bool, "detail": str}``; ``refused`` is True only for an error the sandbox
gives (EPERM, EACCES, or ENETUNREACH from a network namespace without interfaces), not
for one the target gives (a refused connection reached the network). Whatever gets
through is undone at once: the file is removed, the child reaped.

Like every built-in plugin it imports nothing from plugbox.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

#: errno values that mean the sandbox said no
DENIED = (errno.EPERM, errno.EACCES, errno.ENETUNREACH)


def attempt(action: Callable[[], str]) -> dict[str, Any]:
    """Run ``action``; report whether it was refused, and how."""
    try:
        detail = action()
    except OSError as exc:
        return {"refused": exc.errno in DENIED, "detail": f"{type(exc).__name__}: {exc}"}
    return {"refused": False, "detail": detail}


class ProbePlugin:
    name = "probe"
    version = "1.0"

    def initialize(self, config: dict[str, Any]) -> None:
        self.config = dict(config)

    def probe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uid": os.geteuid(),
            "scratch": os.getcwd(),
            "actions": {
                "tcp_connect": attempt(self.tcp_connect),
                "write_outside_scratch": attempt(self.write_outside),
                "fork": attempt(fork),
            },
        }

    def tcp_connect(self) -> str:
        port = int(self.config.get("port") or 9)
        fd = libc_call("socket", socket.AF_INET, socket.SOCK_STREAM, 0)
        try:
            address = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            address += socket.inet_aton("127.0.0.1") + bytes(8)
            libc_call("connect", fd, address, len(address))
        finally:
            os.close(fd)
        return f"connected to 127.0.0.1:{port}"

    def write_outside(self) -> str:
        directory = self.config.get("outside") or os.path.dirname(os.getcwd())
        path = os.path.join(directory, f"plugbox-probe-{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(libc_call("open", path.encode(), flags, 0o600, path=path))
        os.unlink(path)
        return f"wrote {path}"


def libc_call(name: str, *args: Any, path: str | None = None) -> int:
    """libc's ``name``, called through ctypes (no audit event); OSError as Python
    would raise it, if it fails."""
    rc = int(getattr(ctypes.CDLL(None, use_errno=True), name)(*args))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *([path] if path else []))
    return rc


def fork() -> str:
    pid = libc_call("fork")
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"forked child {pid}"
