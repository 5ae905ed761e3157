"""Fault plugins: one per way a plugin can misbehave, for crash-injection tests in CI.

Each plugin class here is an ordinary plugin, referenced like any other::

    await host.add("plugbox.testing.faults:SegfaultPlugin",
                   config={"hooks": ["process"], "after": 2})

and each ``FAULTS`` entry (a ``Fault``) says what the host must report for it: the
``cause`` of the ``FailureReport`` (None: the call succeeds), with the ``limits`` and
``sandbox`` under which that cause is the true one.

Configuration (``config``, handed to ``initialize``), common to every fault:

- ``hooks`` (or ``hook``): the hook names the plugin implements; every one misbehaves.
  Default ``["process"]`` (``specs.PIPELINE``); ``Fault.add_to(host)`` passes every hook
  of the host's spec. ``"initialize"`` among them misbehaves while loading (the host's
  ``add`` raises ``PluginLoadError``, with a report when the worker died).
- ``after``: how many calls (to any of those hooks) are answered normally (None, so a
  chain goes on unchanged) before the fault strikes; default 0.
- ``times``: how many calls misbehave from then on; default every one. The count is
  per worker: a worker restarted after a crash starts again from zero.
- ``async``: install ``async def`` hooks instead of plain ones (for ``kind="async"``).
- ``name``: the plugin's name (default ``fault-<kind>``), to add one fault twice.
- fault-specific amounts, listed on each class (``mb``, ``seconds``, ``code``...).

The plugins live in ``crash_faults`` and ``resource_faults`` on the base class in
``fault_plugin``; the table in ``fault_catalogue``. This module is imported inside
workers: it uses the standard library only.
"""

from __future__ import annotations

from .crash_faults import (
    AbortPlugin,
    ChannelPlugin,
    ExitPlugin,
    FaultError,
    OversizePlugin,
    RaisePlugin,
    RecursionPlugin,
    SegfaultPlugin,
    UnserializablePlugin,
)
from .fault_catalogue import FAULTS, Fault
from .fault_plugin import CanaryPlugin, FaultPlugin
from .resource_faults import (
    CpuSpinCPlugin,
    CpuSpinPlugin,
    FdExhaustionPlugin,
    FloodPlugin,
    ForkBombPlugin,
    HugeFilePlugin,
    IgnoreSigtermPlugin,
    MemoryBombPlugin,
    SigstopPlugin,
    SleepPlugin,
    ThreadBombPlugin,
)

__all__ = [
    "FAULTS",
    "AbortPlugin",
    "CanaryPlugin",
    "ChannelPlugin",
    "CpuSpinCPlugin",
    "CpuSpinPlugin",
    "ExitPlugin",
    "Fault",
    "FaultError",
    "FaultPlugin",
    "FdExhaustionPlugin",
    "FloodPlugin",
    "ForkBombPlugin",
    "HugeFilePlugin",
    "IgnoreSigtermPlugin",
    "MemoryBombPlugin",
    "OversizePlugin",
    "RaisePlugin",
    "RecursionPlugin",
    "SegfaultPlugin",
    "SigstopPlugin",
    "SleepPlugin",
    "ThreadBombPlugin",
    "UnserializablePlugin",
]
