"""The attack suite: hostile plugins against the sandbox.

Each attack is a real plugin (tests/plugins/attacks.py, plain Python) run under the
default ``Sandbox`` and ``Limits`` unless it needs otherwise, in a host that also runs a
bystander plugin. Every attack must fail, the host must stay up, and the bystander must
keep answering from the same worker. A denied action surfaces as the plugin's own error
(``PluginRaised`` carrying the exception type and errno) or as the kill it causes, never
as a failure of the host or of another plugin.

Which layer stops what. Most attacks meet several layers; the kernel checks seccomp at
syscall entry, then uid and capability rules, then LSMs such as Landlock, so an attack
reports the denial of the first layer in its path. Each test asserts the precise outcome
of the first layer in force and is skipped only when none of the layers that would stop
the attack is in force, naming them. Variants switch layers off to show each one stops
the attack alone; controls switch them all off to show the attack is real (that the
sandbox stops it, not the test's setup). Targets are chosen so that only the sandbox
protects them where possible: a sibling worker of the same uid, a world-writable
directory and world-writable sockets. The tests run as root with workers as nobody, so
attacks on the host itself are also refused by the kernel's uid checks; they are made
again (``test_same_uid_*``) against a host in its own process whose workers keep the
host's uid, where only the sandbox stands in the way and a failure kills that process
rather than the test runner.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import whoami

from plugbox import Limits, PluginHost, PluginInfo, Sandbox
from plugbox.errors import PluginCrashed, PluginFailure, PluginMemoryExceeded, PluginRaised
from plugbox.specs import HookSet, HookSpec

ATTACKS = str(Path(__file__).parents[1] / "plugins" / "attacks.py")
SCENARIO = Path(__file__).parents[1] / "scripts" / "attack_host.py"
SPECS = HookSet(
    "attacks",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)
EPERM, EACCES = errno.EPERM, errno.EACCES
#: a buffer in the host's memory that process_vm_readv and /proc/<host>/mem aim at
SECRET = ctypes.create_string_buffer(b"the host's secret 1e4c")

#: what each layer is, for skip reasons
LAYERS = {
    "seccomp": "the seccomp filter",
    "landlock_filesystem": "Landlock filesystem rules",
    "landlock_tcp": "Landlock TCP rules (ABI 4+)",
    "landlock_signals": "Landlock signal scoping (ABI 6+)",
    "landlock_abstract_unix": "Landlock abstract unix socket scoping (ABI 6+)",
    "network_namespace": "a network namespace",
    "user_namespace": "a user namespace",
    "pid_namespace": "a pid namespace",
    "mount_namespace": "a mount namespace with its own /proc",
    "unprivileged": "an unprivileged worker uid",
    "rlimits": "rlimits",
}

#: an expected denial: the layer whose denial the attack meets, the exception type the
#: plugin sees, and its errno (or, for errno-less exceptions, the start of the message)
Denial = tuple[str, str, "int | str"]
#: a control: with the layers switched off the attack must get through
GETS_THROUGH = "gets through"


def first_in_force(layers: dict[str, bool], expected: list[Denial]) -> Denial:
    """The first expected denial whose layer is in force; skip the test if none is."""
    for denial in expected:
        if layers.get(denial[0]):
            return denial
    needed = " or ".join(f"{LAYERS[d[0]]} ({d[0]})" for d in expected)
    pytest.skip(f"needs {needed}; not in force here")


def needs(layers: dict[str, bool], *names: str) -> None:
    """Skip unless every named layer is in force."""
    for name in names:
        if not layers.get(name):
            pytest.skip(f"needs {LAYERS[name]} ({name}); not in force here")


@dataclass
class Arena:
    """A host with a bystander plugin (added first) and the attacker."""

    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo

    @property
    def layers(self) -> dict[str, bool]:
        return self.attacker.layers

    async def attack(self, what: str, **target: Any) -> Any:
        """Make an attack that is expected to get through (controls); its value."""
        out = await self.host.call("attack", what=what, target=target)
        return out.value

    async def denied(self, what: str, expected: list[Denial], **target: Any) -> str:
        """Make the attack; assert the plugin's own error is the expected denial of
        the first layer in force, and that the host and bystander are unharmed.
        Returns the layer that stopped it."""
        layer, exc_type, err = first_in_force(self.layers, expected)
        with pytest.raises(PluginRaised) as caught:
            value = await self.host.call("attack", what=what, target=target)
            pytest.fail(f"{what} got through ({layer} expected to stop it): {value}")
        report = caught.value.report
        assert (report.plugin, report.cause, report.exc_type) == ("attacker", "raised", exc_type), (
            report.summary()
        )
        prefix = f"[Errno {err}]" if isinstance(err, int) else err
        assert (report.exc_message or "").startswith(prefix), report.summary()
        assert report.pid == self.attacker.pid and not report.killed
        # a denied action is the plugin's own error: its worker lives on
        assert await self.attack("pid") == whoami(self.attacker.pid)
        await self.unharmed()
        return layer

    async def unharmed(self) -> None:
        """The host is up, the bystander answers from its first worker, and every
        failure reported is the attacker's."""
        assert self.bystander.pid is not None
        assert (await self.host.call("ping")).value == [whoami(self.bystander.pid)]
        assert all(r.plugin == "attacker" for r in self.host.reports), self.host.reports


