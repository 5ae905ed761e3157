"""Crash-injection kit for CI: fault plugins, a pytest plugin and assertion helpers.

- ``plugbox.testing.faults``: one plugin per misbehaviour and the ``FAULTS`` table of
  the cause the host must report for each (imported in workers: stdlib only).
- ``plugbox.testing.pytest_plugin`` (registered as the ``plugbox`` pytest plugin):
  the ``plugbox_host`` fixture and its leak check.
- ``each_fault``, ``assert_contained``, ``assert_report``, ``LeakCheck`` (from
  ``plugbox.testing.helpers``), imported lazily so that a worker importing the faults
  does not import pytest or the host.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import FAULTS, Fault
    from .helpers import LeakCheck, assert_contained, assert_report, each_fault

_LAZY = {
    "FAULTS": ".faults",
    "Fault": ".faults",
    "LeakCheck": ".helpers",
    "assert_contained": ".helpers",
    "assert_report": ".helpers",
    "each_fault": ".helpers",
}

__all__ = ["FAULTS", "Fault", "LeakCheck", "assert_contained", "assert_report", "each_fault"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugbox.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
