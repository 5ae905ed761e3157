"""A worker's scratch directory on disk (where it gets no private tmpfs): named for its
host, removed whatever modes the plugin left in it, and swept once its host is dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile

PREFIX = "plugbox-scratch-"
_O_PATH = getattr(os, "O_PATH", 0)
#: whether this process has swept the temporary directory (``sweep_stale``) yet
_swept: list[bool] = []


class OwnedScratch:
    """A scratch directory plugbox made for one worker: ``PREFIX<host pid>-<random>``,
    flock-ed by the host while the worker may use it (so no other host's sweep takes it,
    in whatever pid namespace that host runs). ``remove`` when the worker has ended."""

    def __init__(self, user: str | None) -> None:
        if not _swept:
            _swept.append(True)
            sweep_stale()
        self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        self._lock: int | None = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.geteuid() == 0 and user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.path, entry.pw_uid, entry.pw_gid)

    def remove(self) -> None:
        """Remove the directory (if the worker has not: it does when it mounts a private
        tmpfs instead) and let go of its lock."""
        remove_tree(self.path)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def remove_tree(path: str) -> None:
    """``shutil.rmtree(path)``, also where the plugin left directories without write or
    search permission for their owner (which stop an ordinary user's rmtree): then each
    directory is opened up (mode 0700) and the removal tried again. Directories are
    reached through fds, never by following a symlink."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError:
        try:
            top = os.open(path, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        with contextlib.suppress(OSError, RecursionError):
            _open_up(top)
        shutil.rmtree(path, ignore_errors=True)


def _open_up(handle: int) -> None:
    """chmod 0700 the directory ``handle`` (an O_PATH fd, closed here) and every
    directory beneath it: through /proc/self/fd, the inode the fd holds is changed,
    whatever now sits at its path."""
    try:
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=handle)
    finally:
        os.close(handle)
    try:
        with os.scandir(listing) as entries:
            subdirs = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        for name in subdirs:
            try:
                sub = os.open(
                    name, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=listing
                )
            except OSError:
                continue
            with contextlib.suppress(OSError):
                _open_up(sub)
    finally:
        os.close(listing)


def sweep_stale(directory: str | None = None) -> list[str]:
    """Remove the scratch directories in ``directory`` (the temporary directory) left
    by hosts that died without removing them (SIGKILL): those whose host pid is not a
    live process here and whose lock no live host holds. Returns what was removed."""
    directory = directory or tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(directory) if name.startswith(PREFIX)]
    except OSError:
        return []
    removed = []
    for name in names:
        owner = name[len(PREFIX) :].partition("-")[0]
        if not owner.isdigit() or int(owner) == os.getpid() or _alive(int(owner)):
            continue  # another naming is not ours to judge; a live host keeps its own
        path = os.path.join(directory, name)
        try:
            lock = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            continue  # held: a live host in another pid namespace
        try:
            remove_tree(path)
        finally:
            os.close(lock)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # (EPERM: alive, another user's)
    return True