@asynccontextmanager
async def arena(
    sandbox: Sandbox | None = None, limits: Limits | None = None, **config: Any
) -> AsyncIterator[Arena]:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(f"{ATTACKS}:HealthyPlugin")
        config = {"host": os.getpid(), "pgid": os.getpgid(0), "sibling": bystander.pid, **config}
        attacker = await host.add(
            f"{ATTACKS}:AttackPlugin", config=config, sandbox=sandbox, limits=limits
        )
        yield Arena(host, bystander, attacker)


async def bystander_died_of(a: Arena, signal_name: str) -> None:
    """The bystander was killed by ``signal_name`` (a control): reported so, and the
    host goes on with a fresh worker for it."""
    try:
        out = await a.host.call("ping")
    except PluginCrashed as exc:
        report = exc.report
    else:  # the host saw the death first: an idle death, and the call got a fresh worker
        fresh = next(p.pid for p in a.host.plugins if p.name == "healthy")
        assert fresh not in (None, a.bystander.pid) and out.value == [whoami(fresh)]
        (report,) = [r for r in a.host.reports if r.plugin == "healthy"]
    assert (report.plugin, report.signal) == ("healthy", signal_name), report.summary()
    assert len((await a.host.call("ping")).value) == 1


def died(pidfd: int, timeout: float = 5.0) -> bool:
    """Whether the process behind ``pidfd`` exits within ``timeout`` (no polling)."""
    return bool(select.select([pidfd], [], [], timeout)[0])


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable directory the user nobody can reach (under /tmp, not under the
    0700 pytest tmp_path): only the sandbox stands between a worker and it."""
    path = Path(tempfile.mkdtemp(prefix="plugbox-attack-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nothing_pending(listener: socket.socket) -> bool:
    """No connection waits to be accepted (a non-blocking accept would block)."""
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def nothing_received(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(100)
    except BlockingIOError:
        return True
    return False


pytestmark = pytest.mark.anyio

SIGNAL_HOST: list[Denial] = [
    ("seccomp", "PermissionError", EPERM),
    ("unprivileged", "PermissionError", EPERM),
    ("landlock_signals", "PermissionError", EPERM),
]


# --- signals at the host, everyone, the host's process group ------------------------------
async def test_sigkill_to_the_host_is_refused() -> None:
    # seccomp: kill() only to the worker itself (also: uid, Landlock signal scope)
    async with arena() as a:
        await a.denied("kill", SIGNAL_HOST, pid="$host")


async def test_sigkill_to_every_process_is_refused() -> None:
    # kill(-1): the uid check alone would let it through to every process of user
    # nobody, the bystander included; seccomp refuses it (Landlock's signal scope would)
    async with arena() as a:
        await a.denied(
            "kill",
            [("seccomp", "PermissionError", EPERM), ("landlock_signals", "PermissionError", EPERM)],
            pid=-1,
        )


async def test_sigkill_to_the_hosts_process_group_is_refused() -> None:
    async with arena() as a:
        assert os.getpgid(0) != os.getpgid(a.attacker.pid)  # the worker has its own
        await a.denied("killpg", SIGNAL_HOST, pgid="$pgid")


@pytest.mark.parametrize("wide", [False, True], ids=["F_SETOWN", "F_SETOWN|1<<32"])
async def test_sigio_at_the_host_through_f_setown_is_refused(wide: bool) -> None:
    # seccomp compares fcntl's command as the kernel does, as 32 bits: the command with
    # bit 32 set is still F_SETOWN to the kernel and still refused
    async with arena() as a:
        needs(a.layers, "seccomp")
        await a.denied("setown", [("seccomp", "PermissionError", EPERM)], pid="$host", wide=wide)


@pytest.mark.parametrize("wide", [False, True], ids=["F_SETOWN", "F_SETOWN|1<<32"])
async def test_sigio_at_a_sibling_worker(wide: bool) -> None:
    # the bystander runs as the same user nobody: only the sandbox protects it
    async with arena() as a:
        needs(a.layers, "seccomp")
        await a.denied("setown", [("seccomp", "PermissionError", EPERM)], pid="$sibling", wide=wide)


async def test_sigio_at_a_sibling_without_seccomp_is_stopped_by_landlock() -> None:
    # F_SETOWN itself goes through, but Landlock's signal scope keeps SIGIO (whose
    # default action kills) from reaching a process outside the worker's domain
    # (no namespaces: in a pid namespace the sibling's pid names no process at all)
    async with arena(sandbox=Sandbox(seccomp=False, namespaces=False)) as a:
        needs(a.layers, "landlock_signals")
        assert await a.attack("setown", pid="$sibling") == {"ok": True, "owner": a.bystander.pid}
        await a.unharmed()


async def test_control_sigio_at_a_sibling_without_seccomp_and_landlock_kills_it() -> None:
    async with arena(sandbox=Sandbox(seccomp=False, landlock=False, namespaces=False)) as a:
        await a.attack("setown", pid="$sibling")
        await bystander_died_of(a, "SIGIO")


# --- another process's memory -------------------------------------------------------------
TRACE_HOST: list[Denial] = [
    ("seccomp", "PermissionError", EPERM),
    ("unprivileged", "PermissionError", EPERM),
    ("user_namespace", "PermissionError", EPERM),
    ("landlock_filesystem", "PermissionError", EPERM),
]
#: opening /proc/<host>/mem or environ: the ptrace-access check (uid, the host not
#: dumpable, capabilities confined to the worker's user namespace, Landlock's domain)
#: with a mount namespace the worker's /proc is its pid namespace's own: no host pid in it
OWN_PROC: Denial = ("mount_namespace", "FileNotFoundError", errno.ENOENT)
PROC_READ: list[Denial] = [
    OWN_PROC,
    ("unprivileged", "PermissionError", EACCES),
    ("user_namespace", "PermissionError", EACCES),
    ("landlock_filesystem", "PermissionError", EACCES),
]


async def test_ptrace_attach_to_the_host_is_refused() -> None:
    async with arena() as a:
        await a.denied("ptrace", TRACE_HOST, pid="$host")


async def test_process_vm_readv_of_the_host_is_refused() -> None:
    async with arena() as a:
        await a.denied(
            "vm_read",
            TRACE_HOST,
            pid="$host",
            address=ctypes.addressof(SECRET),
            length=len(SECRET.value),
        )


async def test_reading_the_hosts_proc_mem_is_refused() -> None:
    async with arena() as a:
        await a.denied(
            "proc_mem",
            PROC_READ,
            pid="$host",
            address=ctypes.addressof(SECRET),
            length=len(SECRET.value),
        )


async def test_writing_the_hosts_proc_mem_is_refused() -> None:
    # Landlock first: /proc is read-only to the worker, so the open for writing fails
    before = SECRET.raw
    async with arena() as a:
        await a.denied(
            "proc_mem",
            [OWN_PROC, ("landlock_filesystem", "PermissionError", EACCES), *PROC_READ[1:]],
            pid="$host",
            address=ctypes.addressof(SECRET),
            length=len(SECRET.value),
            write=True,
        )
    assert SECRET.raw == before


async def test_reading_the_hosts_environ_is_refused() -> None:
    # (a secret in the file, and the uid out of play: test_same_uid_host_environ_*)
    async with arena() as a:
        await a.denied("environ", PROC_READ, pid="$host")


async def test_changing_the_hosts_rlimits_is_refused() -> None:
    async with arena() as a:
        await a.denied(
            "prlimit",
            [("seccomp", "PermissionError", EPERM), ("unprivileged", "PermissionError", EPERM)],
            pid="$host",
        )


# --- the network --------------------------------------------------------------------------
@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s


@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        # seccomp: no AF_INET socket at all
        pytest.param(
            {},
            [
                ("seccomp", "PermissionError", EPERM),
                ("landlock_tcp", "PermissionError", EACCES),
                ("network_namespace", "OSError", errno.ENETUNREACH),
            ],
            id="default",
        ),
        # Landlock checks connect() before routing
        pytest.param(
            {"seccomp": False}, [("landlock_tcp", "PermissionError", EACCES)], id="landlock"
        ),
        # the worker's network namespace has no interface, not even loopback up
        pytest.param(
            {"seccomp": False, "landlock": False},
            [("network_namespace", "OSError", errno.ENETUNREACH)],
            id="netns",
        ),
        pytest.param(
            {"seccomp": False, "namespaces": False},
            [("landlock_tcp", "PermissionError", EACCES)],
            id="landlock-alone",
        ),
    ],
)
async def test_tcp_to_a_localhost_listener_is_refused(
    tcp_listener: socket.socket, sandbox: dict[str, bool], expected: list[Denial]
) -> None:
    async with arena(sandbox=Sandbox(**sandbox)) as a:
        await a.denied("tcp", expected, port=tcp_listener.getsockname()[1])
    assert nothing_pending(tcp_listener)


@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        pytest.param(
            {},
            [
                ("seccomp", "PermissionError", EPERM),
                ("network_namespace", "OSError", errno.ENETUNREACH),
            ],
            id="default",
        ),
        pytest.param(
            {"seccomp": False}, [("network_namespace", "OSError", errno.ENETUNREACH)], id="netns"
        ),
    ],
)
async def test_udp_to_a_localhost_listener_is_refused(
    udp_listener: socket.socket, sandbox: dict[str, bool], expected: list[Denial]
) -> None:
    async with arena(sandbox=Sandbox(**sandbox)) as a:
        await a.denied("udp", expected, port=udp_listener.getsockname()[1])
    assert nothing_received(udp_listener)


async def test_control_udp_gets_through_without_seccomp_and_netns(
    udp_listener: socket.socket,
) -> None:
    # Landlock has no UDP rules: seccomp and the network namespace are the two layers
    async with arena(sandbox=Sandbox(seccomp=False, namespaces=False)) as a:
        assert await a.attack("udp", port=udp_listener.getsockname()[1]) == {"ok": True, "sent": 4}
    assert udp_listener.recv(100) == b"leak"


# --- unix sockets of other processes ------------------------------------------------------
@pytest.fixture
def unix_listener(open_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    """A listening pathname socket anyone may connect to (mode 0777, like the D-Bus
    system bus): the uid does not keep a worker out."""
    path = str(open_dir / "host.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        os.chmod(path, 0o777)
        s.listen()
        yield path, s


@pytest.fixture
def unix_dgram(open_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(open_dir / "host.dgram")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        os.chmod(path, 0o777)
        yield path, s


@pytest.fixture
def abstract_listener() -> Iterator[tuple[bytes, socket.socket]]:
    name = f"\0plugbox-attack-{os.getpid()}-{uuid.uuid4().hex}".encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(name)
        s.listen()
        yield name, s


async def test_connect_to_the_hosts_pathname_unix_socket_is_refused(
    unix_listener: tuple[str, socket.socket],
) -> None:
    # seccomp alone: with the network off, no connect() at all. Landlock (up to ABI 7)
    # has no rule for connecting to a pathname socket, and network namespaces do not
    # separate them (see the control below)
    path, listener = unix_listener
    async with arena() as a:
        await a.denied("unix", [("seccomp", "PermissionError", EPERM)], address=path)
    assert nothing_pending(listener)


async def test_control_pathname_unix_socket_without_seccomp_is_reached(
    unix_listener: tuple[str, socket.socket],
) -> None:
    path, listener = unix_listener
    async with arena(sandbox=Sandbox(seccomp=False)) as a:
        needs(a.layers, "landlock_filesystem", "network_namespace")  # in force, and no help
        assert await a.attack("unix", address=path) == {"ok": True, "connected": True}
    assert not nothing_pending(listener)


async def test_datagram_to_the_hosts_unix_socket_is_refused(
    unix_dgram: tuple[str, socket.socket],
) -> None:
    # seccomp: with the network off, AF_UNIX sockets are stream or seqpacket only (a
    # datagram's destination is behind a pointer no filter can read)
    path, sock = unix_dgram
    async with arena() as a:
        await a.denied("unix_dgram", [("seccomp", "PermissionError", EPERM)], address=path)
    assert nothing_received(sock)


async def test_control_datagram_without_seccomp_arrives(
    unix_dgram: tuple[str, socket.socket],
) -> None:
    path, sock = unix_dgram
    async with arena(sandbox=Sandbox(seccomp=False)) as a:
        assert await a.attack("unix_dgram", address=path) == {"ok": True, "sent": 4}
    assert sock.recv(100) == b"leak"


@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        pytest.param(
            {},
            [
                ("seccomp", "PermissionError", EPERM),
                ("network_namespace", "ConnectionRefusedError", errno.ECONNREFUSED),
                ("landlock_abstract_unix", "PermissionError", EPERM),
            ],
            id="default",
        ),
        # abstract names belong to a network namespace: nothing listens in the worker's
        pytest.param(
            {"seccomp": False},
            [("network_namespace", "ConnectionRefusedError", errno.ECONNREFUSED)],
            id="netns",
        ),
        pytest.param(
            {"seccomp": False, "namespaces": False},
            [("landlock_abstract_unix", "PermissionError", EPERM)],
            id="landlock",
        ),
    ],
)
async def test_connect_to_the_hosts_abstract_unix_socket_is_refused(
    abstract_listener: tuple[bytes, socket.socket], sandbox: dict[str, bool], expected: list[Denial]
) -> None:
    name, listener = abstract_listener
    async with arena(sandbox=Sandbox(**sandbox)) as a:
        await a.denied("unix", expected, address=name)
    assert nothing_pending(listener)


async def test_control_abstract_unix_socket_without_the_layers_is_reached(
    abstract_listener: tuple[bytes, socket.socket],
) -> None:
    name, listener = abstract_listener
    async with arena(sandbox=Sandbox(seccomp=False, namespaces=False, landlock=False)) as a:
        assert await a.attack("unix", address=name) == {"ok": True, "connected": True}
    assert not nothing_pending(listener)


# --- seeing the host's processes -----------------------------------------------------------
async def test_the_host_processes_cannot_be_listed_or_read_through_proc() -> None:
    # Landlock: of /proc only the worker's own entry (and a few system-wide files) may
    # be read, so /proc cannot be listed and the host's cmdline (world-readable without
    # the sandbox) cannot be opened; the worker still reads its own /proc/self
    async with arena() as a:
        assert (await a.attack("read_own_status"))["has_pid"]
        await a.denied("list_processes", [("landlock_filesystem", "PermissionError", EACCES)])
        await a.denied(
            "read_cmdline",
            [OWN_PROC, ("landlock_filesystem", "PermissionError", EACCES)],
            pid=os.getpid(),
        )


async def test_without_landlock_proc_shows_only_the_pid_namespace() -> None:
    # the pid namespace and the /proc mounted for it: the plugin sees itself (pid 2) and
    # its namespace's init (1), nothing of the host, and the host's pid is no entry
    async with arena(sandbox=Sandbox(landlock=False)) as a:
        needs(a.layers, "pid_namespace", "mount_namespace")
        assert sorted((await a.attack("list_processes"))["pids"]) == ["1", "2"]
        await a.denied("read_cmdline", [OWN_PROC], pid=os.getpid())
        await a.denied("kill", [("seccomp", "PermissionError", EPERM)], pid="$host")


# --- files --------------------------------------------------------------------------------
async def test_writing_outside_the_scratch_directory_is_refused(open_dir: Path) -> None:
    # Landlock alone: the directory is world-writable, so no uid check applies
    async with arena() as a:
        assert (await a.attack("scratch_write"))["ok"]  # its own scratch dir is writable
        await a.denied(
            "write",
            [("landlock_filesystem", "PermissionError", EACCES)],
            path=str(open_dir / "pwned.txt"),
        )
    assert list(open_dir.iterdir()) == []


async def test_writing_through_a_symlink_in_the_scratch_dir_is_refused(open_dir: Path) -> None:
    # Landlock checks the file the path resolves to, not the link in the scratch dir
    async with arena() as a:
        await a.denied(
            "symlink_write",
            [("landlock_filesystem", "PermissionError", EACCES)],
            outside=str(open_dir),
        )
    assert list(open_dir.iterdir()) == []


@pytest.mark.parametrize("what", ["write", "symlink_write"])
async def test_control_without_landlock_the_write_lands(open_dir: Path, what: str) -> None:
    target = (
        {"path": str(open_dir / "pwned.txt")} if what == "write" else {"outside": str(open_dir)}
    )
    async with arena(sandbox=Sandbox(landlock=False)) as a:
        assert (await a.attack(what, **target))["ok"]
    assert (open_dir / "pwned.txt").read_text() == "pwned"


# --- processes and threads ----------------------------------------------------------------
async def test_fork_bomb_is_refused_at_the_first_fork() -> None:
    # seccomp: fork/vfork/clone without CLONE_THREAD are EPERM (clone3 is ENOSYS, so
    # libc falls back to clone); no other layer limits the number of processes
    async with arena() as a:
        await a.denied("fork_bomb", [("seccomp", "PermissionError", "[Errno 1] fork #1 refused")])


async def test_thread_bomb_ends_in_a_clean_failure() -> None:
    # threads are allowed; the address-space cap (rlimits) bounds their stacks, so
    # starting one more fails in the plugin (observed: "thread #187: can't start new
    # thread"). With the address space used up, the worker may also be unable to build
    # its full reply: it then sends a bare one marked out of memory and is replaced
    # (PluginMemoryExceeded). Each is a clean, reported failure.
    async with arena() as a:
        needs(a.layers, "rlimits")
        with pytest.raises(PluginFailure) as caught:
            value = await a.host.call("attack", what="thread_bomb", target={"count": 5000})
            pytest.fail(f"5000 threads started: {value}")
        report = caught.value.report
        assert report.plugin == "attacker"
        if isinstance(caught.value, PluginRaised):
            assert report.exc_type in ("RuntimeError", "MemoryError"), report.summary()
            started = int((report.exc_message or "").split("#")[1].split(":")[0]) - 1
            assert 0 < started < 5000, report.exc_message
            assert await a.attack("pid") == whoami(a.attacker.pid)  # the worker lives on
        else:  # the worker ended: reported as such, and the next call gets a fresh one
            assert isinstance(caught.value, PluginMemoryExceeded), report.summary()
            assert report.exit_code is not None or report.signal is not None
            seen = await a.attack("pid")  # from a fresh worker
            fresh = next(p.pid for p in a.host.plugins if p.name == "attacker")
            assert fresh not in (None, a.attacker.pid) and seen == whoami(fresh)
        await a.unharmed()


def daemon_pid(a: Arena, seen: int) -> int:
    """The host's pid of the daemon the attacker started (``seen``: its own pid)."""
    if not a.layers.get("pid_namespace"):
        return seen
    # in its pid namespace, the orphan was reparented to the namespace's init
    assert a.attacker.pid is not None
    init = psutil.Process(a.attacker.pid).parent()
    assert init is not None
    (daemon,) = [p.pid for p in init.children() if p.pid != a.attacker.pid]
    return daemon


