"""Running a host script as an ordinary user (nobody) when the tests run as root, with
plugbox importable and a TMPDIR of its own that is checked to be left empty."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest


def import_path() -> str:
    """The import roots of plugbox and what a host needs: the plugbox under test."""
    import anyio
    import msgpack
    import psutil

    import plugbox

    roots = {str(Path(m.__file__).parent.parent) for m in (plugbox, msgpack, psutil, anyio)}
    return os.pathsep.join(sorted(roots))


def as_nobody() -> tuple[str, dict[str, str], dict[str, Any]]:
    """An interpreter, environment and ``subprocess`` user arguments that run a host as
    user nobody with plugbox importable; skips the test when there is none."""
    env = {"PYTHONPATH": import_path(), "PATH": "/usr/bin:/bin"}
    kwargs: dict[str, Any] = {"user": "nobody", "group": "nogroup", "extra_groups": []}
    why = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            probe = subprocess.run(
                [python, "-c", "import plugbox, anyio, msgpack, psutil"],
                env=env,
                capture_output=True,
                timeout=60,
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            why.append(f"{python}: {exc}")
            continue
        if probe.returncode == 0:
            return python, env, kwargs
        why.append(f"{python}: {probe.stderr.decode(errors='replace').strip()[-200:]}")
    pytest.skip(f"no interpreter with plugbox importable is reachable by nobody: {why}")


def run_as_ordinary_user(
    args: list[str], prefix: str, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[bytes], str, list[str]]:
    """Run ``python *args`` as an ordinary user (nobody, when the tests run as root) in
    a session of its own, with a fresh TMPDIR: the finished process, that TMPDIR's path
    and what was left in it once the process ended (the directory is then removed)."""
    if os.geteuid() != 0:
        python, env, kwargs = sys.executable, dict(os.environ), {}
    else:  # a root test run shows an ordinary user's host by becoming nobody
        python, env, kwargs = as_nobody()
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        if kwargs:
            os.chown(tmp, pwd.getpwnam("nobody").pw_uid, -1)
        env["TMPDIR"] = tmp  # the host's temporary files and workers' scratch go here
        done = subprocess.run(
            [python, *args],
            env=env,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
            **kwargs,
        )
        left = os.listdir(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done, tmp, left
