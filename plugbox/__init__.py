"""plugbox: run untrusted plugins in sandboxed child processes.

The public names are imported lazily, so that ``plugbox.worker`` (which runs inside the
sandbox) does not pull in the host's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import errors, specs
    from .discovery import DiscoveredPlugin, discover
    from .errors import (
        LockFileError,
        PlugboxError,
        PluginCPUExceeded,
        PluginCrashed,
        PluginFailure,
        PluginIntegrityError,
        PluginLoadError,
        PluginMemoryExceeded,
        PluginProtocolError,
        PluginQuarantined,
        PluginRaised,
        PluginTimeout,
        PluginVersionError,
    )
    from .host import PluginHost, PluginInfo, SyncPluginHost
    from .host.inspect import verify_lock, write_lock
    from .limits import Limits, Sandbox
    from .reports import FailureCounts, FailureReport, Outcome
    from .specs import HookSet, HookSpec
    from .trust.lock import Lock, read_lock

    __version__: str

_ERRORS = (
    "LockFileError",
    "PlugboxError",
    "PluginCPUExceeded",
    "PluginCrashed",
    "PluginFailure",
    "PluginIntegrityError",
    "PluginLoadError",
    "PluginMemoryExceeded",
    "PluginProtocolError",
    "PluginQuarantined",
    "PluginRaised",
    "PluginTimeout",
    "PluginVersionError",
)

_LAZY = {
    "PluginHost": ".host",
    "PluginInfo": ".host",
    "SyncPluginHost": ".host",
    "DiscoveredPlugin": ".discovery",
    "discover": ".discovery",
    "Lock": ".trust.lock",
    "read_lock": ".trust.lock",
    "verify_lock": ".host.inspect",
    "write_lock": ".host.inspect",
    "Limits": ".limits",
    "Sandbox": ".limits",
    "FailureCounts": ".reports",
    "FailureReport": ".reports",
    "Outcome": ".reports",
    "HookSet": ".specs",
    "HookSpec": ".specs",
    "errors": ".errors",
    "specs": ".specs",
    **dict.fromkeys(_ERRORS, ".errors"),
}

__all__ = [
    "DiscoveredPlugin",
    "FailureCounts",
    "FailureReport",
    "HookSet",
    "HookSpec",
    "Limits",
    "Lock",
    "LockFileError",
    "Outcome",
    "PlugboxError",
    "PluginCPUExceeded",
    "PluginCrashed",
    "PluginFailure",
    "PluginHost",
    "PluginInfo",
    "PluginIntegrityError",
    "PluginLoadError",
    "PluginMemoryExceeded",
    "PluginProtocolError",
    "PluginQuarantined",
    "PluginRaised",
    "PluginTimeout",
    "PluginVersionError",
    "Sandbox",
    "SyncPluginHost",
    "__version__",
    "discover",
    "errors",
    "read_lock",
    "specs",
    "verify_lock",
    "write_lock",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read once, when asked: a worker never asks
        from importlib.metadata import version

        globals()[name] = value = version("plugbox")
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugbox' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__)
    found = mod if name in ("errors", "specs") else getattr(mod, name)
    globals()[name] = found
    return found


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
