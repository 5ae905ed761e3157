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
``sha256`` is ``plugbox.trust.integrity.digest(ref)``. This module is the file's data:
reading, writing, matching references. Making and checking one takes a host
(``plugbox.host.inspect``: ``write_lock``, ``verify_lock``). ``PluginHost(lock=...)`` and
``host.add(ref, lock=...)`` refuse a reference the lock does not list and pin the rest
to exactly what it says.

A reference is looked up as written; a file reference also matches the same file
written another way (relative paths are resolved against the current directory).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import LockFileError
from . import integrity
from .pins import VersionPin

__all__ = [
    "FORMAT_VERSION",
    "Lock",
    "LockEntry",
    "LockFileError",
    "LockPath",
    "as_lock",
    "read_lock",
]

#: the ``plugbox_lock`` field of the files this version writes and reads.
FORMAT_VERSION = 1

LockPath = str | os.PathLike[str]


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