@pytest.mark.parametrize("namespaces", [True, False], ids=["pid_namespace", "subreaper"])
async def test_double_forked_daemon_dies_with_its_worker(namespaces: bool) -> None:
    # in a pid namespace the orphaned daemon is reparented to the namespace's init and
    # dies with the namespace when its worker ends; without, the zygote is a child
    # subreaper: the daemon is reparented to it, not to init, and killed when the worker
    # it came from is reaped
    async with arena(sandbox=Sandbox(processes=True, namespaces=namespaces)) as a:
        if namespaces:
            needs(a.layers, "pid_namespace")
        daemon = daemon_pid(a, (await a.attack("daemon"))["daemon"])
        pidfd = os.pidfd_open(daemon)
        try:
            with open(f"/proc/{daemon}/stat") as f:
                parent = int(f.read().rpartition(")")[2].split()[1])
            assert parent not in (1, a.attacker.pid)  # reparented: to the zygote or init
            with pytest.raises(PluginCrashed) as caught:
                await a.host.call("attack", what="exit", target={"code": 3})
            assert caught.value.report.exit_code == 3
            assert died(pidfd), f"daemon {daemon} survived its worker"
            await a.unharmed()
        finally:
            os.close(pidfd)


async def test_double_forked_daemon_dies_when_the_host_closes() -> None:
    async with arena(sandbox=Sandbox(processes=True)) as a:
        daemon = daemon_pid(a, (await a.attack("daemon"))["daemon"])
        pidfd = os.pidfd_open(daemon)
    try:
        assert died(pidfd), f"daemon {daemon} survived the host"
    finally:
        os.close(pidfd)


