"""Making and checking lock files (``plugbox.trust.lock``): each plugin is hashed in the
host, without importing it, then loaded in a sandboxed worker, without calling its
``initialize``, to learn its name and versions."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

import anyio

from ..errors import LockFileError, PluginLoadError
from ..limits import Limits, Sandbox
from ..specs import HookSet
from ..trust import integrity
from ..trust.lock import Lock, LockEntry, LockPath, as_lock
from .host import PluginHost
from .launchers import Launcher
from .options import PluginOptions

__all__ = ["inspect_plugins", "verify_lock", "write_lock"]


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
    return PluginHost(HookSet("lock", []), launcher=launcher)


async def _inspect(
    host: PluginHost, ref: str, limits: Limits | None, sandbox: Sandbox | None
) -> LockEntry:

    digest = await anyio.to_thread.run_sync(_digest_or_load_error, ref)
    plugin = await host.start_unregistered(
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
