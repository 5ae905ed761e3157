"""A plugin's standby worker: forked and confined ahead of need, resumed by a restart."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import anyio

from ..trust import integrity
from .tasks import HostTasks
from .worker_process import WorkerProcess


class Standby:
    """One plugin's standby worker (``Limits.warm_spare``): forked, confined and
    waiting, none of the plugin's code run in it, so that the next restart only loads
    the plugin. One that read an older version of a file plugin is not used."""

    def __init__(
        self,
        ref: str,
        *,
        inline: bool,
        launch: Callable[[], Awaitable[WorkerProcess]],
        needed: Callable[[], bool],
        tg: HostTasks,
    ) -> None:
        self.ref = ref
        #: a class serialized by value has no file to go stale
        self.inline = inline
        self._launch = launch
        #: whether the plugin may still use one (not closed, not quarantined)
        self._needed = needed
        self.tg = tg
        #: the standby worker, once forked (confined or about to be)
        self.worker: WorkerProcess | None = None
        #: set while one is being forked
        self.launching: anyio.Event | None = None
        #: the plugin's file as it was when the standby worker read it
        self._source: tuple[int, ...] | None = None
        #: set to have ``_maker`` make one, with the name and logger ``schedule`` gave
        self._wake: anyio.Event | None = None
        self._asked: tuple[str, logging.Logger] = ("", logging.getLogger(__name__))

    def schedule(self, name: str, logger: logging.Logger) -> None:
        """Start a standby worker in the background, unless there is one or one is
        being made, or the plugin needs none. The first call starts the task that makes
        them; later ones only wake it (starting a task takes a tenth of a millisecond
        of the call that asks, the first call after a restart, whose caller waits)."""
        if self.worker is not None or self.launching is not None or not self._needed():
            return
        self.launching = anyio.Event()
        self._asked = (name, logger)
        if self._wake is None:
            self._wake = anyio.Event()
            self.tg.start_soon(self._maker)
        self._wake.set()

    async def _maker(self) -> None:
        """Make a standby worker each time ``schedule`` asks, while the plugin needs
        them and the host is open."""
        try:
            while True:
                assert self._wake is not None
                await self._wake.wait()
                if not self._needed():
                    return  # closed or quarantined (a reset starts another)
                self._wake = anyio.Event()
                launching = self.launching
                if launching is not None and not launching.is_set():
                    await self._make(launching, *self._asked)
        finally:  # no one waits on a standby that was never begun
            self._wake = None
            launching = self.launching
            if launching is not None and not launching.is_set():
                self.launching = None
                launching.set()

    async def _make(self, launching: anyio.Event, name: str, logger: logging.Logger) -> None:
        try:
            if not self._needed():
                return
            source = self._source_stamp()  # before the worker reads the file
            try:
                worker = await self._launch()
            except Exception as exc:  # the zygote cannot fork: restarts start afresh
                logger.warning("plugin %s: no standby worker: %s", name, exc)
                return
            if not self._needed():
                await _discard(worker)
                return
            self.worker, self._source = worker, source
        finally:
            self.launching = None
            launching.set()

    def drop_soon(self) -> None:
        """Stop the standby worker in the background, if there is one (or one being made)."""
        if self.worker is not None or self.launching is not None:
            self.tg.start_soon(self.drop)

    async def drop(self) -> None:
        """Stop the standby worker, if there is one (or one being made); once the plugin
        needs none, the task that makes them ends too."""
        if self._wake is not None and not self._needed():
            self._wake.set()
        if self.launching is not None:
            await self.launching.wait()
        worker, self.worker = self.worker, None
        if worker is not None:
            await _discard(worker)

    async def take(self, name: str, logger: logging.Logger) -> WorkerProcess | None:
        """The standby worker, if one is confined and ready for the plugin as it now
        is; otherwise None (and a dead or outdated one is disposed of)."""
        if self.launching is not None:  # forking now: a moment from ready
            await self.launching.wait()
        worker, self.worker = self.worker, None
        if worker is None:
            return None
        try:
            confined = await worker.wait_confined()
        except BaseException:
            worker.kill(None)  # taken, then given up: no one else would stop it
            raise
        if confined and self._source_stamp() == self._source:
            return worker
        if worker.alive:  # the plugin's file changed since the standby read it
            logger.info("plugin %s: standby worker discarded: %s changed", name, self.ref)
        else:
            cause, detail, _ = await worker.wait_verdict()
            logger.warning(
                "plugin %s: its standby worker (pid %d) died before it was needed: %s: %s",
                name,
                worker.pid,
                cause,
                detail,
            )
        await _discard(worker)
        return None

    def _source_stamp(self) -> tuple[int, ...] | None:
        """The identity of a file plugin's file (inode, size, times): a standby worker
        read it when it started, and one that read an older file is not used."""
        if self.inline:
            return None
        target, is_file = integrity.split_ref(self.ref)
        if not is_file:
            return None  # a module: imported by name after Resume, so never stale
        try:
            st = os.stat(target)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


async def _discard(worker: WorkerProcess) -> None:
    """Stop a standby worker (none of the plugin's code ran in it) and wait for it."""
    worker.closing = True
    worker.kill(None)
    await worker.wait_verdict()