# --- a sibling worker ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        pytest.param(
            {},
            [("seccomp", "PermissionError", EPERM), ("landlock_signals", "PermissionError", EPERM)],
            id="default",
        ),
        pytest.param({"landlock": False}, [("seccomp", "PermissionError", EPERM)], id="seccomp"),
        pytest.param(
            {"seccomp": False, "namespaces": False},
            [("landlock_signals", "PermissionError", EPERM)],
            id="landlock",
        ),
        pytest.param(
            {"seccomp": False, "landlock": False},
            [("pid_namespace", "ProcessLookupError", errno.ESRCH)],
            id="pid_namespace",
        ),
    ],
)
async def test_signalling_a_sibling_worker_is_refused(
    sandbox: dict[str, bool], expected: list[Denial]
) -> None:
    # both workers run as nobody: the kernel's uid check lets this through
    async with arena(sandbox=Sandbox(**sandbox)) as a:
        await a.denied("kill", expected, pid="$sibling")


async def test_control_without_seccomp_and_landlock_the_sibling_dies() -> None:
    async with arena(sandbox=Sandbox(seccomp=False, landlock=False, namespaces=False)) as a:
        assert await a.attack("kill", pid="$sibling") == {"ok": True, "signalled": a.bystander.pid}
        await bystander_died_of(a, "SIGKILL")


