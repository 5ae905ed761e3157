"""Landlock: forked children restrict themselves, then try what a plugin might."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forking import attempt, in_child

from plugbox.worker.sandbox import landlock

ABI = landlock.abi_version()


def needs_abi(version: int, what: str) -> pytest.MarkDecorator:
    have = f"this kernel has Landlock ABI {ABI}" if ABI else "this kernel has no Landlock"
    return pytest.mark.skipif(version > ABI, reason=f"{what} needs Landlock ABI {version}+; {have}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """ro/ (a readable file), rw/ (the scratch dir, with a symlink out), outside/."""
    for name in ("ro", "rw", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "ro" / "data.txt").write_text("readable")
    (tmp_path / "outside" / "target.txt").write_text("untouched")
    (tmp_path / "rw" / "link.txt").symlink_to(tmp_path / "outside" / "target.txt")
    return tmp_path


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


@pytest.fixture
def abstract_listener() -> Iterator[bytes]:
    name = f"\0plugbox-test-{os.getpid()}-{uuid.uuid4().hex}".encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(name)
        listener.listen(8)
        yield name


def write(path: Path | str, text: str = "written") -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: Path | str) -> str:
    with open(path) as f:
        return f.read()


# --- without a kernel ---------------------------------------------------------------------------
def test_structs_match_the_kernel_uapi() -> None:
    assert ctypes.sizeof(landlock.RulesetAttr) == 24
    assert landlock.RulesetAttr.scoped.offset == 16
    assert ctypes.sizeof(landlock.PathBeneathAttr) == 12  # __attribute__((packed))
    assert landlock.PathBeneathAttr.parent_fd.offset == 8


def test_rights_follow_the_abi() -> None:
    assert landlock.fs_rights(0) == 0
    assert landlock.fs_rights(1) == 0x1FFF
    assert landlock.fs_rights(2) == 0x3FFF  # + REFER
    assert landlock.fs_rights(3) == landlock.fs_rights(4) == 0x7FFF  # + TRUNCATE
    assert landlock.fs_rights(5) == landlock.fs_rights(7) == 0xFFFF  # + IOCTL_DEV


def test_without_landlock_nothing_is_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landlock, "abi_version", lambda: 0)
    done = landlock.restrict(["/"], ["/tmp"])
    assert done["abi"] == 0 and not any(v for k, v in done.items() if k != "abi")


def test_abi_version_is_a_number() -> None:
    assert isinstance(ABI, int) and ABI >= 0


# --- in forked children -------------------------------------------------------------------------
@needs_abi(1, "filesystem rules")
def test_filesystem_read_only_but_for_the_scratch_dir(tree: Path) -> None:
    def probe() -> dict[str, Any]:
        done = landlock.restrict(
            [str(tree / "ro"), str(tree / "ro" / "data.txt"), str(tree / "missing")],
            [str(tree / "rw")],
        )
        return {
            "done": dict(done),
            "read allowed": attempt(lambda: read(tree / "ro" / "data.txt")),
            "list allowed": attempt(lambda: os.listdir(tree / "ro")),
            "read outside": attempt(lambda: read(tree / "outside" / "target.txt")),
            "read /etc": attempt(lambda: read("/etc/passwd")),
            "write read-only": attempt(lambda: write(tree / "ro" / "data.txt")),
            "create in read-only": attempt(lambda: write(tree / "ro" / "new.txt")),
            "write outside": attempt(lambda: write(tree / "outside" / "target.txt")),
            "create outside": attempt(lambda: write(tree / "outside" / "new.txt")),
            "write in scratch": attempt(lambda: write(tree / "rw" / "new.txt")),
            "mkdir in scratch": attempt(lambda: os.mkdir(tree / "rw" / "sub")),
            "read back": read(tree / "rw" / "new.txt"),
            "write through symlink": attempt(lambda: write(tree / "rw" / "link.txt")),
            "rename out": attempt(
                lambda: os.rename(tree / "rw" / "new.txt", tree / "outside" / "moved.txt")
            ),
        }

    seen = in_child(probe)
    assert seen.pop("done") == {
        "abi": ABI,
        "filesystem": True,
        "tcp": ABI >= 4,
        "signals": ABI >= 6,
        "abstract_unix": ABI >= 6,
        "scopes": ABI >= 6,
        "all_threads": ABI >= 8,
    }
    assert seen == {
        "read allowed": "ok",
        "list allowed": "ok",
        "read outside": "EACCES",
        "read /etc": "EACCES",
        "write read-only": "EACCES",
        "create in read-only": "EACCES",
        "write outside": "EACCES",
        "create outside": "EACCES",
        "write in scratch": "ok",
        "mkdir in scratch": "ok",
        "read back": "written",
        "write through symlink": "EACCES",
        "rename out": "EACCES",
    }
    assert (tree / "outside" / "target.txt").read_text() == "untouched"
    assert not (tree / "outside" / "new.txt").exists()
    assert not (tree / "outside" / "moved.txt").exists()


@needs_abi(1, "filesystem rules")
def test_permission_error_is_what_python_code_sees(tree: Path) -> None:
    def probe() -> str:
        landlock.restrict([], [str(tree / "rw")])
        try:
            write(tree / "outside" / "target.txt")
        except PermissionError:
            return "PermissionError"
        return "written"

    assert in_child(probe) == "PermissionError"


@needs_abi(4, "denying TCP")
def test_tcp_connect_and_bind_are_denied(tcp_listener: socket.socket) -> None:
    address = tcp_listener.getsockname()

    def connect() -> None:
        with socket.create_connection(address, timeout=5):
            pass

    def bind() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))

    def probe() -> list[str]:
        before = [attempt(connect), attempt(bind)]
        done = landlock.restrict(["/"], [])
        assert done["tcp"]
        return [
            *before,
            attempt(connect),
            attempt(bind),
            attempt(lambda: [s.close() for s in socket.socketpair()]),
        ]

    assert in_child(probe) == ["ok", "ok", "EACCES", "EACCES", "ok"]


@needs_abi(4, "denying TCP")
def test_tcp_stays_allowed_when_not_denied(tcp_listener: socket.socket) -> None:
    address = tcp_listener.getsockname()

    def probe() -> list[object]:
        done = landlock.restrict(["/"], [], deny_tcp=False)
        with socket.create_connection(address, timeout=5):
            pass
        return [done["tcp"], "connected"]

    assert in_child(probe) == [False, "connected"]


@needs_abi(6, "scoping signals")
def test_signals_are_scoped_to_the_domain() -> None:
    def probe() -> list[str]:
        done = landlock.restrict(["/"], [], scope_signals=True, scope_abstract_unix=False)
        assert done["signals"] and not done["abstract_unix"]
        return [
            attempt(lambda: os.kill(os.getppid(), 0)),
            attempt(lambda: os.kill(os.getppid(), signal.SIGUSR2)),
            attempt(lambda: os.kill(os.getpid(), 0)),
        ]

    assert in_child(probe) == ["EPERM", "EPERM", "ok"]


@needs_abi(6, "scoping abstract unix sockets")
def test_abstract_unix_sockets_are_scoped_to_the_domain(abstract_listener: bytes) -> None:
    def connect() -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(abstract_listener)

    def probe() -> list[str]:
        before = attempt(connect)
        landlock.restrict(["/"], [], scope_signals=False, scope_abstract_unix=True)
        return [before, attempt(connect), attempt(lambda: os.kill(os.getppid(), 0))]

    def unscoped() -> str:
        landlock.restrict(["/"], [], scope_abstract_unix=False)
        return attempt(connect)

    assert in_child(probe) == ["ok", "EPERM", "ok"]
    assert in_child(unscoped) == "ok"
