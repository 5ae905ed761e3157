"""``plugbox doctor`` and the strict sandbox: every layer named with its state, measured
on a real worker; ``--strict`` and ``Sandbox(strict=True)`` refuse a system where a
requested layer is missing.

A missing layer is produced honestly, not by patching: tests/scripts/without_landlock.py
runs a command (the doctor, or a worker as a launcher's command prefix) under a seccomp
filter that makes the Landlock system calls fail with ENOSYS, which is what a kernel
without Landlock answers. The worker then really runs without Landlock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plugbox import PluginHost, Sandbox
from plugbox.cli.codes import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from plugbox.cli.doctor import LAYERS
from plugbox.cli.main import main
from plugbox.errors import PluginLoadError
from plugbox.host import SubprocessLauncher
from plugbox.specs import HookSet, HookSpec
from plugbox.worker.sandbox import landlock, seccomp

SCRIPTS = Path(__file__).parents[1] / "scripts"
WITHOUT_LANDLOCK = [sys.executable, str(SCRIPTS / "without_landlock.py")]
PROBE = "plugbox.plugins.probe"
HOOKS = HookSet("doctor", [HookSpec(name="probe", args=(), mode="first_result")])
LANDLOCK_LAYERS = {
    "landlock_filesystem",
    "landlock_tcp",
    "landlock_signals",
    "landlock_abstract_unix",
}

needs_landlock = pytest.mark.skipif(
    landlock.abi_version() < 6 or not seccomp.supported(),
    reason="needs Landlock ABI 6+ (to take away) and seccomp (to take it away with)",
)


def doctor(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(prefix or []), sys.executable, "-m", "plugbox", "doctor", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2]
    )


def table(stdout: str) -> dict[str, tuple[str, str]]:
    """The layer table of the text output: name -> (kernel, worker)."""
    rows = {}
    for line in stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in LAYERS:
            rows[fields[0]] = (fields[1], fields[2])
    return rows


# --- the command --------------------------------------------------------------------------
def test_doctor_names_every_layer_with_its_state() -> None:
    done = doctor()
    assert done.returncode == EXIT_OK, done.stderr
    rows = table(done.stdout)
    assert list(rows) == list(LAYERS)  # every layer, in the order workers apply them
    for name, (kernel, worker) in rows.items():
        assert kernel in ("yes", "no") and worker in ("on", "OFF"), (name, kernel, worker)
        assert not (worker == "on" and kernel == "no"), f"{name}: in force but not offered?"
    assert "a probe worker tried what the sandbox must refuse" in done.stdout
    assert done.stdout.count("refused") + done.stdout.count("GOT THROUGH") >= 3


def test_doctor_json_reports_every_layer_and_the_probes() -> None:
    done = doctor("--json")
    assert done.returncode == EXIT_OK, done.stderr
    found = json.loads(done.stdout)
    assert list(found["layers"]) == list(LAYERS)
    for name, state in found["layers"].items():
        assert isinstance(state["kernel"], bool) and isinstance(state["worker"], bool), name
        assert state["description"] == LAYERS[name]
    assert set(found["probe"]) == {"tcp_connect", "write_outside_scratch", "fork"}
    assert found["missing"] == [n for n, s in found["layers"].items() if not s["worker"]]
    assert found["system"]["landlock_abi"] == landlock.abi_version()
    assert found["system"]["seccomp"] == seccomp.supported()
    # the layers this machine has are in force, and the probes meet them
    if found["layers"]["seccomp"]["worker"]:
        assert found["probe"]["fork"]["refused"]
        assert found["probe"]["tcp_connect"] == {
            "refused": True,
            "detail": "PermissionError: [Errno 1] Operation not permitted",
        }
    if found["layers"]["landlock_filesystem"]["worker"]:
        assert found["probe"]["write_outside_scratch"]["refused"]
        assert "[Errno 13]" in found["probe"]["write_outside_scratch"]["detail"]
    assert found["ok"] == (not found["missing"] and not found["got_through"])


def test_doctor_strict_passes_where_every_layer_is_in_force() -> None:
    done = doctor("--strict", "--json")
    found = json.loads(done.stdout)
    if found["missing"]:
        assert done.returncode == EXIT_FAILED
        pytest.skip(f"layers missing here: {', '.join(found['missing'])}")
    assert done.returncode == EXIT_OK, done.stderr
    assert found["ok"] and found["got_through"] == []


@needs_landlock
def test_doctor_strict_fails_naming_what_is_missing_without_landlock() -> None:
    done = doctor("--strict", prefix=WITHOUT_LANDLOCK)
    assert done.returncode == EXIT_FAILED
    rows = table(done.stdout)
    for name in LANDLOCK_LAYERS:
        assert rows[name] == ("no", "OFF"), name  # neither offered nor in force
    assert rows["seccomp"] == ("yes", "on")
    assert (
        "not in force: landlock_filesystem, landlock_tcp, landlock_signals, "
        "landlock_abstract_unix" in done.stdout
    )
    # without Landlock the write outside the scratch directory really gets through
    assert "got through: write_outside_scratch" in done.stdout
    assert "layer landlock_filesystem not in force" in done.stderr
    # the same without --strict: reported, and success
    assert doctor(prefix=WITHOUT_LANDLOCK).returncode == EXIT_OK


def test_doctor_without_a_probe_worker_exits_3() -> None:
    done = doctor("--timeout", "0.001")
    assert done.returncode == EXIT_ERROR
    assert "the probe worker could not be run: no answer within 0.001 s" in done.stdout
    assert "no probe worker could be run" in done.stderr
    assert set(table(done.stdout).values()) <= {("yes", "?"), ("no", "?")}


def test_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "doctor" in out and "exit status:" in out
    assert main(["doctor", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for words in ("--strict", "--json", "exit status:", "usage error"):
        assert words in out, words


@pytest.mark.parametrize("argv", [[], ["bogus"], ["doctor", "--bogus"]])
def test_usage_errors_exit_2_on_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "usage: plugbox" in captured.err


def test_console_script_is_declared() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '[project.scripts]\nplugbox = "plugbox.cli:main"' in pyproject


def test_python_dash_m_plugbox_without_a_command_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugbox"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_USAGE and "usage: plugbox" in done.stderr


# --- the library's strict sandbox ---------------------------------------------------------
@pytest.mark.anyio
async def test_strict_sandbox_starts_where_every_requested_layer_is_in_force() -> None:
    async with PluginHost(HOOKS) as host:
        info = await host.add(PROBE, sandbox=Sandbox(strict=True))
        requested = Sandbox().requested_layers(root=os.geteuid() == 0)
        assert all(info.layers[name] for name in requested), info.layers
        assert (await host.call("probe")).value["actions"]["fork"]["refused"]


def without_landlock_host() -> PluginHost:
    return PluginHost(HOOKS, launcher=SubprocessLauncher(command_prefix=WITHOUT_LANDLOCK))


@needs_landlock
@pytest.mark.anyio
async def test_strict_sandbox_refuses_a_worker_without_a_requested_layer() -> None:
    async with without_landlock_host() as host:
        with pytest.raises(PluginLoadError) as caught:
            await host.add(PROBE, sandbox=Sandbox(strict=True))
        assert caught.value.ref == PROBE
        reason = caught.value.reason
        assert reason.startswith("strict sandbox: layer 'landlock_filesystem' is not in force")
        assert all(name in reason for name in LANDLOCK_LAYERS), reason
        assert "seccomp" not in reason and "namespace" not in reason
        assert host.plugins == []  # nothing registered; the worker is gone (leak check)


@needs_landlock
@pytest.mark.anyio
async def test_without_strict_the_missing_layer_is_reported_not_faked() -> None:
    async with without_landlock_host() as host:
        info = await host.add(PROBE, config={"outside": "/nonexistent"})
        assert {name for name, on in info.layers.items() if not on} == LANDLOCK_LAYERS
        assert info.layers["seccomp"] and info.layers["user_namespace"]
        found: dict[str, Any] = (await host.call("probe")).value["actions"]
        assert found["fork"]["refused"]  # seccomp still does its part


@needs_landlock
@pytest.mark.anyio
async def test_strict_asks_only_for_the_layers_requested() -> None:
    async with without_landlock_host() as host:
        info = await host.add(PROBE, sandbox=Sandbox(strict=True, landlock=False))
        assert not info.layers.get("landlock_filesystem") and info.layers["seccomp"]
