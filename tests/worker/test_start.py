"""A worker's start made cheaper: each shortcut gives what the longer way gave.

The zygote prepares once what each worker would otherwise redo after its fork
(``bootstrap.prepare``: seccomp templates, libc handles, the name service, an event loop
made once), and a worker's start path avoids work that a just-forked process pays for
page by page. Each test here holds a shortcut to the result of the way it replaced.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from forking import in_child

from plugbox.worker import _linux, bootstrap
from plugbox.worker.sandbox import bpf, landlock, pidns, seccomp_template, syscalls
from plugbox.worker.sandbox import layers as sandbox
from plugbox.worker.sandbox import process as confine
from plugbox.worker.sandbox.seccomp import build_policy
from plugbox.worker.sandbox.seccomp_template import policy_template
from plugbox.worker.sandbox.syscalls import ARCHES

# pids a filter is built for: small, large, the probes the template is found with, and
# values that other constants of the program also have
PIDS = [1, 2, 8, 4242, 65534, 4194304, 0x7FFFFFFD, 0x7FFFFFFE, 0xFFFFFFFF]
NET = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


# --- seccomp: a template with the pid written in is build_policy's program -------------------
@pytest.mark.parametrize("arch", list(ARCHES.values()), ids=lambda a: a.name)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"allow_processes": True},
        {"socket_families": NET, "connect": True},
        {"socket_families": NET, "connect": True, "allow_processes": True},
        {"self_only": False},
        {"socket_families": (socket.AF_UNIX, socket.AF_INET)},
    ],
    ids=["default", "processes", "network", "network+processes", "not-self-only", "inet"],
)
def test_a_template_filled_in_is_the_program_build_policy_gives(
    arch: syscalls.Arch, options: dict[str, Any]
) -> None:
    template = policy_template(arch=arch, **options)
    for pid in PIDS:
        assert template.for_pid(pid) == build_policy(pid, arch=arch, **options), pid


def test_the_pid_slots_are_the_pid_comparisons() -> None:
    template = policy_template(arch=ARCHES["x86_64"])
    program = bpf.disassemble(template.for_pid(4242))
    compared = [
        i * 8 + 4 for i, insn in enumerate(program) if insn.code == bpf.JEQ and insn.k == 4242
    ]
    assert template.pid_slots and list(template.pid_slots) == compared
    # without self_only nothing in the program depends on the pid
    open_template = policy_template(self_only=False, arch=ARCHES["x86_64"])
    assert open_template.pid_slots == ()
    assert open_template.for_pid(1) == open_template.for_pid(4242) == open_template.code


def test_templates_are_kept_per_set_of_options() -> None:
    x86 = ARCHES["x86_64"]
    assert policy_template(arch=x86) is policy_template(arch=x86)
    # the families are a set: order and repeats do not make another template
    assert policy_template(
        socket_families=[socket.AF_INET6, socket.AF_UNIX, socket.AF_INET, socket.AF_UNIX], arch=x86
    ) is policy_template(socket_families=NET, arch=x86)
    assert policy_template(arch=x86) is not policy_template(allow_processes=True, arch=x86)
    # an architecture that is not one of ours is built each time, still right
    other = syscalls.Arch("x86_64", x86.audit_arch, True, dict(x86.syscalls))
    assert policy_template(arch=other) is not policy_template(arch=other)
    assert policy_template(arch=other).for_pid(77) == build_policy(77, arch=x86)


def test_the_worker_installs_the_program_its_policy_asks_for() -> None:
    for network in (False, True):
        for processes in (False, True):
            families = NET if network else (socket.AF_UNIX,)
            expected = build_policy(
                4242, socket_families=families, connect=network, allow_processes=processes
            )
            got = sandbox._seccomp_template(network, processes, False).for_pid(4242)
            assert got == expected, (network, processes)


# --- the pid the worker reports, read from the /proc/self link ---------------------------------
def _nspid_status() -> list[int]:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("NSpid:"))
    return [int(field) for field in line.split()[1:]]


def test_the_pid_from_proc_self_is_the_first_nspid() -> None:
    assert pidns._host_pid(-1) == _nspid_status()[0] == os.getpid()


def test_in_a_pid_namespace_split_returns_the_workers_pid_as_the_host_sees_it() -> None:
    def probe() -> dict[str, Any] | None:
        if os.geteuid() != 0:
            sandbox.enter_namespaces(network=True)
        if not pidns.unshare(pidns.CLONE_NEWPID):
            return None
        host_pid = pidns.split()  # returns in the worker only, as pid 2
        return {"host_pid": host_pid, "nspid": _nspid_status(), "own": os.getpid()}

    seen = in_child(probe)
    if seen is None:
        pytest.skip("this process may not make a pid namespace")
    host_pid, inner = seen["nspid"]
    assert (seen["own"], inner) == (2, 2)
    assert seen["host_pid"] == host_pid != 2  # the old way's answer (NSpid), not 2


# --- import paths after the drop -----------------------------------------------------------------
class _Dynamic(types.ModuleType):
    @property
    def __path__(self) -> list[str]:  # type: ignore[override]
        return ["/from/a/property"]


def test_package_path_is_what_getattr_says_for_every_kind_of_module() -> None:
    def module_getattr(name: str) -> Any:
        if name == "__path__":
            return ["/from/getattr"]
        raise AttributeError(name)

    lazy = types.ModuleType("lazy")
    lazy.__getattr__ = module_getattr  # type: ignore[method-assign]
    plain = types.ModuleType("plain")
    package = types.ModuleType("package")
    package.__path__ = ["/a/package"]
    shadowed = types.ModuleType("shadowed")  # __getattr__ is not asked when __path__ is set
    shadowed.__path__ = ["/own"]
    shadowed.__getattr__ = lambda name: ["/not/this"]  # type: ignore[method-assign]
    odd = [lazy, plain, package, shadowed, _Dynamic("dynamic"), object(), "not a module"]
    for module in [*sys.modules.values(), *odd]:
        assert confine._package_path(module) == getattr(module, "__path__", None), module
    assert confine._package_path(lazy) == ["/from/getattr"]
    assert confine._package_path(_Dynamic("d")) == ["/from/a/property"]


@pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges: needs root")
def test_after_the_drop_packages_under_a_root_only_directory_still_import(tmp_path: Path) -> None:
    # an import directory beneath one only root may enter (as an interpreter under
    # /root is): as nobody, only an fd opened before the drop reaches it
    hidden = tmp_path / "root_only" / "lib"
    (hidden / "hiddenpkg").mkdir(parents=True)
    (hidden / "hiddenpkg" / "__init__.py").write_text("")
    (hidden / "hiddenpkg" / "later.py").write_text("VALUE = 'imported after the drop'\n")
    for level in (hidden, hidden / "hiddenpkg"):
        level.chmod(0o755)
    (tmp_path / "root_only").chmod(0o700)

    def probe() -> dict[str, Any]:
        sys.path.insert(0, str(hidden))
        import hiddenpkg  # type: ignore[import-not-found]

        finders_before = len(sys.path_importer_cache)
        paths = confine.ImportPaths([])
        assert confine.drop_privileges("nobody")
        paths.after_drop()
        from hiddenpkg import later  # type: ignore[import-not-found]

        return {
            "remapped": paths.remap.get(str(hidden)),
            "sys_path": sys.path[0],
            "pkg_path": list(hiddenpkg.__path__),
            "value": later.VALUE,
            "finders_before": finders_before,
            "retired": len(confine._RETIRED[-1]),
            "stale": [p for p in sys.path_importer_cache if p.startswith(str(hidden))],
        }

    seen = in_child(probe)
    fd_path = seen["remapped"]
    assert fd_path is not None and fd_path.startswith("/proc/self/fd/")
    assert seen["sys_path"] == fd_path
    assert seen["pkg_path"] == [f"{fd_path}/hiddenpkg"]
    assert seen["value"] == "imported after the drop"
    # every finder made before the drop was dropped (kept aside, not reused)
    assert seen["retired"] >= seen["finders_before"] > 0
    assert seen["stale"] == []


def test_import_paths_open_directories_only() -> None:
    def probe() -> list[str]:
        sys.path[:] = ["/usr", "/nonexistent-dir", "/etc/passwd", "bad\0path", "", "/usr"]
        paths = confine.ImportPaths(["/etc"])
        opened = list(paths.fds)
        for fd in paths.fds.values():
            os.close(fd)
        return opened

    assert in_child(probe) == ["/usr", "/etc"]


# --- environment, /proc files --------------------------------------------------------------------
def test_scrubbing_leaves_only_the_clean_environment_in_python_and_in_libc() -> None:
    def probe() -> dict[str, Any]:
        os.environ["PLUGBOX_TEST_SECRET"] = "hunter2"
        os.environb[b"PLUGBOX_TEST_BYTES\xff"] = b"\xfe"
        confine.scrub_environment()
        getenv = ctypes.CDLL(None).getenv
        getenv.restype = ctypes.c_char_p
        return {
            "python": dict(os.environ),
            "libc": {
                name: (getenv(name.encode()) or b"").decode()
                for name in ("PLUGBOX_TEST_SECRET", "PATH", "HOME")
            },
            "libc_bytes": getenv(b"PLUGBOX_TEST_BYTES\xff"),
        }

    seen = in_child(probe)
    assert seen["python"] == confine.CLEAN_ENV
    assert seen["libc"] == {
        "PLUGBOX_TEST_SECRET": "",
        "HOME": "",
        "PATH": confine.CLEAN_ENV["PATH"],
    }
    assert seen["libc_bytes"] is None


def test_small_files_read_and_written_in_one_call(tmp_path: Path) -> None:
    with open("/proc/self/cmdline", "rb") as f:
        assert _linux.read_file("/proc/self/cmdline") == f.read()
    target = tmp_path / "file"
    target.write_bytes(b"old contents")
    _linux.write_file(str(target), b"new")
    assert target.read_bytes() == b"new contents"  # written over, as /proc files are
    with pytest.raises(FileNotFoundError):
        _linux.write_file(str(tmp_path / "absent"), b"x")  # never created
    assert not (tmp_path / "absent").exists()
    assert 0 < _linux.resident_kb() <= _linux.address_space_kb()


def test_the_oom_score_is_raised_through_one_write() -> None:
    def probe() -> str:
        assert sandbox.raise_oom_score()
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()

    assert in_child(probe) == "1000"


@pytest.mark.skipif(not landlock.abi_version(), reason="this kernel has no Landlock")
def test_landlock_skips_paths_that_do_not_exist(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "data.txt").write_text("readable")

    def probe() -> dict[str, Any]:
        done = landlock.restrict([str(tmp_path / "missing"), "bad\0path", str(tmp_path / "ro")], [])
        with open(tmp_path / "ro" / "data.txt") as f:
            data = f.read()
        try:
            os.listdir(tmp_path)
            outside = "ok"
        except PermissionError:
            outside = "denied"
        return {"filesystem": done["filesystem"], "data": data, "outside": outside}

    assert in_child(probe) == {"filesystem": True, "data": "readable", "outside": "denied"}


# --- what the zygote prepares ---------------------------------------------------------------------
def _process_state() -> dict[str, Any]:
    with open("/proc/self/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return {
        "uid": status["Uid"],
        "seccomp": status.get("Seccomp"),
        "no_new_privs": status.get("NoNewPrivs"),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "ns": {name: os.readlink(f"/proc/self/ns/{name}") for name in ("user", "pid", "net")},
    }


def test_prepare_changes_nothing_of_the_process_and_builds_the_templates() -> None:
    def probe() -> dict[str, Any]:
        before = _process_state()
        seccomp_template._template.cache_clear()
        sandbox._seccomp_template.cache_clear()
        bootstrap.prepare()
        after = _process_state()
        kept = sandbox._seccomp_template.cache_info().currsize
        built = seccomp_template._template.cache_info().currsize
        # a worker's lookup then finds the template made by prepare
        sandbox._seccomp_template(False, False, False)
        return {
            "same": before == after,
            "kept": kept,
            "built": built,
            "hits": sandbox._seccomp_template.cache_info().hits,
        }

    seen = in_child(probe)
    assert seen["same"]
    assert (seen["kept"], seen["built"], seen["hits"]) == (4, 4, 1)


def test_dispositions_are_set_as_signal_signal_sets_them() -> None:
    def probe() -> list[Any]:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: None)  # the old handler is a function
        _linux.set_disposition(signal.SIGTERM, signal.SIG_IGN)
        ignored = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the child lives on
        _linux.set_disposition(signal.SIGTERM, signal.SIG_DFL)
        return [ignored == signal.SIG_IGN, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL]

    assert in_child(probe) == [True, True]
