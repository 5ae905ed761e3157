"""The seccomp filter: its bytes, its decisions (a BPF interpreter below runs the encoded
program on both architectures), and its behaviour in forked children that install it."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from forking import attempt, in_child

from plugbox.worker.sandbox import bpf, seccomp, syscalls
from plugbox.worker.sandbox.bpf import (
    ENOSYS,
    EPERM,
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_KILL_PROCESS,
    Insn,
    disassemble,
)
from plugbox.worker.sandbox.seccomp import build_policy
from plugbox.worker.sandbox.syscalls import ARCHES

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
X86, ARM = ARCHES["x86_64"], ARCHES["aarch64"]
ME = 4242  # the pid the simulated policies are built for

needs_seccomp = pytest.mark.skipif(
    not seccomp.supported(),
    reason="seccomp.supported() is False: this kernel or architecture accepts no filter",
)


# --- a classic-BPF interpreter, enough for seccomp programs --------------------------------
def simulate(
    code: bytes,
    nr: int,
    args: Sequence[int] = (),
    audit_arch: int = X86.audit_arch,
) -> int:
    """Run an encoded filter on one seccomp_data; return its action."""
    data = struct.pack(
        "<IIQ6Q",
        nr & 0xFFFFFFFF,
        audit_arch,
        0,
        *[a & 0xFFFFFFFFFFFFFFFF for a in [*args, 0, 0, 0, 0, 0, 0][:6]],
    )
    program, pc, acc = disassemble(code), 0, 0
    while True:
        insn = program[pc]
        if insn.code == bpf.LD_ABS:
            assert insn.k % 4 == 0 and insn.k < len(data)
            acc = struct.unpack_from("<I", data, insn.k)[0]
            pc += 1
        elif insn.code == bpf.RET:
            return insn.k
        else:
            taken = {
                bpf.JEQ: acc == insn.k,
                bpf.JGE: acc >= insn.k,
                bpf.JSET: bool(acc & insn.k),
            }[insn.code]
            pc += 1 + (insn.jt if taken else insn.jf)


def decide(arch: syscalls.Arch, name: str, *args: int, **policy: Any) -> int:
    return simulate(
        build_policy(ME, arch=arch, **policy), arch.syscalls[name], args, arch.audit_arch
    )


# --- the bytes -------------------------------------------------------------------------------
def test_instructions_encode_as_struct_sock_filter() -> None:
    assert bpf.load(4).encode() == bytes([0x20, 0, 0, 0, 4, 0, 0, 0])
    assert bpf.jump(bpf.JEQ, 0xC000003E, 1, 0).encode() == bytes([0x15, 0, 1, 0, 0x3E, 0, 0, 0xC0])
    assert bpf.ret(SECCOMP_RET_ALLOW).encode() == bytes([6, 0, 0, 0, 0, 0, 0xFF, 0x7F])
    assert bpf.ret(EPERM).encode() == bytes([6, 0, 0, 0, 1, 0, 5, 0])
    assert disassemble(bpf.assemble([Insn(0x45, 2, 3, 0x10000)])) == [Insn(0x45, 2, 3, 0x10000)]
    with pytest.raises(ValueError):
        bpf.jump(bpf.JEQ, 0, 256, 0)


@pytest.mark.parametrize("arch", [X86, ARM], ids=lambda a: a.name)
def test_policy_opens_with_the_architecture_check(arch: syscalls.Arch) -> None:
    code = build_policy(ME, arch=arch)
    assert len(code) % 8 == 0
    head = disassemble(code[:32])
    assert head == [
        Insn(0x20, 0, 0, 4),
        Insn(0x15, 1, 0, arch.audit_arch),
        Insn(0x06, 0, 0, SECCOMP_RET_KILL_PROCESS),
        Insn(0x20, 0, 0, 0),
    ]
    x32 = disassemble(code[32:48])
    if arch.x32:
        assert x32 == [Insn(0x35, 0, 1, 0x40000000), Insn(0x06, 0, 0, EPERM)]
    else:
        assert x32[0].code != 0x35
    program = disassemble(code)
    assert program[-1] == Insn(0x06, 0, 0, SECCOMP_RET_ALLOW)
    for pc, insn in enumerate(program):  # every jump lands inside the program
        if insn.code & 0x07 == 0x05:
            assert pc + 1 + max(insn.jt, insn.jf) < len(program)
        if insn.code == 0x20 and insn.k >= 16:  # argument loads: the low word only
            assert (insn.k - 16) % 8 == 0, f"loads the high word of an argument at {pc}"


def test_other_architectures_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.uname()
    monkeypatch.setattr(
        syscalls.os,
        "uname",
        lambda: os.uname_result(
            (real.sysname, real.nodename, real.release, real.version, "riscv64")
        ),
    )
    with pytest.raises(syscalls.UnsupportedArchitecture, match="riscv64"):
        build_policy(ME)


# --- the decisions, on both architectures -----------------------------------------------------
@pytest.mark.parametrize("arch", [X86, ARM], ids=lambda a: a.name)
def test_policy_decisions(arch: syscalls.Arch) -> None:
    allow, high = SECCOMP_RET_ALLOW, 1 << 32
    code = build_policy(ME, arch=arch)
    assert simulate(code, arch.syscalls["ptrace"], (), 0x40000003) == SECCOMP_RET_KILL_PROCESS
    for name in (
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kcmp",
        "keyctl",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "unshare",
        "setns",
        "mount",
        "pivot_root",
        "pidfd_open",
        "pidfd_send_signal",
        "tkill",
        "io_uring_setup",
        "execve",
        "execveat",
    ):
        assert decide(arch, name) == EPERM, name
    assert decide(arch, "clone3") == ENOSYS
    assert simulate(code, 0, (), arch.audit_arch) == allow  # read / io_setup
    # signals: this process only, not its process group; the high word changes nothing
    assert decide(arch, "kill", ME, 0) == allow
    assert decide(arch, "kill", 0, signal.SIGTERM) == EPERM
    assert decide(arch, "kill", high, signal.SIGTERM) == EPERM
    assert decide(arch, "kill", -ME, signal.SIGTERM) == EPERM
    assert decide(arch, "kill", ME + 1, 0) == EPERM
    assert decide(arch, "kill", -1, signal.SIGKILL) == EPERM
    assert decide(arch, "kill", (ME + 1) | high, 0) == EPERM
    assert decide(arch, "tgkill", ME, ME + 7, 0) == allow
    assert decide(arch, "tgkill", ME + 1, ME + 1, 0) == EPERM
    assert decide(arch, "rt_sigqueueinfo", ME + 1) == EPERM
    assert decide(arch, "rt_tgsigqueueinfo", ME + 1, ME + 1) == EPERM
    assert decide(arch, "prlimit64", ME + 1, 0) == EPERM
    assert decide(arch, "prlimit64", 0, 0) == allow
    assert decide(arch, "setpriority", 0, ME + 1, 5) == EPERM
    assert decide(arch, "setpriority", 1, 0, 5) == EPERM  # a process group
    assert decide(arch, "setpriority", 0, 0, 5) == allow
    # signal redirection, compared as 32-bit
    for cmd in (seccomp.F_SETOWN, seccomp.F_SETSIG, seccomp.F_SETOWN_EX):
        assert decide(arch, "fcntl", 3, cmd, ME + 1) == EPERM
        assert decide(arch, "fcntl", 3, cmd | high, ME + 1) == EPERM
        assert decide(arch, "fcntl", 3, cmd | 0xFFFFFFFF00000000, ME + 1) == EPERM
    assert decide(arch, "fcntl", 3, 3, 0) == allow  # F_GETFL
    assert decide(arch, "fcntl", 3, 4 | high, 0) == allow  # F_SETFL
    assert decide(arch, "ioctl", 0, seccomp.TIOCSTI | high, 0) == EPERM
    assert decide(arch, "ioctl", 3, seccomp.FIOSETOWN, ME + 1) == EPERM
    assert decide(arch, "ioctl", 3, seccomp.SIOCSPGRP | high, ME + 1) == EPERM
    assert decide(arch, "ioctl", 3, 0x5401, 0) == allow  # TCGETS
    # processes: threads only, never namespaces
    thread_flags = 0x3D0F00  # glibc pthread_create's clone flags
    assert decide(arch, "clone", thread_flags) == allow
    assert decide(arch, "clone", 0x01200011) == EPERM  # glibc fork()
    assert decide(arch, "clone", 0x4111) == EPERM  # posix_spawn: CLONE_VM | CLONE_VFORK
    assert decide(arch, "clone", thread_flags | 0x10000000) == EPERM  # + CLONE_NEWUSER
    assert decide(arch, "clone", 0x11 | high) == EPERM
    assert decide(arch, "clone", 0x01200011, allow_processes=True) == allow
    assert decide(arch, "clone", 0x11 | 0x40000000, allow_processes=True) == EPERM
    assert decide(arch, "execve", allow_processes=True) == allow
    assert decide(arch, "clone3", allow_processes=True) == ENOSYS
    # sockets: the allowlist of families
    assert decide(arch, "socket", socket.AF_UNIX, socket.SOCK_STREAM, 0) == allow
    assert decide(arch, "socket", socket.AF_INET, socket.SOCK_STREAM, 0) == EPERM
    assert decide(arch, "socket", socket.AF_NETLINK, socket.SOCK_RAW, 0) == EPERM
    assert decide(arch, "socket", socket.AF_INET | high, socket.SOCK_STREAM, 0) == EPERM
    assert decide(arch, "socketpair", socket.AF_INET6, socket.SOCK_STREAM, 0) == EPERM
    net = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
    assert decide(arch, "socket", socket.AF_INET6, 1, 0, socket_families=net) == allow
    assert decide(arch, "socket", socket.AF_PACKET, 3, 0, socket_families=net) == EPERM
    # other processes' unix sockets: no connect(), and AF_UNIX stream/seqpacket only
    # (a datagram's destination address is behind a pointer), flags and all
    nonblock_cloexec = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    assert decide(arch, "connect", 3, 0, 16) == EPERM
    for name in ("socket", "socketpair"):
        for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
            for flags in (0, socket.SOCK_NONBLOCK, socket.SOCK_CLOEXEC, nonblock_cloexec):
                assert decide(arch, name, socket.AF_UNIX, kind | flags, 0) == allow
        assert decide(arch, name, socket.AF_UNIX, socket.SOCK_DGRAM, 0) == EPERM
        assert decide(arch, name, socket.AF_UNIX, socket.SOCK_RAW, 0) == EPERM  # = DGRAM
        assert decide(arch, name, socket.AF_UNIX, socket.SOCK_STREAM | high, 0) == allow
        assert decide(arch, name, socket.AF_UNIX, socket.SOCK_DGRAM | high, 0) == EPERM
        assert decide(arch, name, socket.AF_UNIX, socket.SOCK_DGRAM, 0, connect=True) == allow
    # a networked policy: connect() and every type of the allowed families
    assert decide(arch, "connect", 3, 0, 16, connect=True, socket_families=net) == allow
    assert (
        decide(
            arch, "socket", socket.AF_INET, socket.SOCK_DGRAM, 0, connect=True, socket_families=net
        )
        == allow
    )
    assert (
        decide(arch, "socket", socket.AF_INET, socket.SOCK_DGRAM, 0, socket_families=net) == allow
    )  # the family list decides, not the type
    assert (
        decide(arch, "socket", socket.AF_NETLINK, 3, 0, connect=True, socket_families=net) == EPERM
    )
    # personality: only PER_LINUX and the query
    assert decide(arch, "personality", 0xFFFFFFFF) == allow
    assert decide(arch, "personality", 0x0040000) == EPERM  # ADDR_NO_RANDOMIZE
    # self_only=False leaves signals to Landlock's scope, but never to a process group
    assert decide(arch, "kill", ME + 1, 9, self_only=False) == allow
    assert decide(arch, "tkill", ME + 1, 9, self_only=False) == allow
    assert decide(arch, "pidfd_send_signal", self_only=False) == EPERM
    for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        for pid in (0, -1, -ME, high, 0x80000000 | high):
            assert decide(arch, name, pid, 9, self_only=False) == EPERM, (name, pid)
        assert decide(arch, name, (ME + 1) | high, 9, self_only=False) == allow, name
    # the parent-death signal cannot be reset (or changed), whatever the high word
    for option in (seccomp.PR_SET_PDEATHSIG, seccomp.PR_SET_PDEATHSIG | high):
        assert decide(arch, "prctl", option, 0) == EPERM
        assert decide(arch, "prctl", option, 0, self_only=False) == EPERM
    assert decide(arch, "prctl", 2, 0) == allow  # PR_GET_PDEATHSIG
    assert decide(arch, "prctl", 15, 0) == allow  # PR_SET_NAME


def test_x86_64_denies_the_x32_abi() -> None:
    code = build_policy(ME, arch=X86)
    assert simulate(code, 0x40000000 | 39) == EPERM  # x32 getpid
    assert simulate(code, 0x40000000 | X86.syscalls["ptrace"]) == EPERM
    assert simulate(code, 0xFFFFFFFF) == EPERM  # syscall(-1)
    assert simulate(code, 39) == SECCOMP_RET_ALLOW


def test_fork_and_vfork_only_on_x86_64() -> None:
    assert decide(X86, "fork") == EPERM and decide(X86, "vfork") == EPERM
    assert decide(X86, "fork", allow_processes=True) == SECCOMP_RET_ALLOW
    assert "fork" not in ARM.syscalls and "vfork" not in ARM.syscalls


# --- behaviour: forked children install the real thing ----------------------------------------
def raw(name: str, *args: int) -> None:
    """A raw syscall by name, 64-bit arguments untouched by libc."""
    nr = syscalls.native_arch().syscalls[name]
    if LIBC.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def confined(**policy: Any) -> None:
    assert seccomp.install(build_policy(os.getpid(), **policy)) is True


@contextmanager
def victim() -> Iterator[int]:
    """A sleeping process to aim at; killed and reaped afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _vm_readv(pid: int, buf: ctypes.Array[ctypes.c_char]) -> None:
    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    local = ctypes.create_string_buffer(len(buf))
    liov = IoVec(ctypes.cast(local, ctypes.c_void_p), len(buf))
    riov = IoVec(ctypes.cast(buf, ctypes.c_void_p), len(buf))
    raw("process_vm_readv", pid, ctypes.addressof(liov), 1, ctypes.addressof(riov), 1, 0)
    assert local.raw == buf.raw


