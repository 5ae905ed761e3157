"""Registering a plugin: the pins ``host.add`` holds it to (version, sha256, a lock
file's entry) and the ``PluginInfo`` the host reports of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import PluginLoadError
from ..trust.lock import Lock
from ..trust.pins import VersionPin
from .supervision import SupervisedPlugin


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A registered plugin as the host knows it."""

    name: str
    version: str
    ref: str
    hooks: tuple[str, ...]
    pid: int | None
    state: Literal["running", "stopped", "quarantined", "closed"]
    restarts: int
    calls: int
    failures: int
    problems: tuple[str, ...]
    layers: dict[str, bool]
    dist_name: str = ""
    dist_version: str = ""
    sha256: str | None = None


def plugin_info(p: SupervisedPlugin) -> PluginInfo:
    """What the host reports of plugin ``p`` now."""
    state: Literal["running", "stopped", "quarantined", "closed"]
    if p.closed:
        state = "closed"
    elif p.quarantine is not None:
        state = "quarantined"
    elif p.worker is not None and p.worker.alive:
        state = "running"
    else:
        state = "stopped"
    return PluginInfo(
        name=p.name,
        version=p.version,
        ref=p.options.ref,
        hooks=tuple(p.hooks),
        pid=p.worker.pid if p.worker else None,
        state=state,
        restarts=p.restarts,
        calls=p.calls,
        failures=len(p.recent_failures),
        problems=tuple(p.problems),
        layers=dict(p.layers),
        dist_name=p.dist_name,
        dist_version=p.dist_version,
        sha256=p.sha256,
    )


@dataclass(frozen=True, slots=True)
class Pins:
    """What a plugin is held to: version pins, its code's sha256, the lock's name."""

    versions: tuple[VersionPin, ...]
    sha256: str | None
    locked_name: str | None


def resolve_pins(
    ref: str, inline: bool, version: str | None, sha256: str | None, lock: Lock | None
) -> Pins:
    """The pins of ``host.add(ref, version=, sha256=)`` under ``lock`` (the call's or the
    host's). PluginLoadError for a reference the lock does not list, or an inline class
    pinned to a digest; ValueError for a malformed sha256 or one the lock contradicts."""
    versions = [VersionPin(version)] if version is not None else []
    digest = _check_sha256(sha256) if sha256 is not None else None
    if inline and (digest is not None or lock is not None):
        raise PluginLoadError(
            ref,
            "an inline plugin (a class object) cannot be pinned "
            "to a sha256 or a lock file: reference it by file "
            "or module",
        )
    if lock is None:
        return Pins(tuple(versions), digest, None)
    entry = lock.entry_for(ref)
    where = lock.path or "the lock"
    if entry is None:
        listed = ", ".join(e.ref for e in lock.entries) or "none"
        raise PluginLoadError(ref, f"not listed in {where} (it lists: {listed})")
    if digest is not None and digest != entry.sha256:
        raise ValueError(
            f"sha256={digest} contradicts {where}, which pins {ref!r} to {entry.sha256}"
        )
    versions.append(entry.pin(where))
    return Pins(tuple(versions), entry.sha256, entry.name)


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(f"sha256 must be 64 hex digits, not {value!r}")
    return value.lower()


__all__ = ["Pins", "PluginInfo", "plugin_info", "resolve_pins"]
