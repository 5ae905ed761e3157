"""Trust: version pins, integrity hashes (host and worker side), the lock file and its
CLI handlers, and entry point discovery.

Real workers (zygote launcher) on asyncio and trio wherever a host runs; the autouse
leak check in conftest.py verifies afterwards that nothing was left behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable
from importlib.machinery import ExtensionFileLoader, SourceFileLoader, SourcelessFileLoader
from pathlib import Path
from typing import Any

import pytest

from plugbox import HookSet, HookSpec, Limits, PluginHost, Sandbox, discover
from plugbox.cli.lock import add_lock_commands
from plugbox.errors import PluginIntegrityError, PluginLoadError, PluginVersionError
from plugbox.host import admission
from plugbox.host.inspect import verify_lock, write_lock
from plugbox.host.launchers import SpawnedWorker, ZygoteLauncher
from plugbox.host.options import PluginOptions
from plugbox.protocol import LOAD_CALL_ID, Error
from plugbox.trust import integrity
from plugbox.trust.lock import LockFileError, read_lock
from plugbox.trust.pins import Found, VersionPin

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
AUDITED = str(PLUGINS / "audited.py")
HOOKS = HookSet(
    "trust-test",
    [
        HookSpec(
            name="ask", args=("query", "state"), mode="first_result", mutable=frozenset({"state"})
        )
    ],
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, source: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return str(path)


PLUGIN_V = """\
    class VersionedPlugin:
        name = "versioned"
        version = "{version}"

        def ask(self, query, state):
            return "{answer}"
"""


def shared_dir(tmp_path: Path) -> Path:
    """A directory the worker's unprivileged user may read (and write: scratch)."""
    tmp_path.chmod(0o755)
    return tmp_path


# ---------------------------------------------------------------- version pins
@pytest.mark.parametrize("pin", ["~=1.4", "==1.4.2", ">=1,<2", "==1.4.*", "1.4.2"])
async def test_a_satisfied_version_pin_is_accepted(pin: str) -> None:
    pin = pin if pin[0] in "=~<>!" else f"=={pin}"
    async with PluginHost(HOOKS) as host:
        info = await host.add(AUDITED, version=pin)
        assert info.version == "1.4.2"
        assert (await host.call("ask", query="q", state={})).value is None


async def test_a_version_mismatch_is_refused_and_the_plugin_never_called() -> None:
    # the worker runs as nobody when the tests run as root: pytest's tmp_path is under
    # directories only root may enter
    with tempfile.TemporaryDirectory(prefix="plugbox-test-") as directory:
        os.chmod(directory, 0o777)
        await _refused_and_never_called(Path(directory))


async def _refused_and_never_called(scratch: Path) -> None:
    marker = scratch / "hook-ran"
    async with PluginHost(HOOKS) as host:
        with pytest.raises(PluginVersionError) as info:
            await host.add(AUDITED, version="~=2.0", sandbox=Sandbox(scratch=str(scratch)))
        exc = info.value
        assert isinstance(exc, PluginLoadError)  # what host.add raises, refined
        assert exc.ref == AUDITED and exc.pin == "~=2.0"
        assert exc.found == {"declared": "1.4.2"}
        assert "pinned to '~=2.0' but found declared version '1.4.2'" in str(exc)
        assert host.plugins == []
        assert (await host.call("ask", query="marker", state={})).called == []
        assert not marker.exists()  # the refused plugin's hook never ran
        # the same plugin, pinned right, does run its hook: the marker proves it would
        await host.add(AUDITED, version="~=1.4", sandbox=Sandbox(scratch=str(scratch)))
        assert (await host.call("ask", query="marker", state={})).value == "marked"
        assert marker.read_text() == "audited"


async def test_a_version_that_is_not_pep440_fails_a_pin(tmp_path: Path) -> None:
    ref = write(tmp_path / "odd.py", PLUGIN_V.format(version="banana", answer="x"))
    async with PluginHost(HOOKS) as host:
        with pytest.raises(PluginVersionError, match="'banana' is not a PEP 440 version"):
            await host.add(ref, version=">=1")


