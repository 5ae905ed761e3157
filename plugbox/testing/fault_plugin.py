"""The fault plugins' base class, and the healthy canary built on it.

``FaultPlugin.initialize`` reads the configuration every fault shares (``hooks``,
``after``, ``times``, ``async``, ``name``; see ``plugbox.testing.faults``) and sets
one ``(**kwargs)`` method per configured hook on the instance, since the worker
matches a plugin's hooks to the spec only after ``initialize``. This works for any
``HookSet``, with no hook names baked in. Imported inside workers: stdlib only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

#: how long "forever" is for a fault that sleeps or holds: longer than any deadline
FOREVER = 3600.0


class FaultPlugin:
    """Base of the fault plugins: installs the configured hooks, counts calls, and
    calls ``_strike`` when the fault is due. Subclasses set ``kind`` and ``_strike``."""

    kind = "fault"
    name = "fault"
    version = "1.0.0"

    def initialize(self, config: Mapping[str, Any]) -> None:
        self.config: dict[str, Any] = dict(config)
        hooks = config.get("hooks", config.get("hook", ["process"]))
        self.fault_hooks: list[str] = [hooks] if isinstance(hooks, str) else list(hooks)
        self.after = int(config.get("after", 0))
        times = config.get("times")
        self.times: int | None = None if times is None else int(times)
        self.calls = 0
        self.name = str(config.get("name") or f"fault-{self.kind}")
        use_async = bool(config.get("async", False))
        for hook in self.fault_hooks:
            if hook == "initialize":
                continue
            setattr(self, hook, self._async_hook(hook) if use_async else self._sync_hook(hook))
        if "initialize" in self.fault_hooks:
            self._strike("initialize", {})

    def _sync_hook(self, hook: str) -> Callable[..., Any]:
        def hook_method(**kwargs: Any) -> Any:
            return self._call(hook, kwargs)

        hook_method.__name__ = hook_method.__qualname__ = hook
        return hook_method

    def _async_hook(self, hook: str) -> Callable[..., Any]:
        async def hook_method(**kwargs: Any) -> Any:
            return self._call(hook, kwargs)

        hook_method.__name__ = hook_method.__qualname__ = hook
        return hook_method

    def _call(self, hook: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        n = self.calls - self.after
        if n >= 1 and (self.times is None or n <= self.times):
            return self._strike(hook, args)
        return None

    def _amount(self, key: str, default: Any) -> Any:
        return self.config.get(key, default)

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        raise NotImplementedError


class CanaryPlugin(FaultPlugin):
    """Not a fault: a healthy plugin on the same hooks, to show the host still serves.
    Each call busy-works ``work_ms`` milliseconds (default 0) and returns None (a
    chain goes on unchanged); it holds ``hold_mb`` megabytes (default 0) from
    ``initialize`` on. ``after``/``times`` do not apply."""

    kind = "canary"

    def initialize(self, config: Mapping[str, Any]) -> None:
        super().initialize({**config, "after": 1 << 62})
        self.ballast = b"c" * int(float(config.get("hold_mb", 0)) * (1 << 20))

    def _call(self, hook: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        end = time.perf_counter() + float(self.config.get("work_ms", 0)) / 1000
        while time.perf_counter() < end:
            pass
        return None
