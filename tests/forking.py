"""Running a test action in a forked child (for layers that restrict the process that
applies them), always reaping the child and closing the pipe."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from typing import Any


def in_child(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``fn`` in a forked child and return its JSON-able result; always reaps it."""
    r, w = os.pipe()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:
        try:
            os.close(r)
            try:
                payload = {"value": fn()}
            except BaseException as exc:
                payload = {"raised": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks, finished = [], False
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise AssertionError(f"child {pid} did not finish in {timeout}s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        finished = True
    finally:
        os.close(r)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert chunks, f"child died without a result: wait status {status:#x}"
    payload = json.loads(b"".join(chunks))
    assert "raised" not in payload, payload["raised"]
    return payload["value"]


def attempt(action: Callable[[], object]) -> str:
    """'ok', or the errno name the action failed with."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait, on pidfds (no polling), until the processes exit; return those still alive."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    try:
        pending = set(fds)
        while pending:
            ready, _, _ = select.select(list(pending), [], [], timeout)
            if not ready:
                break
            pending -= set(ready)
        return [fds[fd] for fd in pending]
    finally:
        for fd in fds:
            os.close(fd)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs, reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def whoami(pid: int) -> str:
    """How the process ``pid`` names itself from inside a worker: its pid in its own
    pid namespace and that namespace's identity (a plugin's ``do: "whoami"``). A worker
    in a pid namespace is pid 2 to itself, so the namespace is what tells workers apart."""
    with open(f"/proc/{pid}/status") as f:
        own = next(line.split()[-1] for line in f if line.startswith("NSpid:"))
    return f"{own}:{os.readlink(f'/proc/{pid}/ns/pid')}"