def _setown(cmd: int) -> str:
    a, b = socket.socketpair()
    try:
        result = attempt(lambda: raw("fcntl", a.fileno(), cmd, os.getppid()))
        owner = raw_result("fcntl", a.fileno(), 9)  # F_GETOWN
        return f"{result} owner={'parent' if owner == os.getppid() else owner}"
    finally:
        a.close()
        b.close()


def raw_result(name: str, *args: int) -> int:
    nr = syscalls.native_arch().syscalls[name]
    return int(LIBC.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args)))


SECRET = ctypes.create_string_buffer(b"the host's secret")


def test_supported_probe_leaves_the_caller_unfiltered() -> None:
    seccomp.supported()
    with open("/proc/self/status") as status:
        assert "Seccomp:\t0" in status.read()


def test_without_the_filter_the_attacks_would_work() -> None:
    """The control: the EPERMs below come from the filter, not from the kernel."""

    def probe() -> list[str]:
        return [
            attempt(lambda: os.kill(os.getppid(), 0)),
            attempt(lambda: _vm_readv(os.getppid(), SECRET)),
            _setown(seccomp.F_SETOWN | 1 << 32),  # the kernel truncates the command
            attempt(lambda: socket.socket(socket.AF_INET).close()),
        ]

    assert in_child(probe) == ["ok", "ok", "ok owner=parent", "ok"]


