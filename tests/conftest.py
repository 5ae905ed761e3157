"""Shared fixtures: backends, plugin paths, and the leak check run after every test.

Every test that starts workers is checked afterwards for what it left behind: no
process descended from the test process (live or zombie) and no open fd that was not
open before.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

PLUGINS = Path(__file__).parent / "plugins"
EXAMPLES = Path(__file__).parent.parent / "examples"
PER_TEST_TIMEOUT = 120


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def behave() -> str:
    return str(PLUGINS / "behave.py")


def _open_fds() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:  # the fd of the listdir itself
            continue
        fds.add(fd)
    return fds


def _describe(fds: set[int]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(str(fd))
    return out


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it left a child process, a zombie or an fd behind."""
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    fds_before = _open_fds()
    faulthandler.dump_traceback_later(PER_TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    left = [p for p in me.children(recursive=True) if p.pid not in children_before]
    descriptions = []
    for p in left:
        try:
            descriptions.append(f"{p.pid} {p.status()} {p.cmdline()[:3]}")
        except psutil.Error:
            descriptions.append(f"{p.pid} (gone while listing)")
    assert not left, f"processes left behind: {descriptions}"
    leaked = _open_fds() - fds_before
    assert not leaked, f"fds left open: {_describe(leaked)}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [
        f"plugbox: python {sys.version.split()[0]}, euid {os.geteuid()}, "
        f"kernel {os.uname().release}"
    ]
    # what the sandbox tests really ran against: the layers a worker reports in force
    # (one worker start; `plugbox doctor` says more)
    try:
        from plugbox.cli.doctor import worker_layers

        layers = worker_layers(timeout=10.0)
    except Exception as exc:
        lines.append(f"plugbox sandbox: no probe worker ({type(exc).__name__}: {exc})")
        return lines
    on = [name for name, value in layers.items() if value]
    off = [name for name, value in layers.items() if not value]
    lines.append(f"plugbox sandbox layers in force: {' '.join(on) or 'none'}")
    lines.append(f"plugbox sandbox layers missing: {' '.join(off) or 'none'}")
    return lines
