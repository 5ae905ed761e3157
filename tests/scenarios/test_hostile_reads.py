"""Hostile plugins against the read scope and the pinned bytes.

What a worker may read is given, not inherited: the interpreter's stdlib and
site-packages, plugbox, the plugin's own file or package (a file plugin: the Python
modules beside it, not the rest of its directory) and ``Sandbox(read_only=...)``; not
the host's script directory or home because they are on its ``sys.path``, nor another
plugin's credentials beside it. A module beside a plugin cannot stand in for a standard
library module. A sha256-pinned package runs no bytes its digest did not cover: no
sourceless ``.pyc`` planted after pinning, no extension module swapped after the check.

Each attack runs in a host beside a healthy bystander, which must keep answering from
its first worker; the host's RSS may grow by at most ``HOST_RSS_BOUND`` across an
attack; the conftest leak check covers processes and fds; the directories these tests
make under /tmp (for a user other than root to reach) are removed, and the attacks
write no files. A root host's workers run as nobody, so the files attacked here are
world-readable: only the sandbox stands in the way (``landlock=False`` controls show
the files are readable without it); ``test_an_ordinary_users_host_*`` runs a host as
an ordinary user, whose workers keep its uid, against the user's own private files.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import pwd
import py_compile
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from ordinary_user import as_nobody, import_path

from plugbox import PluginHost, PluginInfo, Sandbox
from plugbox.errors import PluginIntegrityError, PluginRaised
from plugbox.specs import HookSet, HookSpec
from plugbox.trust import integrity
from plugbox.worker.sandbox import landlock

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
HOSTILE = PLUGINS / "hostile_reads.py"
BYSTANDER = f"{HOSTILE}:HealthyPlugin"
HOST_SCRIPT = Path(__file__).parents[1] / "scripts" / "reads_host.py"
SPECS = HookSet(
    "hostile-reads",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)
#: how much the host's RSS may grow across one test's attacks (it keeps nothing of them
#: but their reports; a start of the zygote and workers costs the host a few MB)
HOST_RSS_BOUND = 64 << 20
needs_landlock = pytest.mark.skipif(
    landlock.abi_version() < 1, reason="this kernel has no Landlock: reads are not confined"
)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that any user may enter (pytest's tmp_path is under a
    directory only its owner may: there the uid, not the sandbox, would stop a read)."""
    path = Path(tempfile.mkdtemp(prefix="plugbox-reads-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def put(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    """Write ``path`` (making its directories, 0755) with ``mode``."""
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            parent.chmod(0o755)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return path


@dataclass
class Arena:
    """A host with the bystander (added first) and the attacker."""

    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo

    async def attack(self, what: str, target: Any = None) -> Any:
        """An attack expected to get through (or a control); its value."""
        return (await self.host.call("attack", what=what, target=target)).value

    async def denied(self, what: str, target: Any) -> None:
        """The attack fails with the plugin's own PermissionError (EACCES: Landlock);
        its worker lives on, and the host and the bystander are unharmed."""
        with pytest.raises(PluginRaised) as caught:
            value = await self.attack(what, target)
            pytest.fail(f"{what} {target} got through: {value!r}")
        r = caught.value.report
        assert (r.plugin, r.cause, r.exc_type) == ("attacker", "raised", "PermissionError"), (
            r.summary()
        )
        assert (r.exc_message or "").startswith(f"[Errno {errno.EACCES}]"), r.summary()
        assert r.pid == self.attacker.pid and not r.killed
        await self.unharmed()

    async def unharmed(self) -> None:
        """The bystander answers from its first worker; every report is the attacker's."""
        assert (await self.host.call("ping")).value == ["pong"]
        assert [p.pid for p in self.host.plugins if p.name == "bystander"] == [self.bystander.pid]
        assert all(r.plugin == "attacker" for r in self.host.reports), self.host.reports


@asynccontextmanager
async def arena(attacker: Any, **add: Any) -> AsyncIterator[Arena]:
    """A host with the bystander and ``attacker``; the host's RSS held to the bound."""
    rss = psutil.Process().memory_info().rss
    async with PluginHost(SPECS) as host:
        bystander = await host.add(BYSTANDER)
        info = await host.add(attacker, **add)
        a = Arena(host, bystander, info)
        yield a
        await a.unharmed()
    assert psutil.Process().memory_info().rss - rss < HOST_RSS_BOUND


def needs_layer(layers: dict[str, bool], name: str) -> None:
    if not layers.get(name):
        pytest.skip(f"needs the {name} layer; not in force here")


# --- the host's import path --------------------------------------------------------------
#: (what the directory on the host's sys.path is, the secret in it)
ON_THE_PATH = [
    ("a host script's directory", ".env", "API_KEY=the-apps-secret\n"),
    ("a home directory (python -m app run there)", ".ssh/id_rsa", "-----BEGIN KEY-----\n"),
]


@needs_landlock
@pytest.mark.parametrize(("where", "name", "secret"), ON_THE_PATH, ids=["script_dir", "home"])
async def test_a_directory_on_the_hosts_import_path_is_not_readable(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path, where: str, name: str, secret: str
) -> None:
    put(open_dir / name, secret)
    put(open_dir / "app.py", "print('the host')\n")
    monkeypatch.syspath_prepend(str(open_dir))  # the zygote takes the host's sys.path
    async with arena(f"{HOSTILE}:ReaderPlugin") as a:
        needs_layer(a.attacker.layers, "landlock_filesystem")
        await a.denied("read", str(open_dir / name))
        await a.denied("list", str(open_dir))
        await a.denied("read", str(open_dir / "app.py"))
        # nor is it on the worker's import path for the plugin to find
        assert str(open_dir) not in await a.attack("sys_path")
        assert await a.attack("sweep", name) == {}


@pytest.mark.parametrize("sandbox", [Sandbox(landlock=False), None], ids=["no_landlock", "given"])
async def test_control_the_secret_is_readable_without_landlock_or_when_given(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path, sandbox: Sandbox | None
) -> None:
    # the files above are readable to the worker's uid: only Landlock stood in the way,
    # and Sandbox(read_only=...) gives a directory back, on the import path too
    put(open_dir / ".env", "API_KEY=the-apps-secret\n")
    monkeypatch.syspath_prepend(str(open_dir))
    given = sandbox or Sandbox(read_only=(str(open_dir),))
    async with arena(f"{HOSTILE}:ReaderPlugin", sandbox=given) as a:
        assert await a.attack("read", str(open_dir / ".env")) == b"API_KEY=the-apps-secret\n"
        on_path = str(open_dir) in await a.attack("sys_path")
        assert on_path is (sandbox is None)


# --- beside the plugin -------------------------------------------------------------------
@needs_landlock
async def test_files_beside_a_file_plugin_are_not_readable(open_dir: Path) -> None:
    # a shared plugins directory: the attacker, another plugin and that plugin's data
    plugins = open_dir / "plugins"
    shutil.copy(HOSTILE, put(plugins / "attacker.py", ""))
    put(plugins / "victim.py", "class VictimPlugin:\n    pass\n")
    put(plugins / "victim_credentials.json", '{"token": "the-victims-token"}\n')
    put(plugins / ".env", "DB_PASSWORD=hunter2\n")
    put(plugins / "id_rsa", "-----BEGIN KEY-----\n")
    put(plugins / "victim_data" / "notes.txt", "not a package\n")
    async with arena(f"{plugins / 'attacker.py'}:ReaderPlugin") as a:
        needs_layer(a.attacker.layers, "landlock_filesystem")
        for name in ("victim_credentials.json", ".env", "id_rsa", "victim_data/notes.txt"):
            await a.denied("read", str(plugins / name))
        await a.denied("list", str(plugins))
        # what is granted: the Python modules beside it (the modules it may import)
        assert (await a.attack("read", str(plugins / "victim.py"))).startswith(b"class Victim")


@needs_landlock
async def test_a_module_plugin_gets_its_own_package_not_its_import_path_entry(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path
) -> None:
    package = open_dir / "hostile_reads_pkg"
    shutil.copy(HOSTILE, put(package / "__init__.py", ""))
    put(open_dir / "secret.txt", "beside the package\n")
    put(open_dir / "other_pkg" / "__init__.py", "SECRET = 'another package'\n")
    monkeypatch.syspath_prepend(str(open_dir))
    async with arena("hostile_reads_pkg:ReaderPlugin") as a:
        needs_layer(a.attacker.layers, "landlock_filesystem")
        await a.denied("read", str(open_dir / "secret.txt"))
        await a.denied("read", str(open_dir / "other_pkg" / "__init__.py"))
        await a.denied("list", str(open_dir))
        assert (await a.attack("read", str(package / "__init__.py"))).startswith(b'"""Plugins')
        assert str(open_dir) not in await a.attack("sys_path")


@needs_landlock
async def test_an_inline_class_gets_its_own_module_not_its_import_path_entry(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path
) -> None:
    # a class handed over as an object, defined at the top level of a module: it is
    # sent by reference, and the worker imports that module (and only it)
    shutil.copy(HOSTILE, put(open_dir / "inline_reads_mod.py", ""))
    put(open_dir / "secret.txt", "beside the module\n")
    monkeypatch.syspath_prepend(str(open_dir))
    monkeypatch.delitem(sys.modules, "inline_reads_mod", raising=False)
    module = importlib.import_module("inline_reads_mod")
    async with arena(module.ReaderPlugin) as a:
        needs_layer(a.attacker.layers, "landlock_filesystem")
        await a.denied("read", str(open_dir / "secret.txt"))
        await a.denied("list", str(open_dir))
        assert (await a.attack("read", module.__file__)).startswith(b'"""Plugins')


# --- a host run by an ordinary user ------------------------------------------------------
@pytest.fixture(scope="module")
def ordinary_users_host() -> Iterator[dict[str, Any]]:
    """Run ``reads_host.py`` as ``python -m app`` from the home directory of an
    ordinary user (nobody, when the test runs as root), whose private files (0600 in
    0700 directories, the user's own) the attacks go after; its report lines by
    (run, label)."""
    if os.geteuid() == 0:
        python, _, kwargs = as_nobody()
        user = pwd.getpwnam("nobody")
    else:
        python, user, kwargs = sys.executable, pwd.getpwuid(os.geteuid()), {}
    base = Path(tempfile.mkdtemp(prefix="plugbox-reads-", dir="/tmp"))
    try:
        base.chmod(0o755)
        home = base / "home"
        put(home / ".ssh" / "id_rsa", "-----BEGIN KEY-----\n", 0o600)
        put(home / ".env", "API_KEY=the-users-secret\n", 0o600)
        shutil.copy(HOST_SCRIPT, put(home / "app.py", ""))
        plugins = home / "plugins"
        shutil.copy(HOSTILE, put(plugins / "attacker.py", ""))
        put(plugins / "victim_credentials.json", '{"token": "the-victims-token"}\n', 0o600)
        for path in [home, *home.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
            if path.is_dir():
                path.chmod(0o700)
        targets = {
            "id_rsa": str(home / ".ssh" / "id_rsa"),
            ".env": str(home / ".env"),
            "credentials": str(plugins / "victim_credentials.json"),
        }
        attacks = [[label, "read", path] for label, path in targets.items()]
        attacks += [["sweep", "sweep", ".env"], ["sys_path", "sys_path", None]]
        attacker = f"{plugins / 'attacker.py'}:ReaderPlugin"
        plan = [
            {"run": "sandboxed", "attacker": attacker, "sandbox": {}, "attacks": attacks},
            {
                "run": "no_landlock",
                "attacker": attacker,
                "sandbox": {"landlock": False},
                "attacks": attacks[:1],
            },
        ]
        env = {"PYTHONPATH": import_path(), "PATH": "/usr/bin:/bin", "HOME": str(home)}
        done = subprocess.run(
            [python, "-m", "app", json.dumps(plan), f"{plugins / 'attacker.py'}:HealthyPlugin"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        yield {
            "home": str(home),
            "by_case": {(d["run"], d["label"]): d for d in lines if "run" in d},
            "done": next((d for d in lines if d.get("done")), None),
            "stderr": done.stderr[-4000:],
            "returncode": done.returncode,
        }
    finally:
        shutil.rmtree(base)


@needs_landlock
@pytest.mark.parametrize("label", ["id_rsa", ".env", "credentials"])
def test_an_ordinary_users_host_keeps_the_users_files_from_its_plugins(
    ordinary_users_host: dict[str, Any], label: str
) -> None:
    found = ordinary_users_host
    assert found["returncode"] == 0 and found["done"], found["stderr"]
    assert found["done"]["uid"] != 0
    assert found["done"]["rss_growth"] < HOST_RSS_BOUND
    line = found["by_case"][("sandboxed", label)]
    assert line["outcome"] == "raised", f"the plugin read it: {line}"
    assert line["exc_type"] == "PermissionError", line
    assert line["exc_message"].startswith(f"[Errno {errno.EACCES}]"), line
    assert line["healthy"] is True


@needs_landlock
def test_an_ordinary_users_host_gives_its_plugins_no_home_on_the_import_path(
    ordinary_users_host: dict[str, Any],
) -> None:
    found = ordinary_users_host
    assert found["returncode"] == 0 and found["done"], found["stderr"]
    assert found["by_case"][("sandboxed", "sweep")]["value"] == {}
    assert found["home"] not in found["by_case"][("sandboxed", "sys_path")]["value"]
    # control: the worker has the user's uid, so without Landlock the key is its to read
    control = found["by_case"][("no_landlock", "id_rsa")]
    assert control["outcome"] == "returned" and control["value"].startswith("-----BEGIN KEY")


# --- a module beside a pinned plugin -----------------------------------------------------
EXFILTRATING_JSON = """\
    # planted beside a pinned plugin: would run in its place when it imports json
    PWNED = True


    def dumps(value, **kwargs):
        return "exfiltrated"
"""


@pytest.mark.parametrize("landlock_on", [True, False], ids=["landlock", "no_landlock"])
async def test_a_module_beside_a_pinned_plugin_cannot_stand_in_for_the_stdlib(
    open_dir: Path, landlock_on: bool
) -> None:
    plugins = open_dir / "plugins"
    pinned = put(plugins / "pinned.py", "")
    shutil.copy(HOSTILE, pinned)
    good = integrity.digest(str(pinned))
    put(plugins / "json.py", EXFILTRATING_JSON)  # planted after pinning: not in the digest
    put(plugins / "winreg.py", "PWNED = True\n")  # a stdlib module this platform lacks
    put(plugins / "helper_mod.py", "VALUE = 1\n")
    sandbox = Sandbox(landlock=landlock_on)
    async with arena(f"{pinned}:ReaderPlugin", sha256=good, sandbox=sandbox) as a:
        found = await a.attack("import", "json")
        assert found["pwned"] is False
        # the stdlib's package (a root host's worker reaches it through an fd: /proc/self/fd/N)
        assert found["file"].endswith("/json/__init__.py"), found
        # a name the stdlib has but this platform lacks is not taken from beside it
        with pytest.raises(PluginRaised) as caught:
            await a.attack("import", "winreg")
        r = caught.value.report
        assert (r.plugin, r.cause, r.exc_type) == ("attacker", "raised", "ImportError")
        assert "the name of a standard library module" in (r.exc_message or ""), r.summary()
        # a module beside it that stands in for nothing imports as before
        assert (await a.attack("import", "helper_mod"))["file"] == str(plugins / "helper_mod.py")
        await a.unharmed()


# --- code a pinned package's digest did not cover ----------------------------------------
def make_pinned_package(root: Path, name: str, init: str) -> str:
    """A package plugin ``name`` under ``root`` whose ``__init__.py`` is ``init``, and
    whose ``plugin`` module answers ``attack`` with what ``__init__`` left in ``ANSWER``."""
    put(root / name / "__init__.py", init)
    put(
        root / name / "plugin.py",
        """\
        from . import ANSWER


        class PinnedPlugin:
            name = "attacker"
            version = "1.0"

            def attack(self, what, target):
                return ANSWER
        """,
    )
    return f"{name}.plugin"


OPTIONAL_SPEEDUPS = """\
    try:  # an optional accelerator, as many packages have
        from ._speedups import ANSWER
    except ImportError:
        ANSWER = "genuine"
"""


async def test_a_sourceless_pyc_planted_in_a_pinned_package_is_not_run(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path
) -> None:
    ref = make_pinned_package(open_dir, "pinned_pyc_pkg", OPTIONAL_SPEEDUPS)
    monkeypatch.syspath_prepend(str(open_dir))
    good = integrity.digest(ref)
    # planted after pinning: bytecode with no source, which the import system loads
    evil = put(open_dir / "evil_speedups.py", "ANSWER = 'pwned'\n")
    planted = open_dir / "pinned_pyc_pkg" / "_speedups.pyc"
    py_compile.compile(str(evil), cfile=str(planted), doraise=True)
    planted.chmod(0o644)
    evil.unlink()
    assert integrity.digest(ref) == good  # the digest leaves bytecode out, by definition
    rss = psutil.Process().memory_info().rss
    async with PluginHost(SPECS) as host:
        bystander = await host.add(BYSTANDER)
        with pytest.raises(PluginIntegrityError) as caught:
            await host.add(ref, sha256=good)
        assert [p.name for p in host.plugins] == ["bystander"]
        assert (await host.call("ping")).value == ["pong"]
        assert host.plugins[0].pid == bystander.pid
    exc = caught.value
    assert exc.checked_by == "worker"
    assert (
        exc.what
        == f"{os.path.realpath(planted)} (bytecode, which the digest does not cover: never loaded)"
    )
    assert (exc.expected, exc.actual) == (good, hashlib.sha256(planted.read_bytes()).hexdigest())
    assert psutil.Process().memory_info().rss - rss < HOST_RSS_BOUND


EXTENSION_C = """\
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *unused) { return PyUnicode_FromString(WHO); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&def); }
"""


def build_extension(where: Path, who: str) -> Path:
    """``_ext`` compiled with ``answer()`` returning ``who``; skip without a compiler."""
    include = sysconfig.get_paths()["include"]
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not os.path.exists(os.path.join(include, "Python.h")):
        pytest.skip("building a C extension needs a C compiler and Python's headers")
    source = put(where / "ext.c", EXTENSION_C)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    out = where / f"_ext-{who}{suffix}"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            f'-DWHO="{who}"',
            f"-I{include}",
            str(source),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    out.chmod(0o755)
    return out


#: the package's __init__: waits on a fifo in its scratch directory (the hook point the
#: test swaps the extension at, after every check and before the import), then imports it
WAIT_THEN_IMPORT = """\
    import os

    with open(os.path.join(os.environ["HOME"], "go")) as go:
        go.read()
    from ._ext import answer

    ANSWER = answer()
"""


@pytest.fixture
def scratch(open_dir: Path) -> Path:
    """A scratch directory the worker's user may write, with a fifo ``go`` in it."""
    path = open_dir / "scratch"
    path.mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.mkfifo(path / "go")
    (path / "go").chmod(0o666)
    return path


@pytest.mark.parametrize("swapped", [True, False], ids=["swapped", "control"])
async def test_an_extension_swapped_after_the_check_is_not_loaded(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path, scratch: Path, swapped: bool
) -> None:
    build = open_dir / "build"
    build.mkdir()
    genuine, evil = build_extension(build, "genuine"), build_extension(build, "evil")
    ref = make_pinned_package(open_dir, "pinned_ext_pkg", WAIT_THEN_IMPORT)
    installed = open_dir / "pinned_ext_pkg" / f"_ext{sysconfig.get_config_var('EXT_SUFFIX')}"
    shutil.copy(genuine, installed)
    monkeypatch.syspath_prepend(str(open_dir))
    good = integrity.digest(ref)
    fifo = scratch / "go"

    def hook() -> None:
        # blocks until the worker, its checks done, opens the fifo in __init__
        fd = os.open(fifo, os.O_WRONLY)
        try:
            if swapped:
                os.replace(shutil.copy(evil, build / "staged"), installed)
            os.write(fd, b"go")
        except BrokenPipeError:  # released (below): the worker never reached the fifo
            pass
        finally:
            os.close(fd)

    def release() -> None:
        # if the worker never reached the fifo, open it for reading: the hook goes on
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))

    rss = psutil.Process().memory_info().rss
    outcome: dict[str, Any] = {}
    async with PluginHost(SPECS) as host:
        bystander = await host.add(BYSTANDER)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, hook)
            try:
                outcome["info"] = await host.add(
                    ref, sha256=good, sandbox=Sandbox(scratch=str(scratch))
                )
                outcome["answer"] = (await host.call("attack", what="", target=None)).value
            except PluginIntegrityError as exc:
                outcome["error"] = exc
            finally:
                release()
        assert (await host.call("ping")).value == ["pong"]
        assert [p.pid for p in host.plugins if p.name == "bystander"] == [bystander.pid]
    assert psutil.Process().memory_info().rss - rss < HOST_RSS_BOUND
    if not swapped:  # the checked bytes load, from their sealed copy
        assert outcome.get("answer") == "genuine", outcome
        return
    assert "error" in outcome, f"the swapped extension was loaded: {outcome}"
    exc = outcome["error"]
    assert exc.checked_by == "worker"
    assert exc.what == f"{os.path.realpath(installed)} (changed after the check)"
    # the pin, as the host holds it; the digest of the bytes that would have been loaded
    assert (exc.expected, exc.actual) == (good, hashlib.sha256(evil.read_bytes()).hexdigest())