@needs_seccomp
def test_ptrace_and_process_memory_are_denied() -> None:
    with victim() as target:

        def probe() -> list[str]:
            confined()
            return [
                attempt(lambda: raw("ptrace", 16, target, 0, 0)),  # PTRACE_ATTACH
                attempt(lambda: raw("ptrace", 0x4206, target, 0, 0)),  # PTRACE_SEIZE
                attempt(lambda: _vm_readv(os.getppid(), SECRET)),
                attempt(lambda: raw("process_vm_writev", os.getppid(), 0, 0, 0, 0, 0)),
            ]

        assert in_child(probe) == ["EPERM"] * 4


@needs_seccomp
def test_signals_reach_only_this_process() -> None:
    with victim() as target:

        def probe() -> list[str]:
            confined()
            got: list[int] = []
            signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
            me = os.getpid()
            return [
                attempt(lambda: os.kill(os.getppid(), 0)),
                attempt(lambda: os.kill(target, signal.SIGKILL)),
                attempt(lambda: os.kill(-1, 0)),
                attempt(lambda: raw("kill", os.getppid() | 1 << 32, 0)),
                attempt(lambda: raw("tkill", target, 0)),
                attempt(lambda: raw("tgkill", target, target, 0)),
                attempt(lambda: raw("pidfd_open", target, 0)),
                attempt(lambda: os.kill(0, 0)),  # its process group
                attempt(lambda: os.killpg(os.getpgid(0), 0)),
                attempt(lambda: os.kill(me, 0)),
                attempt(lambda: os.kill(me, signal.SIGUSR1)),
                attempt(lambda: signal.pthread_kill(threading.get_ident(), 0)),
                str(got),
            ]

        assert in_child(probe) == ["EPERM"] * 9 + ["ok"] * 3 + [str([int(signal.SIGUSR1)])]


