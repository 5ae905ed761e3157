"""What a worker looks like from the inside: the confinement applied before the plugin
is imported (new session, fds, environment, user, parent-death signal, rlimits)."""

from __future__ import annotations

import os
import resource
import signal
from typing import Any

import pytest

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.limits import BLAS_THREAD_VARIABLES

pytestmark = pytest.mark.anyio


async def worker_info(behave: str, launcher: str = "zygote", **kw: Any) -> tuple[Any, Any]:
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        info = await host.add(behave, **kw)
        out = await host.call("process", input_data={"do": "info"})
        return info, out.value


async def test_without_the_pid_namespace_the_plugin_runs_as_the_launched_process(
    behave: str,
) -> None:
    info, seen = await worker_info(behave, sandbox=Sandbox(pid_namespace=False))
    assert info.layers["user_namespace"] and info.layers["mount_namespace"]
    assert not info.layers["pid_namespace"]
    assert seen["sid"] == seen["pid"] == info.pid  # its own session's leader


@pytest.mark.parametrize("launcher", ["zygote", "subprocess"])
async def test_worker_is_confined_before_the_plugin_runs(
    behave: str, launcher: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PLUGBOX_TEST_SECRET", "hunter2")
    with open(tmp_path / "secret.txt", "w") as secret:  # an inheritable fd the host holds
        os.set_inheritable(secret.fileno(), True)
        limits = Limits(memory_mb=100, open_files=32, file_size_mb=8, cpu_seconds=3)
        info, seen = await worker_info(behave, launcher, limits=limits)
    # a new session, led by the worker: in a pid namespace, by the process that started
    # it, outside the namespace, so the plugin sees session 0; and it is pid 2 there
    if info.layers.get("pid_namespace"):
        assert (seen["sid"], seen["pid"]) == (0, 2)
    else:
        assert seen["sid"] == seen["pid"] == info.pid
    # the environment is scrubbed: nothing of the host's, the secret least of all
    assert "PLUGBOX_TEST_SECRET" not in seen["env"]
    assert set(seen["env"]) <= {"PATH", "LANG", "PYTHONIOENCODING", "HOME", "TMPDIR"} | set(
        BLAS_THREAD_VARIABLES  # the libraries' thread counts, from Limits.blas_threads
    )
    assert seen["env"]["HOME"] == seen["env"]["TMPDIR"] == seen["cwd"]  # the scratch dir
    # fds: stdio pipes, the channel on 3, and nothing inherited from the host
    fds = seen["fds"]
    assert fds["0"] == "/dev/null" and fds["1"].startswith("pipe:") and fds["2"].startswith("pipe:")
    assert fds["3"].startswith("socket:")
    assert not any("secret.txt" in target for target in fds.values())
    # no pipe but stdout and stderr: not the host's end of anything, nor the exit report
    # pipe its pid namespace's init writes on (protocol._exit_report)
    assert [fd for fd, target in fds.items() if int(fd) > 2 and target.startswith("pipe:")] == []
    for fd, target in fds.items():
        if int(fd) > 3:  # the event loop's own, and import-path directories
            assert target.startswith(("anon_inode:", "socket:", "pipe:", "/")), target
            assert not target.startswith(str(tmp_path)), target
    # rlimits
    assert seen["core"] == [0, 0]
    assert seen["nofile"] == [32, 32]
    assert seen["fsize"] == [8 << 20, 8 << 20]
    assert seen["as"][0] != resource.RLIM_INFINITY
    assert seen["cpu"][0] != resource.RLIM_INFINITY
    # it dies with its parent
    assert seen["pdeathsig"] == signal.SIGKILL
    assert info.layers["rlimits"] and info.layers["parent_death_signal"]
    assert info.layers["new_session"] and info.layers["fds_closed"]
    assert info.layers["clean_environment"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root host to show the drop to nobody")
async def test_a_root_host_runs_workers_as_nobody(behave: str) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    info, seen = await worker_info(behave)
    assert seen["uid"] == seen["euid"] == nobody
    assert info.layers["unprivileged"] is True


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root host to keep root")
async def test_user_none_keeps_root_and_says_so(behave: str) -> None:
    info, seen = await worker_info(behave, sandbox=Sandbox(user=None))
    assert seen["uid"] == 0
    assert info.layers["unprivileged"] is False


async def test_threads_start_under_the_address_space_cap(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave, limits=Limits(memory_mb=32))
        out = await host.call("process", input_data={"do": "threads", "arg": 50})
        assert out.value == 50


def plugins_dir(tmp_path: Any, files: dict[str, str]) -> Any:
    """A directory anyone may enter, under ``tmp_path`` (which only its owner may),
    holding ``files`` (name -> text)."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    plugin_dir.chmod(0o755)
    for name, text in files.items():
        (plugin_dir / name).write_text(text)
    return plugin_dir


async def test_a_plugin_under_a_directory_only_root_can_enter_loads(tmp_path: Any) -> None:
    # tmp_path lives under a 0700 directory (as an interpreter under /root does): the
    # worker, as nobody, reads the plugin file before dropping privileges and reaches
    # the plugin's directory, and so its sibling modules, through an fd
    plugin_dir = plugins_dir(
        tmp_path,
        {
            "helper_mod.py": "GREETING = 'hi from a sibling module'\n",
            "sibling.py": "import json\nimport helper_mod\n\n"
            "class SiblingPlugin:\n"
            "    def process(self, input_data):\n"
            "        return json.dumps([helper_mod.GREETING, input_data])\n",
        },
    )
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(str(plugin_dir / "sibling.py"))
        out = await host.call("process", input_data="x")
        assert out.value == '["hi from a sibling module", "x"]'


async def test_a_plugin_imports_more_of_the_packages_its_zygote_loaded(tmp_path: Any) -> None:
    # the zygote loaded logging, a package under the interpreter's directory, which a
    # root host's workers, as nobody, may not be able to enter (here, under /root); a
    # plugin importing a module of it that the zygote did not load finds it through
    # the package's remapped __path__ (ImportPaths.after_drop, over the packages the
    # zygote noted: confine.remember_packages)
    zygote_modules = _zygote_modules()
    assert "logging" in zygote_modules and "logging.handlers" not in zygote_modules
    plugin_dir = plugins_dir(
        tmp_path,
        {
            "deep_import.py": "import os\n"
            "import logging.handlers\n\n"
            "class DeepImportPlugin:\n"
            "    def process(self, input_data):\n"
            "        return [logging.handlers.__name__, os.getuid()]\n"
        },
    )
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(str(plugin_dir / "deep_import.py"))
        out = await host.call("process", input_data=None)
    assert out.value[0] == "logging.handlers"
    assert out.value[1] != 0  # (a root host's workers run as nobody)


def _zygote_modules() -> set[str]:
    """The modules a zygote holds once it is ready (asked of a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from plugbox.worker import lean; lean.import_asyncio()\n"
        "from plugbox.worker import bootstrap; bootstrap.prepare()\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_a_worker_looks_at_the_zygotes_packages_unless_a_module_was_loaded_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from plugbox.worker.sandbox import process as confine

    monkeypatch.setattr(confine, "_PACKAGES", None)
    assert len(confine._loaded_packages()) == len(sys.modules)  # nothing noted: all
    confine.remember_packages()
    assert confine._PACKAGES is not None
    noted = confine._loaded_packages()
    assert noted and all(isinstance(getattr(m, "__path__", None), list) for m in noted)
    assert {m.__name__ for m in noted} >= {"plugbox", "plugbox.worker", "logging"}
    assert len(noted) < len(sys.modules)
    monkeypatch.setitem(sys.modules, "plugbox_test_loaded_since", types.ModuleType("x"))
    assert len(confine._loaded_packages()) == len(sys.modules)  # one more: all again


def test_limits_the_start_leaves_out_are_the_defaults_of_limits() -> None:
    # the worker has no limit values of its own: what Start.limits does not give is
    # Limits' default, applied as rlimits
    from forking import in_child

    from plugbox.worker.sandbox.process import Confinement, apply_rlimits

    defaults = Limits()

    def apply(values: dict[str, Any]) -> list[Any]:
        state = Confinement()
        apply_rlimits(values, state)
        return [
            list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            list(resource.getrlimit(resource.RLIMIT_FSIZE)),
            resource.getrlimit(resource.RLIMIT_STACK)[0],
            state.cpu_seconds,
            state.address_space_kb > 0,
        ]

    nofile, fsize, stack, cpu, capped = in_child(lambda: apply({}))
    assert nofile == [defaults.open_files] * 2
    assert fsize == [defaults.file_size_mb << 20] * 2
    assert stack == defaults.stack_kb << 10
    assert cpu == defaults.cpu_seconds and capped
    nofile, fsize, _, cpu, capped = in_child(lambda: apply({"open_files": 16, "memory_mb": None}))
    assert nofile == [16, 16] and fsize == [defaults.file_size_mb << 20] * 2
    assert cpu == defaults.cpu_seconds and not capped


class FakeClocks:
    """The CPU clock, CLOCK_MONOTONIC and RLIMIT_CPU as renew_cpu_budget sees them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from plugbox.worker.sandbox import process as confine

        self.wall = 1000.0
        self.cpu = 0.0
        self.cpu_reads = 0
        self.soft: int | None = None
        monkeypatch.setattr(confine.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(confine, "cpu_clock", self.read_cpu)
        monkeypatch.setattr(confine.resource, "setrlimit", self.setrlimit)
        monkeypatch.setattr(confine, "_CPUS", 2)

    def read_cpu(self) -> float:
        self.cpu_reads += 1
        return self.cpu

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_CPU
        self.soft = limits[0]


def test_the_cpu_budget_is_renewed_without_reading_the_cpu_clock_while_it_cannot_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugbox.worker.sandbox.process import Confinement, renew_cpu_budget

    clocks = FakeClocks(monkeypatch)
    state = Confinement(cpu_seconds=2.0)
    clocks.cpu = 0.25
    renew_cpu_budget(state)
    assert (clocks.cpu_reads, clocks.soft) == (1, 3)
    # 0.25 s of wall on 2 CPUs (and a tick each) cannot take 0.25 s of CPU past 1 s
    clocks.wall += 0.3
    clocks.cpu = 0.8
    renew_cpu_budget(state)
    assert (clocks.cpu_reads, clocks.soft) == (1, 3)
    # 0.4 s more could: the clock is read, and the limit moves with it
    clocks.wall += 0.1
    clocks.cpu = 1.05
    renew_cpu_budget(state)
    assert (clocks.cpu_reads, clocks.soft) == (2, 4)


@pytest.mark.parametrize("seed", range(20))
def test_every_call_starts_with_its_whole_cpu_budget(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    import random

    from plugbox.worker.sandbox.process import Confinement, renew_cpu_budget

    rng = random.Random(seed)
    clocks = FakeClocks(monkeypatch)
    state = Confinement(cpu_seconds=rng.choice([0.5, 1.0, 2.5]))
    skipped = 0
    for _ in range(300):
        step = rng.choice([0.0, 0.001, 0.01, 0.2, 0.7])
        clocks.wall += step
        clocks.cpu += rng.uniform(0, 2 * step)  # up to both CPUs busy all along
        reads = clocks.cpu_reads
        renew_cpu_budget(state)
        skipped += clocks.cpu_reads == reads
        assert clocks.soft is not None and clocks.soft >= clocks.cpu + state.cpu_seconds
        assert clocks.soft - (clocks.cpu + state.cpu_seconds) < 1  # as without skipping
    assert skipped > 0