# --- limits -------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE"])
async def test_raising_a_hard_rlimit_is_refused(which: str) -> None:
    # the kernel: raising a hard limit takes CAP_SYS_RESOURCE in the initial user
    # namespace, which neither nobody nor a worker in its own user namespace has
    async with arena() as a:
        needs(a.layers, "rlimits")
        await a.denied(
            "raise_hard_limit",
            [
                ("unprivileged", "ValueError", "not allowed to raise maximum limit"),
                ("user_namespace", "ValueError", "not allowed to raise maximum limit"),
            ],
            which=which,
        )


# --- the same attacks on a host whose workers share its uid -------------------------------
_SECRET_TARGET = {"pid": "$host", "address": "$secret_address", "length": "$secret_length"}
HOST_ATTACKS: dict[str, tuple[str, dict[str, Any]]] = {
    "kill": ("kill", {"pid": "$host"}),
    "killpg": ("killpg", {"pgid": "$pgid"}),
    "setown": ("setown", {"pid": "$host"}),
    "setown_wide": ("setown", {"pid": "$host", "wide": True}),
    "ptrace": ("ptrace", {"pid": "$host"}),
    "vm_read": ("vm_read", _SECRET_TARGET),
    "mem_read": ("proc_mem", _SECRET_TARGET),
    "mem_write": ("proc_mem", {**_SECRET_TARGET, "write": True}),
    "environ": ("environ", {"pid": "$host"}),
    "prlimit": ("prlimit", {"pid": "$host"}),
}
SECCOMP_STOPS = ("kill", "killpg", "setown", "setown_wide", "ptrace", "vm_read", "prlimit")
#: (run, PluginHost(dumpable=...), Sandbox keywords, {attack: expectation}): an
#: expectation is (the layer that stops it, exception type, errno), or GETS_THROUGH.
#: Every worker keeps the host's uid (root here, confined to a user namespace where it
#: has one): the shape of a host that does not run as root.
SAME_UID_RUNS: list[tuple[str, bool, dict[str, Any], dict[str, Any]]] = [
    # (the worker's own /proc has no entry for the host: its files are not even found)
    (
        "all_layers",
        False,
        {"user": None},
        {
            **{name: ("seccomp", "PermissionError", EPERM) for name in SECCOMP_STOPS},
            "mem_read": OWN_PROC,
            "mem_write": OWN_PROC,
            "environ": OWN_PROC,
        },
    ),
    (
        "dumpable_host",
        True,
        {"user": None},
        {"mem_read": OWN_PROC, "mem_write": OWN_PROC, "environ": OWN_PROC},
    ),
    # the namespaces alone (user, pid, mount...): the host has no pid and no /proc entry
    # the worker could name
    (
        "namespaces_alone",
        True,
        {"user": None, "seccomp": False, "landlock": False},
        {
            "kill": ("pid_namespace", "ProcessLookupError", errno.ESRCH),
            "ptrace": ("pid_namespace", "ProcessLookupError", errno.ESRCH),
            "vm_read": ("pid_namespace", "ProcessLookupError", errno.ESRCH),
            "mem_read": OWN_PROC,
            "mem_write": OWN_PROC,
            "environ": OWN_PROC,
        },
    ),
    # seccomp alone: a worker with root's capabilities; /proc/<host> is open to it,
    # the control that shows the secret would be seen if it leaked
    (
        "seccomp_alone",
        True,
        {"user": None, "namespaces": False, "landlock": False},
        {
            **{name: ("seccomp", "PermissionError", EPERM) for name in SECCOMP_STOPS},
            "mem_read": GETS_THROUGH,
            "environ": GETS_THROUGH,
        },
    ),
    # Landlock alone, against a worker with root's capabilities: signals and the
    # ptrace-mode attach checks stay inside its domain. F_SETOWN goes through, but
    # the SIGIO it would send never arrives (the host lives on to print later lines).
    # Last: if Landlock failed here, this would kill the host.
    (
        "landlock_alone",
        True,
        {"user": None, "namespaces": False, "seccomp": False},
        {
            "kill": ("landlock_signals", "PermissionError", EPERM),
            "killpg": ("landlock_signals", "PermissionError", EPERM),
            "ptrace": ("landlock_filesystem", "PermissionError", EPERM),
            "vm_read": ("landlock_filesystem", "PermissionError", EPERM),
            "mem_read": ("landlock_filesystem", "PermissionError", EACCES),
            "mem_write": ("landlock_filesystem", "PermissionError", EACCES),
            "setown": ("landlock_signals", GETS_THROUGH, 0),
            "setown_wide": ("landlock_signals", GETS_THROUGH, 0),
        },
    ),
]
SAME_UID_CASES = [(run, label) for run, _, _, expect in SAME_UID_RUNS for label in expect]
HOST_SECRET = f"plugbox-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def same_uid_host() -> dict[str, Any]:
    """Run every same-uid attack in one host process started with HOST_SECRET in its
    environment; collect its report lines by (run, attack)."""
    plan = [
        {
            "run": run,
            "dumpable": dumpable,
            "sandbox": sandbox,
            "attacks": [[label, *HOST_ATTACKS[label]] for label in expect],
        }
        for run, dumpable, sandbox, expect in SAME_UID_RUNS
    ]
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), json.dumps(plan)],
        env={**os.environ, "PLUGBOX_ATTACK_SECRET": HOST_SECRET},
        capture_output=True,
        text=True,
        timeout=90,
        start_new_session=True,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return {
        "by_case": {(d["run"], d["label"]): d for d in lines if "run" in d},
        "done": next((d for d in lines if d.get("done")), None),
        "returncode": proc.returncode,
        "stderr": proc.stderr[-4000:],
    }