@needs_seccomp
def test_signal_redirection_is_denied_also_with_the_upper_bits_set() -> None:
    def probe() -> list[str]:
        confined()
        a, b = socket.socketpair()
        try:
            return [
                _setown(seccomp.F_SETOWN),
                _setown(seccomp.F_SETOWN | 1 << 32),
                _setown(seccomp.F_SETOWN_EX),
                _setown(seccomp.F_SETSIG | 1 << 63),
                attempt(
                    lambda: raw(
                        "ioctl",
                        a.fileno(),
                        seccomp.FIOSETOWN | 1 << 32,
                        ctypes.addressof(ctypes.c_int(os.getppid())),
                    )
                ),
                attempt(lambda: os.set_blocking(a.fileno(), False)),
            ]  # F_SETFL still works
        finally:
            a.close()
            b.close()

    assert in_child(probe) == ["EPERM owner=0"] * 4 + ["EPERM", "ok"]


@needs_seccomp
def test_no_new_processes_but_threads_and_the_event_loop_work() -> None:
    def probe() -> list[str]:
        confined()
        ran: list[str] = []
        thread = threading.Thread(target=lambda: ran.append("thread ran"))
        thread.start()
        thread.join()

        async def main() -> str:
            a, b = socket.socketpair()
            try:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(a, b"ping")
                return (await loop.sock_recv(b, 4)).decode()
            finally:
                a.close()
                b.close()

        return [
            attempt(os.fork),
            attempt(lambda: subprocess.run(["/bin/true"], check=True)),
            attempt(lambda: os.execv("/bin/true", ["true"])),
            attempt(lambda: raw("unshare", 0x10000000)),  # CLONE_NEWUSER
            attempt(lambda: raw("clone3", 0, 0)),
            *ran,
            asyncio.run(main()),
        ]

    assert in_child(probe) == ["EPERM"] * 4 + ["ENOSYS", "thread ran", "ping"]


