"""``plugbox.lock``: the name, version and hash of every plugin a deployment runs.

The file is JSON (written with sorted keys and one plugin per entry, so it diffs
well)::

    {
      "plugbox_lock": 1,
      "plugins": [
        {"name": "behave", "ref": "tests/plugins/behave.py", "version": "2.1.0",
         "distribution": null, "sha256": "3f1c..."},
        {"name": "logging", "ref": "plugbox.plugins.logging", "version": "1.0.0",
         "distribution": {"name": "plugbox", "version": "0.1.0"}, "sha256": "9ab0..."}
      ]
    }

``version`` is the version the plugin class declares (``""`` if none);
``distribution`` is the installed distribution its module comes from, or null;
``sha256`` is ``plugbox.integrity.digest(ref)``. ``write_lock`` computes the hashes in
the host (reading files, importing nothing) and learns names and versions by loading
each plugin in a sandboxed worker without calling its ``initialize``. ``verify_lock``
does both again and lists every difference. ``PluginHost(lock=...)`` and
``host.add(ref, lock=...)`` refuse a reference the lock does not list and pin the rest
to exactly what it says.

A reference is looked up as written; a file reference also matches the same file
written another way (relative paths are resolved against the current directory).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from . import integrity
from .errors import PlugboxError
from .pins import VersionPin

if TYPE_CHECKING:
    from .host.host import PluginHost
    from .host.launchers import Launcher
    from .limits import Limits, Sandbox

__all__ = [
    "FORMAT_VERSION",
    "Lock",
    "LockEntry",
    "LockFileError",
    "inspect_plugins",
    "read_lock",
    "verify_lock",
    "write_lock",
]

#: the ``plugbox_lock`` field of the files this version writes and reads.
FORMAT_VERSION = 1

LockPath = str | os.PathLike[str]


class LockFileError(PlugboxError):
    """A lock file cannot be read or written (missing, not JSON, wrong shape)."""


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One locked plugin."""

    name: str
    ref: str
    version: str
    sha256: str
    dist_name: str | None = None
    dist_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as it is stored."""
        dist = (
            None
            if self.dist_name is None
            else {"name": self.dist_name, "version": self.dist_version or ""}
        )
        return {
            "name": self.name,
            "ref": self.ref,
            "version": self.version,
            "distribution": dist,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> LockEntry:
        """Parse one stored entry; LockFileError naming ``where`` if malformed."""
        if not isinstance(data, dict):
            raise LockFileError(f"{where}: an entry must be an object, not {data!r}")
        for key in ("name", "ref", "version", "sha256"):
            if not isinstance(data.get(key), str):
                raise LockFileError(
                    f"{where}: entry {data.get('ref', data)!r} needs a string {key!r}"
                )
        dist = data.get("distribution")
        if dist is not None and not (
            isinstance(dist, dict)
            and isinstance(dist.get("name"), str)
            and isinstance(dist.get("version"), str)
        ):
            raise LockFileError(
                f"{where}: entry {data['ref']!r}: 'distribution' must be "
                f'null or {{"name": str, "version": str}}'
            )
        return cls(
            name=data["name"],
            ref=data["ref"],
            version=data["version"],
            sha256=data["sha256"].lower(),
            dist_name=dist["name"] if dist else None,
            dist_version=dist["version"] if dist else None,
        )

    def pin(self, source: str) -> VersionPin:
        """The exact version pin this entry makes."""
        return VersionPin.exact(self.version, self.dist_version if self.dist_name else None, source)


def _same_ref(a: str, b: str) -> bool:
    if a == b:
        return True
    (ta, fa), (tb, fb) = integrity.split_ref(a), integrity.split_ref(b)
    if not (fa and fb):
        return False
    ca, cb = a[len(ta) :], b[len(tb) :]  # ":Class" or ""
    return ca == cb and os.path.abspath(ta) == os.path.abspath(tb)


@dataclass(frozen=True, slots=True)
class Lock:
    """The plugins of a lock file (``read_lock``)."""

    entries: tuple[LockEntry, ...]
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def entry_for(self, ref: str) -> LockEntry | None:
        """The entry for ``ref``, or None if the lock does not list it."""
        for entry in self.entries:
            if _same_ref(entry.ref, ref):
                return entry
        return None

    def to_json(self) -> dict[str, Any]:
        """The lock file's content."""
        return {"plugbox_lock": FORMAT_VERSION, "plugins": [e.to_json() for e in self.entries]}

    def dumps(self) -> str:
        """The lock file's text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"


def read_lock(path: LockPath) -> Lock:
    """Read a lock file; LockFileError saying what is wrong with it."""
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise LockFileError(f"no lock file {where} (write one with 'plugbox lock write')") from None
    except (OSError, ValueError) as exc:
        raise LockFileError(f"cannot read lock file {where}: {exc}") from None
    if not isinstance(data, dict) or "plugins" not in data:
        raise LockFileError(f"{where}: not a plugbox lock file (no 'plugins')")
    if data.get("plugbox_lock") != FORMAT_VERSION:
        raise LockFileError(
            f"{where}: lock format {data.get('plugbox_lock')!r} is not "
            f"supported (this plugbox reads {FORMAT_VERSION})"
        )
    plugins = data["plugins"]
    if not isinstance(plugins, list):
        raise LockFileError(f"{where}: 'plugins' must be a list")
    entries = tuple(LockEntry.from_json(p, where) for p in plugins)
    return Lock(entries=entries, path=where)


def as_lock(lock: Lock | LockPath) -> Lock:
    """A ``Lock`` as it is, or the lock file at a path read."""
    return lock if isinstance(lock, Lock) else read_lock(lock)


async def inspect_plugins(
    refs: Iterable[str],
    *,
    launcher: str | Launcher = "zygote",
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
) -> list[LockEntry]:
    """Hash each plugin (host side, without importing it), then load it in a sandboxed
    worker, without calling ``initialize``, to learn its name and versions.

    The worker is given the hash just computed, so the code it reports on is the code
    that was hashed. Raises ``PluginLoadError`` for a plugin that does not load, and
    ``LockFileError`` when two references give plugins of the same name.
    """
    entries: list[LockEntry] = []
    async with _inspector(launcher) as host:
        for ref in refs:
            entry = await _inspect(host, ref, limits, sandbox)
            clash = next((e for e in entries if e.name == entry.name), None)
            if clash is not None:
                raise LockFileError(
                    f"{ref!r} and {clash.ref!r} are both plugins named "
                    f"{entry.name!r}; a host would refuse the second"
                )
            entries.append(entry)
    return entries


def _inspector(launcher: str | Launcher) -> PluginHost:
    from .host.host import PluginHost
    from .specs import HookSet

    return PluginHost(HookSet("lock", []), launcher=launcher)


async def _inspect(
    host: PluginHost, ref: str, limits: Limits | None, sandbox: Sandbox | None
) -> LockEntry:
    from .host.supervision import PluginOptions
    from .limits import Limits, Sandbox

    digest = await anyio.to_thread.run_sync(_digest_or_load_error, ref)
    plugin = await host._start(
        PluginOptions(
            ref=ref,
            limits=limits or Limits(),
            sandbox=sandbox or Sandbox(),
            sha256=digest,
            distribution=True,
            initialize=False,
        )
    )
    await plugin.close()
    return LockEntry(
        name=plugin.name,
        ref=ref,
        version=plugin.version,
        sha256=digest,
        dist_name=plugin.dist_name or None,
        dist_version=plugin.dist_version if plugin.dist_name else None,
    )


def _digest_or_load_error(ref: str) -> str:
    from .errors import PluginLoadError

    try:
        return integrity.digest(ref)
    except (LookupError, OSError) as exc:
        raise PluginLoadError(ref, f"cannot hash it: {exc}") from None


async def write_lock(
    refs: Iterable[str],
    path: LockPath = "plugbox.lock",
    *,
    launcher: str | Launcher = "zygote",
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
) -> Lock:
    """Lock ``refs``: hash and inspect each (``inspect_plugins``), then write the lock
    file at ``path`` (atomically: a reader sees the old file or the new one)."""
    where = os.fspath(path)
    lock = Lock(
        entries=tuple(
            await inspect_plugins(refs, launcher=launcher, limits=limits, sandbox=sandbox)
        ),
        path=where,
    )
    directory = os.path.dirname(os.path.abspath(where))
    fd, tmp = tempfile.mkstemp(prefix=".plugbox-lock-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(lock.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, where)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return lock


async def verify_lock(
    lock: Lock | LockPath,
    *,
    load: bool = True,
    launcher: str | Launcher = "zygote",
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
) -> list[str]:
    """Every way the plugins on disk differ from the lock; an empty list if none.

    Each plugin's hash is computed again in the host (no import); with ``load`` (the
    default) each plugin whose hash matches is also loaded in a sandboxed worker
    (without ``initialize``) and its name, declared version and distribution compared.
    """
    from .errors import PluginLoadError

    lock = as_lock(lock)
    problems: list[str] = []
    matching: list[LockEntry] = []
    for entry in lock.entries:
        try:
            actual = await anyio.to_thread.run_sync(integrity.digest, entry.ref)
        except (LookupError, OSError) as exc:
            problems.append(f"{entry.ref}: cannot hash it: {exc}")
            continue
        if actual != entry.sha256:
            problems.append(
                f"{entry.ref}: sha256 is {actual}, the lock says {entry.sha256} "
                f"(the plugin's code changed)"
            )
        else:
            matching.append(entry)
    if not load:
        return problems
    async with _inspector(launcher) as host:
        for entry in matching:
            try:
                found = await _inspect(host, entry.ref, limits, sandbox)
            except PluginLoadError as exc:
                problems.append(f"{entry.ref}: does not load: {exc.reason}")
                continue
            problems += _differences(entry, found)
    return problems


def _show_dist(name: str | None, version: str | None) -> str:
    return f"{name} {version}" if name else "none"


def _differences(entry: LockEntry, found: LockEntry) -> list[str]:
    problems = []
    if found.name != entry.name:
        problems.append(f"{entry.ref}: plugin name is {found.name!r}, the lock says {entry.name!r}")
    if found.version != entry.version:
        problems.append(
            f"{entry.ref}: declared version is {found.version!r}, the lock says {entry.version!r}"
        )
    if (found.dist_name, found.dist_version) != (entry.dist_name, entry.dist_version):
        problems.append(
            f"{entry.ref}: distribution is "
            f"{_show_dist(found.dist_name, found.dist_version)}, the lock says "
            f"{_show_dist(entry.dist_name, entry.dist_version)}"
        )
    return problems
