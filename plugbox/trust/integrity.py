"""Integrity digests of plugin code, computed without importing it.

Stdlib only and free of plugin code, so both sides use it: the host checks a pinned
``sha256`` before it starts a worker, and the worker checks it again on the bytes it is
about to load (see ``plugbox.worker.bootstrap``).

What is hashed, exactly (``digest(ref)``; the hex sha256 is lower case):

- A file reference (``path/to/plugin.py[:Class]``; a reference is a file when it ends
  with ``.py`` or contains a path separator, as the loader decides): sha256 of the
  file's bytes (``sha256sum path/to/plugin.py`` gives the same digest).
- A module reference (``package.module[:Class]``): the code of its *top-level* name,
  since importing ``package.module`` runs ``package/__init__.py`` and whatever
  ``module`` imports beside it. The top-level name is located as the import system
  would, without importing anything: ``importlib.util.find_spec`` of the top-level name
  only (a top-level spec executes no package code). A single-file module
  (``mod.py``, or an extension module) hashes like a file reference. A package hashes
  as a tree: every regular file under the package directory, following symbolic links
  (each real directory once), except ``__pycache__`` directories and ``*.pyc`` /
  ``*.pyo`` files; each file is named by its path relative to the directory that holds
  the package, with ``/`` separators (so it starts with ``package/``); files are taken
  in order of those names (code point order), and the digest is the sha256 of, for
  each file in turn, ``name`` encoded as UTF-8, a NUL byte, the file's size in bytes as
  ASCII decimal, a NUL byte, then the file's bytes. A namespace package hashes each of
  its directories this way, one after another in search order.

``tree_manifest`` gives the per-file sha256s behind a tree digest; the worker uses them
to check each source file again as it imports it (``guard_source_loads``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import PluginIntegrityError

__all__ = [
    "Located",
    "digest",
    "file_digest",
    "guard_source_loads",
    "locate",
    "split_ref",
    "tree_digest",
    "tree_manifest",
]

_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Located:
    """Where a reference's code is: one ``file``, or the ``dirs`` of a package."""

    ref: str
    file: str | None = None
    dirs: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """'file /a/b.py' or 'package directory /a/pkg'."""
        if self.file is not None:
            return f"file {self.file}"
        return "package director" + ("y " if len(self.dirs) == 1 else "ies ") + ", ".join(self.dirs)


def split_ref(ref: str) -> tuple[str, bool]:
    """(the file or module part of ``ref``, whether it is a file), as the loader splits it."""
    target = ref
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isidentifier() and head:
        target = head
    return target, target.endswith(".py") or os.sep in target


def locate(ref: str) -> Located:
    """Find the code behind ``ref`` without importing it; LookupError if it cannot."""
    target, is_file = split_ref(ref)
    if is_file:
        return Located(ref=ref, file=os.path.abspath(target))
    top = target.split(".")[0]
    if not top.isidentifier():
        raise LookupError(f"{target!r} is neither a .py file nor a dotted module name")
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)  # a top-level name: no package code runs
    except (ImportError, ValueError) as exc:
        raise LookupError(f"cannot locate {top!r}: {exc}") from None
    if spec is None:
        raise LookupError(f"no module named {top!r} on the import path")
    search = spec.submodule_search_locations
    if search is not None:
        dirs = tuple(os.path.abspath(d) for d in search)
        if not dirs:
            raise LookupError(f"package {top!r} has no directory to hash")
        return Located(ref=ref, dirs=dirs)
    if spec.origin is None or not spec.has_location or not os.path.isfile(spec.origin):
        raise LookupError(
            f"module {top!r} is not a file on disk (origin: {spec.origin}); it cannot be hashed"
        )
    return Located(ref=ref, file=os.path.abspath(spec.origin))


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (hex)."""
    import hashlib  # not at the top: workers that check no hash never load OpenSSL

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _tree_files(directory: str) -> list[tuple[str, str]]:
    """(name, path) of every file hashed under ``directory``, sorted by name."""
    base = os.path.basename(os.path.normpath(directory))
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for root, dirnames, filenames in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop, or a directory reached twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        rel_root = os.path.relpath(root, directory)
        for name in filenames:
            if name.endswith(_SKIP_SUFFIXES):
                continue
            path = os.path.join(root, name)
            if not os.path.isfile(path):  # a dangling link, a fifo, a socket
                continue
            rel = name if rel_root == "." else os.path.join(rel_root, name)
            out.append((base + "/" + rel.replace(os.sep, "/"), path))
    out.sort()
    return out


def tree_manifest(dirs: tuple[str, ...] | list[str]) -> tuple[str, dict[str, str]]:
    """The tree digest of package directories and the sha256 of each file in it
    (keyed by the file's real path)."""
    import hashlib

    h = hashlib.sha256()
    manifest: dict[str, str] = {}
    for directory in dirs:
        for name, path in _tree_files(directory):
            with open(path, "rb") as f:
                data = f.read()
            h.update(f"{name}\0{len(data)}\0".encode())
            h.update(data)
            manifest[os.path.realpath(path)] = hashlib.sha256(data).hexdigest()
    return h.hexdigest(), manifest


def tree_digest(dirs: tuple[str, ...] | list[str]) -> str:
    """The tree digest of package directories (see the module docstring)."""
    return tree_manifest(dirs)[0]


def digest(ref: str) -> str:
    """The sha256 of the code behind ``ref``, found and read without importing it.

    LookupError if the code cannot be located, OSError if it cannot be read.
    """
    located = locate(ref)
    if located.file is not None:
        return file_digest(located.file)
    return tree_digest(located.dirs)


def guard_source_loads(
    manifest: dict[str, str], dirs: tuple[str, ...] | list[str], *, ref: str
) -> None:
    """From now on, refuse to import source from ``dirs`` unless its bytes are the ones
    that were hashed (worker side; closes the gap between the check and the import).

    Every source file read by the import system that is in ``manifest`` or under
    ``dirs`` must be in ``manifest`` (real path -> sha256) with the same digest, or the
    import raises ``PluginIntegrityError`` for plugin ``ref``. Bytecode caches next to
    the sources are never read: set ``sys.pycache_prefix`` to an empty directory too.
    """
    import hashlib
    from importlib.machinery import SourceFileLoader

    roots = tuple(os.path.realpath(d) + os.sep for d in dirs)
    original = SourceFileLoader.get_data

    def get_data(self: SourceFileLoader, path: str) -> bytes:
        data = original(self, path)
        real = os.path.realpath(path)
        if real in manifest or (real.startswith(roots) and not real.endswith(_SKIP_SUFFIXES)):
            expected = manifest.get(real, "(not in the checked tree)")
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise PluginIntegrityError(
                    ref,
                    expected,
                    actual,
                    checked_by="worker",
                    what=f"{real} (changed after the check)",
                )
        return data

    SourceFileLoader.get_data = get_data  # type: ignore[method-assign,assignment]
