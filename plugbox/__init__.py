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
    from .host import PluginHost, PluginInfo, SyncPluginHost
    from .limits import Limits, Sandbox
    from .lockfile import Lock, read_lock, verify_lock, write_lock
    from .reports import FailureReport, Outcome
    from .specs import HookSet, HookSpec

__version__ = "0.1.0"

_LAZY = {
    "PluginHost": ".host",
    "PluginInfo": ".host",
    "SyncPluginHost": ".host",
    "DiscoveredPlugin": ".discovery",
    "discover": ".discovery",
    "Lock": ".lockfile",
    "read_lock": ".lockfile",
    "verify_lock": ".lockfile",
    "write_lock": ".lockfile",
    "Limits": ".limits",
    "Sandbox": ".limits",
    "FailureReport": ".reports",
    "Outcome": ".reports",
    "HookSet": ".specs",
    "HookSpec": ".specs",
    "errors": ".errors",
    "specs": ".specs",
}

__all__ = [
    "DiscoveredPlugin",
    "FailureReport",
    "HookSet",
    "HookSpec",
    "Limits",
    "Lock",
    "Outcome",
    "PluginHost",
    "PluginInfo",
    "Sandbox",
    "SyncPluginHost",
    "discover",
    "errors",
    "read_lock",
    "specs",
    "verify_lock",
    "write_lock",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugbox' has no attribute {name!r}")
    mod = importlib.import_module(module, __name__)
    value = mod if name in ("errors", "specs") else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
