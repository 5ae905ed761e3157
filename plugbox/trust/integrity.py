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
to check each file again as the import system reads it, and runs nothing the digest
did not cover (``guard_source_loads``): no bytecode (caches are never read, and a
sourceless ``.pyc`` is refused), and extension modules loaded from the checked bytes.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any

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


#: memfd_create's flag for a memfd that may be mapped executable (Linux 6.3+, where
#: the vm.memfd_noexec sysctl may make memfds without it non-executable)
_MFD_EXEC = 0x0010


def _exec_memfd() -> int | None:
    """A new memfd that may be sealed and mapped executable; None where there is none
    (not Linux, or executable memfds refused), for a private file instead."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return None
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    for extra in (_MFD_EXEC, 0):
        try:
            return int(memfd_create("plugbox-extension", flags | extra))
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a kernel before the flag
                return None
    return None


def _checked_copy(path: str) -> tuple[str, str, int | None]:
    """The bytes of ``path``, read once, in a copy no other process can change: a sealed
    memfd (elsewhere, a private temporary file). Returns the copy's path, the sha256 of
    its bytes, and the memfd to keep open while the copy is in use (None for a file)."""
    import hashlib

    h = hashlib.sha256()
    fd = _exec_memfd()
    memfd = fd is not None
    if fd is not None:
        copy = f"/proc/self/fd/{fd}"
    else:
        import tempfile

        fd, copy = tempfile.mkstemp(suffix="-" + os.path.basename(path))
    try:
        with open(path, "rb") as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        if not memfd:
            os.close(fd)
            return copy, h.hexdigest(), None
        import fcntl

        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        if not memfd:
            os.unlink(copy)
        os.close(fd)
        raise
    return copy, h.hexdigest(), fd


def guard_source_loads(
    manifest: dict[str, str], dirs: tuple[str, ...] | list[str], *, ref: str
) -> None:
    """From now on, the import system runs nothing from ``dirs`` but the bytes that were
    hashed (worker side; closes the gap between the check and the import).

    ``manifest`` maps real paths to sha256s. Every file the import system reads from
    ``dirs`` (or names in ``manifest``) must be in it with the same digest, or the
    import raises ``PluginIntegrityError`` for plugin ``ref``: a source changed after
    the check, and a sourceless ``.pyc`` (the digest leaves bytecode out) are refused.
    Bytecode caches of those sources are never read, since a cache can stand in for its
    source. An extension module is read once into a sealed copy, hashed there, and
    loaded from that copy, so the bytes the dynamic loader maps are the ones checked.
    """
    import hashlib
    from importlib.machinery import ExtensionFileLoader, SourceFileLoader, SourcelessFileLoader

    roots = tuple(os.path.realpath(d) + os.sep for d in dirs)
    original_get_data = SourceFileLoader.get_data  # FileLoader's, which both inherit
    original_create = ExtensionFileLoader.create_module
    kept: list[int] = []  # memfds of loaded extensions: each copy's path stays unique

    def covered(path: str) -> str | None:
        real = os.path.realpath(path)
        return real if real in manifest or real.startswith(roots) else None

    def check(real: str, actual: str) -> None:
        expected = manifest.get(real)
        if expected == actual:
            return
        if expected is not None:
            what = f"{real} (changed after the check)"
        elif real.endswith(_SKIP_SUFFIXES):
            what = f"{real} (bytecode, which the digest does not cover: never loaded)"
        else:
            what = f"{real} (not in the checked tree)"
        raise PluginIntegrityError(
            ref, expected or "(not covered)", actual, checked_by="worker", what=what
        )

    def get_data(self: Any, path: str) -> bytes:
        if (
            isinstance(self, SourceFileLoader)
            and path.endswith(_SKIP_SUFFIXES)
            and covered(self.path) is not None
        ):
            raise OSError(f"the bytecode cache of a checked source is not read: {path}")
        data: bytes = original_get_data(self, path)
        real = covered(path)
        if real is not None:
            check(real, hashlib.sha256(data).hexdigest())
        return data

    def create_module(self: ExtensionFileLoader, spec: Any) -> Any:
        real = covered(self.path)
        if real is None:
            return original_create(self, spec)
        import _imp

        try:
            copy, actual, fd = _checked_copy(self.path)
        except OSError as exc:
            raise ImportError(
                f"cannot copy extension module {real} to load the checked bytes: {exc}",
                name=spec.name,
            ) from None
        try:
            check(real, actual)
            module = _imp.create_dynamic(_Origin(spec.name, copy))  # type: ignore[arg-type]
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        finally:
            if fd is None:
                os.unlink(copy)
        if fd is not None:
            kept.append(fd)
        if getattr(module, "__file__", None) == copy:
            module.__file__ = spec.origin
        return module

    SourceFileLoader.get_data = get_data  # type: ignore[method-assign]
    SourcelessFileLoader.get_data = get_data  # type: ignore[method-assign]
    ExtensionFileLoader.create_module = create_module  # type: ignore[method-assign]


@dataclass(frozen=True)
class _Origin:
    """What ``_imp.create_dynamic`` reads of a spec: the init function's module name,
    and the file to load."""

    name: str
    origin: str
