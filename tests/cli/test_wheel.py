"""plugbox as a user gets it: a wheel built from this tree, installed in a fresh virtual
environment, runs ``plugbox demo`` and ``plugbox doctor`` from outside the checkout.

Offline: the wheel is built with this environment's setuptools (no build isolation) and
installed without dependencies; the fresh environment finds msgpack, anyio, psutil,
multiprocess and packaging through a ``.pth`` file naming the directories this one
imports them from. Python does not run the ``.pth`` files of such a directory, so the
editable install of this checkout, if that is how plugbox is installed here, stays out.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugbox.cli.codes import EXIT_ERROR, EXIT_FAILED, EXIT_OK
from plugbox.cli.doctor import LAYERS
from plugbox.demo.containment import MISBEHAVING

ROOT = Path(__file__).parents[2]
DEPENDENCIES = ("msgpack", "anyio", "psutil", "multiprocess", "packaging")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A temporary directory others may read: workers of a host running as root drop to
    an unprivileged user, and must still import plugbox and the demo's plugins from the
    new environment (pytest's own tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="plugbox-wheel-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(*cmd: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(part) for part in cmd],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env=env,
        check=False,
    )


def build_wheel(workdir: Path) -> Path:
    """A wheel of this tree, built from a copy (the build writes nothing in the checkout)."""
    source = workdir / "source"
    shutil.copytree(
        ROOT / "plugbox", source / "plugbox", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in ROOT.iterdir():  # pyproject.toml, README.md and whatever else it names
        if path.is_file():
            shutil.copy(path, source / path.name)
    dist = workdir / "dist"
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--quiet",
        "--wheel-dir",
        dist,
        source,
    )
    needs = "needs setuptools>=70.1 (the test extra): " if "bdist_wheel" in built.stderr else ""
    assert built.returncode == 0, needs + built.stdout + built.stderr
    (wheel,) = dist.glob("plugbox-*.whl")
    return wheel


def fresh_venv(workdir: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed, and this environment's copies
    of plugbox's dependencies on its path; returns its bin directory."""
    venv = workdir / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    found = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    site = Path(found.stdout.strip())
    dirs = {
        str(Path(str(importlib.import_module(name).__file__)).parents[1]) for name in DEPENDENCIES
    }
    (site / "plugbox-test-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(dirs)))
    return venv / "bin"


def test_a_wheel_in_a_fresh_venv_runs_the_demo_and_the_doctor(workdir: Path) -> None:
    wheel = build_wheel(workdir)
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        "plugbox/py.typed",
        "plugbox/demo/containment.py",
        "plugbox/demo/plugins/upper.py",
    } <= set(names)
    assert all(f"plugbox/demo/plugins/misbehaving/{file}" in names for file, _, _ in MISBEHAVING)
    bin_dir = fresh_venv(workdir, wheel)
    elsewhere = workdir / "elsewhere"  # a cwd outside the checkout
    elsewhere.mkdir()

    where = run(bin_dir / "python", "-c", "import plugbox; print(plugbox.__file__)", cwd=elsewhere)
    assert where.returncode == 0, where.stderr
    imported = Path(where.stdout.strip())
    assert imported.is_relative_to(workdir / "venv") and not imported.is_relative_to(ROOT)

    demo = run(bin_dir / "plugbox", "demo", cwd=elsewhere)
    assert "The host survived every plugin." in demo.stdout, demo.stdout + demo.stderr
    # the table of what the host reported: every plugin, each with its true cause
    lines = demo.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "true?" in line)
    cause, true = lines[header].index("cause"), lines[header].index("true?")
    table = lines[header + 2 : lines.index("", header)]
    found = {line.split()[0]: (line[cause:].split()[0], line[true:].split()[0]) for line in table}
    assert list(found) == ["message-logger", "upper", *(n for _, n, _ in MISBEHAVING)]
    # On a loaded machine the demo's 3 s deadline may end the CPU spin before it has
    # had its CPU second: the demo then says so and exits 1. Its timing, not the wheel's.
    if found["cpu-spin"] == ("timeout", "NO"):
        del found["cpu-spin"]
        assert demo.returncode == EXIT_FAILED
    else:
        assert demo.returncode == EXIT_OK, demo.stdout + demo.stderr
    assert all(is_true == "yes" for _, is_true in found.values()), table
    # the plugins the workers ran are the wheel's
    assert f"{workdir / 'venv'}" in demo.stdout.split("segfault's stderr")[1]

    doctor = run(bin_dir / "plugbox", "doctor", "--json", cwd=elsewhere)
    assert doctor.returncode == EXIT_OK, doctor.stdout + doctor.stderr
    found = json.loads(doctor.stdout)
    assert list(found["layers"]) == list(LAYERS)
    assert set(found["probe"]) == {"tcp_connect", "write_outside_scratch", "fork"}

    bench = run(bin_dir / "plugbox", "bench", cwd=elsewhere)
    assert bench.returncode == EXIT_ERROR and bench.stdout == ""
    assert "ships with plugbox's source repository, not the installed package" in bench.stderr
    assert "Clone the repository" in bench.stderr
