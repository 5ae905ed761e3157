"""Where a write would land, told before the kernel is asked: within the paths the
worker may write (its scratch directory) or outside them, where Landlock refuses it."""

from __future__ import annotations

import os

#: pseudo-filesystems and devices: their writes are the kernel's to answer
NOT_JUDGED = ("/dev/", "/proc/", "/sys/")


class WritablePaths:
    """The paths Landlock lets the worker write (symbolic links resolved), and
    whether a path lies outside all of them."""

    def __init__(self, paths: list[str]) -> None:
        self.roots = tuple(sorted({os.path.realpath(p) for p in paths if p}))
        #: the first path given: the scratch directory, named in a refusal
        self.named = os.path.realpath(paths[0]) if paths and paths[0] else None
        self.prefixes = tuple(r.rstrip("/") + "/" for r in self.roots)

    def within(self, path: str) -> bool:
        """Whether the absolute, normalized ``path`` is a writable path or beneath one,
        or in a pseudo-filesystem or device, which is never judged here."""
        return path.startswith(self.prefixes) or path in self.roots or path.startswith(NOT_JUDGED)

    def outside(self, path: object, dir_fd: int | None) -> str | None:
        """``path`` made absolute, if it lies outside every writable path, also once
        symbolic links are resolved; None if within one, or if it cannot be told (a
        relative path of ``open``, whose ``dir_fd`` its audit event leaves out)."""
        if type(path) is str and path.startswith(self.prefixes) and "/." not in path:
            return None  # the usual write: plainly in the scratch directory
        full = absolute(path, dir_fd)
        if full is None or self.within(full):
            return None
        parent = os.path.realpath(os.path.dirname(full))
        if self.within(os.path.realpath(full)) or self.within(
            os.path.join(parent, os.path.basename(full))
        ):
            return None
        return full


def absolute(path: object, dir_fd: int | None) -> str | None:
    """``path`` (str, bytes or path-like) as an absolute, normalized str: a relative one
    taken from ``dir_fd`` (an fd, or below 0 for the cwd); None for an fd, or for a
    relative path when ``dir_fd`` is None (unknown)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    elif not isinstance(path, str):
        if isinstance(path, int) or not hasattr(path, "__fspath__"):
            return None
        path = os.fsdecode(os.fspath(path))
    if not path.startswith("/"):
        if dir_fd is None:
            return None
        try:
            base = os.getcwd() if dir_fd < 0 else os.readlink(f"/proc/self/fd/{dir_fd}")
        except OSError:
            return None
        path = f"{base}/{path}"
    return os.path.normpath(path)


def open_would_reach(path: str, flags: int) -> bool:
    """Whether the kernel would come to refuse this open of ``path`` for writing,
    rather than fail it first (no such file, or a file that exists under O_EXCL)."""
    if os.path.exists(path):
        return not (flags & os.O_CREAT and flags & os.O_EXCL)
    return bool(flags & os.O_CREAT) and os.path.isdir(os.path.dirname(path))


def would_make(path: str) -> bool:
    """Whether making ``path`` would get as far as the sandbox: it does not exist
    (else EEXIST, which os.makedirs(exist_ok=True) relies on) and its directory does
    (else ENOENT)."""
    return not os.path.lexists(path) and os.path.isdir(os.path.dirname(path))


def creation_refused(path: str) -> bool:
    """Whether an EACCES on ``path`` can only be the sandbox refusing to make it: the
    file is not there (reading or running a missing file is ENOENT, not EACCES), and
    file permissions let it be made in its directory (``os.access`` asks them alone).
    An EACCES on a file that exists may be a refused read or run: not told here."""
    try:
        return not os.path.lexists(path) and os.access(os.path.dirname(path), os.W_OK | os.X_OK)
    except (OSError, ValueError):
        return False