@needs_seccomp
def test_fork_raises_permission_error() -> None:
    def probe() -> str:
        confined()
        try:
            os.fork()
        except PermissionError:
            return "PermissionError"
        return "forked"

    assert in_child(probe) == "PermissionError"


@needs_seccomp
def test_allow_processes_lets_fork_and_exec_through() -> None:
    def probe() -> list[object]:
        confined(allow_processes=True)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        done = subprocess.run(["/bin/true"], check=False)
        return [
            os.waitstatus_to_exitcode(status),
            done.returncode,
            attempt(lambda: raw("unshare", 0x10000000)),
        ]

    assert in_child(probe) == [7, 0, "EPERM"]


@needs_seccomp
def test_sockets_only_of_the_allowed_families() -> None:
    def probe() -> list[str]:
        confined()
        return [
            attempt(lambda: socket.socket(socket.AF_INET).close()),
            attempt(lambda: socket.socket(socket.AF_INET6).close()),
            attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close()),
            attempt(lambda: raw("socket", socket.AF_INET | 1 << 32, 1, 0)),
            attempt(lambda: socket.socket(socket.AF_UNIX).close()),
            attempt(lambda: [s.close() for s in socket.socketpair()]),
        ]

    def networked() -> list[str]:
        confined(socket_families=(socket.AF_UNIX, socket.AF_INET, socket.AF_INET6))
        return [
            attempt(lambda: socket.socket(socket.AF_INET).close()),
            attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()),
        ]

    assert in_child(probe) == ["EPERM"] * 4 + ["ok", "ok"]
    assert in_child(networked) == ["ok", "EPERM"]


