"""Launching a plugin's worker: its scratch directory, its Start message, the spawn."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from ..limits import Sandbox
from ..protocol import Start
from ..specs import HookSet
from .launchers import Launcher
from .options import PluginOptions
from .tasks import HostTasks
from .worker_process import WorkerProcess


def start_message(
    options: PluginOptions, hooks: HookSet, scratch: str, *, standby: bool = False
) -> Start:
    """The Start that tells a worker what to load, how to confine itself and what to
    check; with ``standby`` the worker confines itself, sends Confined and waits for
    Resume before it loads the plugin."""
    sandbox = options.sandbox
    env = {name: os.environ[name] for name in sandbox.env if name in os.environ}
    return Start(
        ref=options.ref,
        config=options.config,
        hooks=hooks.to_worker(),
        limits=options.limits.to_worker(),
        sandbox=sandbox.to_worker(scratch, env),
        inline=options.inline,
        sha256=options.sha256,  # checked again on the bytes the worker loads
        distribution=options.distribution or bool(options.pins),
        initialize=options.initialize,
        standby=standby,
        # the plugin's own logger may not exist before its name is known: the level of
        # "plugbox.plugin" decides what workers send at all
        log_level=logging.getLogger("plugbox.plugin").getEffectiveLevel(),
    )


def make_scratch(sandbox: Sandbox) -> tuple[str, bool]:
    """The worker's scratch directory, and whether it is ours to remove after."""
    if sandbox.scratch is not None:
        return sandbox.scratch, False
    path = tempfile.mkdtemp(prefix="plugbox-scratch-")
    if os.geteuid() == 0 and sandbox.user is not None:
        import pwd

        entry = pwd.getpwnam(sandbox.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path, True


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
        if owned:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    worker = WorkerProcess(spawned, label=label, limits=options.limits, logger=logger)
    worker.end.scratch_to_remove = scratch if owned else None
    worker.start(tg, start_message(options, hooks, scratch, standby=standby))
    return worker