@pytest.mark.parametrize(
    ("run", "label"), SAME_UID_CASES, ids=[f"{run}-{label}" for run, label in SAME_UID_CASES]
)
def test_same_uid_host_attack(same_uid_host: dict[str, Any], run: str, label: str) -> None:
    expected = dict((r, e) for r, _, _, e in SAME_UID_RUNS)[run][label]
    line = same_uid_host["by_case"].get((run, label))
    assert line is not None, (
        f"no report of {run}/{label}: the host died during it or before (exit status "
        f"{same_uid_host['returncode']}); stderr:\n{same_uid_host['stderr']}"
    )
    layers = line["layers"]
    assert line["healthy"], "the bystander stopped answering"
    assert line["secret_intact"], "the host's memory was written"
    if expected == GETS_THROUGH:  # a control
        if label == "mem_read" and os.geteuid() != 0:
            pytest.skip("the control needs root: Yama may refuse a non-root ptrace attach")
        assert line["outcome"] == "returned", line
        assert HOST_SECRET in json.dumps(line["value"]), line
        return
    layer, exc_type, err = expected
    needs(layers, layer)
    assert HOST_SECRET not in json.dumps(line)
    if exc_type == GETS_THROUGH:  # the call succeeds; what it aimed at does not happen
        assert line["outcome"] == "returned", line
        assert same_uid_host["done"] is not None, "the host did not live to the end"
        return
    assert (line["outcome"], line["exc_type"]) == ("raised", exc_type), line
    assert line["exc_message"].startswith(f"[Errno {err}]"), line


def test_same_uid_host_environ_secret_does_not_leak(same_uid_host: dict[str, Any]) -> None:
    done = same_uid_host["done"]
    assert done is not None and same_uid_host["returncode"] == 0, same_uid_host["stderr"]
    # the secret really is in the host's /proc/<pid>/environ (put there at exec: a
    # change to os.environ never reaches that file)
    assert done["secret_in_own_environ"]
    leaked = [
        case for case, line in same_uid_host["by_case"].items() if HOST_SECRET in json.dumps(line)
    ]
    assert leaked == [("seccomp_alone", "mem_read"), ("seccomp_alone", "environ")]