@needs_seccomp
def test_no_way_to_another_process_unix_socket(tmp_path: Any) -> None:
    """A pathname socket anyone may write (like the D-Bus system bus) and an abstract
    one: Landlock has no rule for the first, so the filter is what keeps them closed."""
    path = str(tmp_path / "listener.sock")
    abstract = f"\0plugbox-seccomp-{os.getpid()}".encode()
    with (
        socket.socket(socket.AF_UNIX) as listener,
        socket.socket(socket.AF_UNIX) as abstract_listener,
    ):
        listener.bind(path)
        listener.listen()
        abstract_listener.bind(abstract)
        abstract_listener.listen()

        def connect(address: str | bytes) -> None:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(address)

        def probe() -> list[str]:
            confined()
            return [
                attempt(lambda: connect(path)),
                attempt(lambda: connect(abstract)),
                attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close()),
                attempt(
                    lambda: [
                        s.close() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
                    ]
                ),
                attempt(
                    lambda: socket.socket(
                        socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                    ).close()
                ),
                attempt(lambda: [s.close() for s in socket.socketpair()]),
            ]

        def networked() -> list[str]:
            confined(connect=True, socket_families=(socket.AF_UNIX, socket.AF_INET))
            return [
                attempt(lambda: connect(path)),
                attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close()),
            ]

        assert in_child(probe) == ["EPERM"] * 4 + ["ok", "ok"]
        assert in_child(networked) == ["ok", "ok"]
        listener.setblocking(False)
        conn, _ = listener.accept()  # the networked child's connection, and only it
        conn.close()
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_seccomp
def test_x32_syscalls_are_denied() -> None:
    if syscalls.native_arch().name != "x86_64":
        pytest.skip("the x32 ABI exists only on x86_64")

    def raw_ok(nr: int) -> None:
        if LIBC.syscall(ctypes.c_long(nr)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def probe() -> list[str]:
        confined()
        return [attempt(lambda: raw_ok(0x40000000 | 39)), attempt(lambda: raw_ok(39))]

    assert in_child(probe) == ["EPERM", "ok"]  # x32 getpid denied, getpid allowed


@needs_seccomp
def test_threads_running_before_install_are_filtered_too() -> None:
    def probe() -> list[str]:
        go = threading.Event()
        seen: list[str] = []

        def worker() -> None:
            go.wait(10)
            seen.append(attempt(lambda: socket.socket(socket.AF_INET).close()))

        thread = threading.Thread(target=worker)
        thread.start()
        confined()  # install() returned True: TSYNC put every thread under the filter
        go.set()
        thread.join()
        return seen

    assert in_child(probe) == ["EPERM"]
