"""Launching a plugin's worker: its scratch directory, its Start message, the spawn."""

from __future__ import annotations

import logging
import os

from ..limits import Sandbox
from ..protocol import Start
from ..specs import HookSet
from .launchers import Launcher
from .options import PluginOptions
from .scratch import OwnedScratch
from .tasks import HostTasks
from .worker_process import WorkerProcess


def start_message(
    options: PluginOptions,
    hooks: HookSet,
    scratch: str,
    *,
    standby: bool = False,
    owned: bool = False,
) -> Start:
    """The Start that tells a worker what to load, how to confine itself and what to
    check; with ``standby`` the worker confines itself, sends Confined and waits for
    Resume before it loads the plugin. ``owned``: ``scratch`` is plugbox's, which the
    worker replaces with a private tmpfs where it can."""
    sandbox = options.sandbox
    # the libraries' thread counts from the limits; what Sandbox.env gives overrides them
    env = options.limits.thread_environment() | sandbox.environment(os.environ)
    return Start(
        ref=options.ref,
        config=options.config,
        hooks=hooks.to_worker(),
        limits=options.limits.to_worker(),
        sandbox=sandbox.to_worker(
            scratch,
            env,
            scratch_mb=options.limits.scratch_mb if owned else None,
            # a root host reads any worker's /proc entries (its memory watch does)
            dumpable=os.geteuid() != 0,
        ),
        inline=options.inline,
        sha256=options.sha256,  # checked again on the bytes the worker loads
        distribution=options.distribution or bool(options.pins),
        initialize=options.initialize,
        standby=standby,
        # the plugin's own logger may not exist before its name is known: the level of
        # "plugbox.plugin" decides what workers send at all
        log_level=logging.getLogger("plugbox.plugin").getEffectiveLevel(),
    )


def make_scratch(sandbox: Sandbox) -> tuple[str, OwnedScratch | None]:
    """The worker's scratch directory, and the directory plugbox made for it (None for
    the one ``Sandbox(scratch=...)`` names), to remove after."""
    if sandbox.scratch is not None:
        return sandbox.scratch, None
    owned = OwnedScratch(sandbox.user)
    return owned.path, owned


async def launch_worker(
    options: PluginOptions,
    hooks: HookSet,
    launcher: Launcher,
    tg: HostTasks,
    *,
    label: str,
    logger: logging.Logger,
    standby: bool = False,
) -> WorkerProcess:
    """A new worker for the plugin ``options`` describe, sent its Start (to load the
    plugin, or with ``standby`` to confine itself and wait for Resume). Its scratch
    directory, when made here, is removed when the worker ends."""
    scratch, owned = make_scratch(options.sandbox)
    try:
        spawned = await launcher.spawn(tg)
    except BaseException:
        if owned is not None:
            owned.remove()
        raise
    worker = WorkerProcess(spawned, label=label, limits=options.limits, logger=logger)
    worker.end.scratch = owned
    worker.end.stderr_tail = lambda: worker.stderr.tail
    worker.end.processes = options.sandbox.processes
    start = start_message(options, hooks, scratch, standby=standby, owned=owned is not None)
    worker.start(tg, start)
    return worker