async def test_an_invalid_pin_is_a_value_error_before_any_worker() -> None:
    async with PluginHost(HOOKS) as host:
        with pytest.raises(ValueError, match="not a PEP 440 specifier"):
            await host.add(AUDITED, version="about 1.4")


def test_pins_check_declared_and_distribution_versions() -> None:
    pin = VersionPin("~=1.2")
    assert pin.problem(Found("1.2.5")) is None
    assert pin.problem(Found("1.3.0rc1")) is None  # an installed pre-release in range
    problem = pin.problem(Found("1.2.5", "acme-plugin", "2.0.0"))
    assert problem == (
        "pinned to '~=1.2' but found declared version '1.2.5', distribution acme-plugin '2.0.0'"
    )
    assert "no version at all" in (pin.problem(Found()) or "")
    exact = VersionPin.exact("1.0", None, "plugbox.lock")
    assert exact.problem(Found("1.0")) is None
    assert exact.problem(Found("1.0.0")) is not None  # a lock compares strings
    assert exact.problem(Found("1.0", "d", "1.0")) is not None  # not from a distribution


# ---------------------------------------------------------------- integrity
async def test_a_pinned_sha256_is_accepted_and_reported(tmp_path: Path) -> None:
    ref = write(tmp_path / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    digest = sha(Path(ref).read_bytes())
    assert integrity.digest(ref) == digest  # a file plugin: sha256 of its bytes
    async with PluginHost(HOOKS) as host:
        info = await host.add(ref, sha256=digest.upper())
        assert info.sha256 == digest
        assert (await host.call("ask", query="q", state={})).value == "ok"


async def test_a_tampered_file_is_refused_by_the_host_before_any_worker(tmp_path: Path) -> None:
    ref = write(tmp_path / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    good = integrity.digest(ref)
    write(tmp_path / "p.py", PLUGIN_V.format(version="1.0", answer="evil"))
    bad = integrity.digest(ref)

    class NoSpawn(ZygoteLauncher):
        async def spawn(self, tg: Any) -> SpawnedWorker:
            raise AssertionError("the host must refuse before starting a worker")

    async with PluginHost(HOOKS, launcher=NoSpawn()) as host:
        with pytest.raises(PluginIntegrityError) as info:
            await host.add(ref, sha256=good)
    exc = info.value
    assert (exc.ref, exc.expected, exc.actual, exc.checked_by) == (ref, good, bad, "host")
    assert f"cannot load plugin {ref!r}" in str(exc)
    assert good in str(exc) and bad in str(exc) and str(Path(ref).resolve()) in str(exc)


class TamperingLauncher(ZygoteLauncher):
    """Changes a file after the host's check, before the worker reads it: the host
    checks, then spawns; the worker reads the plugin only after it got Start."""

    def __init__(self, tamper: Callable[[], None]) -> None:
        super().__init__()
        self.tamper = tamper

    async def spawn(self, tg: Any) -> SpawnedWorker:
        self.tamper()
        return await super().spawn(tg)


async def test_a_file_changed_after_the_host_check_is_refused_by_the_worker(tmp_path: Path) -> None:
    ref = write(tmp_path / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    good = integrity.digest(ref)
    evil = PLUGIN_V.format(version="1.0", answer="evil")
    launcher = TamperingLauncher(lambda: write(tmp_path / "p.py", evil))
    async with PluginHost(HOOKS, launcher=launcher) as host:
        with pytest.raises(PluginIntegrityError) as info:
            await host.add(ref, sha256=good)
        assert host.plugins == []
    exc = info.value
    assert exc.checked_by == "worker"
    assert (exc.expected, exc.actual) == (good, sha(textwrap.dedent(evil).encode()))
    assert "integrity check failed (worker)" in str(exc) and "the bytes of" in str(exc)


def make_package(root: Path, name: str, answer: str = "pkg") -> None:
    write(root / name / "__init__.py", '"""A package plugin."""\n')
    write(root / name / "words.py", f'ANSWER = "{answer}"\n')
    write(
        root / name / "plugin.py",
        """\
        from .words import ANSWER


        class PackagedPlugin:
            name = "packaged"
            version = "3.0.0"

            def ask(self, query, state):
                return ANSWER
    """,
    )


def test_the_tree_digest_is_defined_by_names_sizes_and_bytes(tmp_path: Path) -> None:
    make_package(tmp_path, "treepkg")
    (tmp_path / "treepkg" / "__pycache__").mkdir()
    (tmp_path / "treepkg" / "__pycache__" / "words.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "treepkg" / "stale.pyc").write_bytes(b"junk")
    h = hashlib.sha256()
    for rel in ["__init__.py", "plugin.py", "words.py"]:
        data = (tmp_path / "treepkg" / rel).read_bytes()
        h.update(f"treepkg/{rel}\0{len(data)}\0".encode() + data)
    assert integrity.tree_digest([str(tmp_path / "treepkg")]) == h.hexdigest()


async def test_a_package_plugin_is_pinned_by_its_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = shared_dir(tmp_path)
    make_package(root, "trustpkg_a")
    monkeypatch.syspath_prepend(str(root))
    ref = "trustpkg_a.plugin"
    good = integrity.digest(ref)
    assert good == integrity.tree_digest([str(root / "trustpkg_a")])
    assert "trustpkg_a" not in sys.modules  # located and hashed without importing
    async with PluginHost(HOOKS) as host:
        await host.add(ref, sha256=good)
        assert (await host.call("ask", query="q", state={})).value == "pkg"
    # a sibling module the plugin imports changes: host-side refusal
    write(root / "trustpkg_a" / "words.py", 'ANSWER = "evil"\n')
    async with PluginHost(HOOKS) as host:
        with pytest.raises(PluginIntegrityError) as info:
            await host.add(ref, sha256=good)
    assert info.value.checked_by == "host" and "package directory" in str(info.value)
    assert "trustpkg_a" not in sys.modules


async def test_a_package_changed_after_the_host_check_is_refused_by_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = shared_dir(tmp_path)
    make_package(root, "trustpkg_b")
    monkeypatch.syspath_prepend(str(root))
    good = integrity.digest("trustpkg_b.plugin")
    launcher = TamperingLauncher(
        lambda: write(root / "trustpkg_b" / "words.py", 'ANSWER = "evil"\n')
    )
    async with PluginHost(HOOKS, launcher=launcher) as host:
        with pytest.raises(PluginIntegrityError) as info:
            await host.add("trustpkg_b.plugin", sha256=good)
    assert info.value.checked_by == "worker"
    assert info.value.actual == integrity.digest("trustpkg_b.plugin") != good


def test_the_worker_refuses_source_changed_after_its_own_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The last gap: bytes swapped between the worker's tree check and the import."""
    make_package(tmp_path, "trustpkg_c")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    for loader, name in (
        (SourceFileLoader, "get_data"),
        (SourcelessFileLoader, "get_data"),
        (ExtensionFileLoader, "create_module"),
    ):
        monkeypatch.setattr(loader, name, getattr(loader, name))  # restored
    for name in ("trustpkg_c", "trustpkg_c.words", "trustpkg_c.plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    located = integrity.locate("trustpkg_c.plugin")
    _, manifest = integrity.tree_manifest(located.dirs)
    integrity.guard_source_loads(manifest, located.dirs, ref="trustpkg_c.plugin")
    write(tmp_path / "trustpkg_c" / "words.py", 'ANSWER = "evil"\n')
    with pytest.raises(PluginIntegrityError) as info:
        __import__("trustpkg_c.plugin")
    assert (
        "words.py" in info.value.what
        and info.value.expected == manifest[os.path.realpath(tmp_path / "trustpkg_c" / "words.py")]
    )
    assert "trustpkg_c.words" not in sys.modules


def test_the_workers_integrity_failure_crosses_as_data_not_text() -> None:
    # the host builds its PluginIntegrityError from the Error's fields; the message,
    # whatever it says, is not read back
    pinned, actual = "a" * 64, "c" * 64
    options = PluginOptions(ref="p.py", sha256=pinned)
    said = Error(
        id=LOAD_CALL_ID,
        exc_type="PluginIntegrityError",
        message=f"sha256 of /elsewhere.py is {'b' * 64}, expected {pinned}",
        details={"what": "the bytes of /p.py", "expected": pinned, "actual": actual},
    )
    exc = admission.load_refusal(options, said)
    assert isinstance(exc, PluginIntegrityError)
    assert (exc.ref, exc.expected, exc.actual, exc.checked_by) == ("p.py", pinned, actual, "worker")
    assert exc.what == "the bytes of /p.py"
    assert str(exc) == (
        f"cannot load plugin 'p.py': integrity check failed (worker): sha256 of the bytes "
        f"of /p.py is {actual}, expected {pinned}"
    )
    # without its fields the host cannot say what was hashed: a plain load error
    bare = admission.load_refusal(
        options, Error(id=0, exc_type="PluginIntegrityError", message="m")
    )
    assert type(bare) is PluginLoadError and bare.reason == "PluginIntegrityError: m"


async def test_a_bad_sha256_argument_is_a_value_error() -> None:
    async with PluginHost(HOOKS) as host:
        with pytest.raises(ValueError, match="64 hex digits"):
            await host.add(AUDITED, sha256="abc")


# ---------------------------------------------------------------- lock file
async def test_lock_file_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = shared_dir(tmp_path)
    make_package(root, "trustpkg_d")
    monkeypatch.syspath_prepend(str(root))
    file_ref = write(root / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    lock_path = root / "plugbox.lock"
    lock = await write_lock([file_ref, "trustpkg_d.plugin"], lock_path)
    data = json.loads(lock_path.read_text())
    assert data == {
        "plugbox_lock": 1,
        "plugins": [
            {
                "name": "versioned",
                "ref": file_ref,
                "version": "1.0",
                "distribution": None,
                "sha256": integrity.digest(file_ref),
            },
            {
                "name": "packaged",
                "ref": "trustpkg_d.plugin",
                "version": "3.0.0",
                "distribution": None,
                "sha256": integrity.digest("trustpkg_d.plugin"),
            },
        ],
    }
    assert read_lock(lock_path) == lock
    assert await verify_lock(lock_path) == []

    # a host under the lock runs what it pins and refuses what it does not list
    async with PluginHost(HOOKS, lock=lock_path) as host:
        await host.add(file_ref)
        await host.add("trustpkg_d.plugin")
        with pytest.raises(PluginLoadError, match="not listed in"):
            await host.add(AUDITED)

    # tamper: verification names the plugin and both hashes; the host refuses it
    write(root / "p.py", PLUGIN_V.format(version="1.0", answer="evil"))
    problems = await verify_lock(lock_path)
    assert problems == [
        f"{file_ref}: sha256 is {integrity.digest(file_ref)}, the lock says "
        f"{lock.entries[0].sha256} (the plugin's code changed)"
    ]
    async with PluginHost(HOOKS) as host:
        with pytest.raises(PluginIntegrityError):
            await host.add(file_ref, lock=lock_path)

    # same bytes hash, other version: re-lock the file, then bump the version only
    write(root / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    assert await verify_lock(lock_path) == []
    data["plugins"][0]["version"] = "0.9"
    lock_path.write_text(json.dumps(data))
    assert await verify_lock(lock_path) == [
        f"{file_ref}: declared version is '1.0', the lock says '0.9'"
    ]
    async with PluginHost(HOOKS, lock=lock_path) as host:
        with pytest.raises(
            PluginVersionError,
            match=r"pinned to == 0.9 .*found declared "
            r"version '1.0'",
        ):
            await host.add(file_ref)


def test_a_malformed_lock_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plugbox.lock"
    with pytest.raises(LockFileError, match="no lock file"):
        read_lock(path)
    path.write_text("{not json")
    with pytest.raises(LockFileError, match="cannot read lock file"):
        read_lock(path)
    path.write_text(json.dumps({"plugbox_lock": 1, "plugins": [{"ref": "x.py"}]}))
    with pytest.raises(LockFileError, match="needs a string 'name'"):
        read_lock(path)


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plugbox")
    add_lock_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_lock_cli_write_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_dir(tmp_path)
    ref = write(root / "p.py", PLUGIN_V.format(version="1.0", answer="ok"))
    lock = str(root / "plugbox.lock")
    args = cli("lock", "write", ref, "--output", lock)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "locked versioned 1.0" in out and f"wrote {lock} (1 plugin)" in out
    args = cli("lock", "verify", "--lock", lock)
    assert args.func(args) == 0
    assert "1 plugin verified (hashes, names and versions match)" in capsys.readouterr().out
    write(root / "p.py", PLUGIN_V.format(version="1.0", answer="evil"))
    for extra in ([], ["--hash-only"]):
        args = cli("lock", "verify", "--lock", lock, *extra)
        assert args.func(args) == 1
        err = capsys.readouterr().err
        assert f"{lock}: 1 problem:" in err and "the plugin's code changed" in err
    args = cli("lock", "verify", "--lock", str(root / "missing.lock"))
    assert args.func(args) == 2
    assert "no lock file" in capsys.readouterr().err
    args = cli("lock", "write", str(root / "nowhere.py"), "--output", lock)
    assert args.func(args) == 1
    assert "cannot hash it" in capsys.readouterr().err


# ---------------------------------------------------------------- discovery
def fake_distribution(root: Path, *, import_name: str, version: str) -> None:
    info = root / f"fakeplug-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakeplug\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{import_name}\n")
    (info / "entry_points.txt").write_text(
        f"[plugbox.plugins]\ngreeter = {import_name}.greet:GreetPlugin\n"
        f"shouter = {import_name}.shout [loud]\n\n"
        f"[console_scripts]\nfakeplug = {import_name}.cli:main\n"
    )


def test_discovery_reads_metadata_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_distribution(tmp_path, import_name="fakeplug_missing", version="1.2.3")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover()
    mine = [d for d in found if d.dist_name == "fakeplug"]
    assert [(d.name, d.ref, d.dist_version) for d in mine] == [
        ("greeter", "fakeplug_missing.greet:GreetPlugin", "1.2.3"),
        ("shouter", "fakeplug_missing.shout", "1.2.3"),
    ]
    assert "fakeplug_missing" not in sys.modules  # (it does not even exist)
    assert discover("no.such.group") == []


async def test_a_discovered_plugin_loads_in_a_worker_with_its_distribution_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = shared_dir(tmp_path)
    fake_distribution(root, import_name="fakeplug_pkg", version="1.2.3")
    write(root / "fakeplug_pkg" / "__init__.py", "")
    write(
        root / "fakeplug_pkg" / "greet.py",
        """\
        class GreetPlugin:
            name = "greeter"
            version = "1.2.3"

            def ask(self, query, state):
                return f"hello {query}"
    """,
    )
    monkeypatch.syspath_prepend(str(root))
    [entry] = [d for d in discover() if d.name == "greeter" and d.dist_name == "fakeplug"]
    assert "fakeplug_pkg" not in sys.modules
    async with PluginHost(HOOKS) as host:
        info = await host.add(entry.ref, version="~=1.2")
        assert (info.dist_name, info.dist_version) == ("fakeplug", "1.2.3")
        assert (await host.call("ask", query="you", state={})).value == "hello you"
        with pytest.raises(PluginVersionError) as exc:
            await host.add(entry.ref, version=">=2")
        assert exc.value.found == {"declared": "1.2.3", "distribution": "fakeplug 1.2.3"}
        assert "distribution fakeplug '1.2.3'" in str(exc.value)
    assert "fakeplug_pkg" not in sys.modules


async def test_restarts_keep_the_pins(tmp_path: Path) -> None:
    """A plugin changed on disk after it was added does not come back on restart."""
    ref = write(
        shared_dir(tmp_path) / "p.py",
        PLUGIN_V.format(version="1.0", answer="ok").replace(
            'return "ok"', "import os; os._exit(3)"
        ),
    )
    async with PluginHost(HOOKS, on_failure="skip") as host:
        await host.add(
            ref, sha256=integrity.digest(ref), limits=Limits(backoff_initial=0, max_failures=10)
        )
        out = await host.call("ask", query="q", state={})
        assert [f.cause for f in out.failures] == ["crashed"]
        write(tmp_path / "p.py", PLUGIN_V.format(version="1.0", answer="evil"))
        out = await host.call("ask", query="q", state={})
        assert out.value is None and "integrity check failed (host)" in out.failures[0].detail
