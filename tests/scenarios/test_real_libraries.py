"""pydantic and httpx plugins at the default limits and sandbox: they load, validate and
call as their authors wrote them, and answer what they computed.

numpy, scipy and pandas are in test_real_memory.py, async SDKs in test_real_async.py,
subprocess and multiprocessing in test_real_devices.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugbox import PluginHost
from plugbox.specs import HookSet, HookSpec

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
PYDANTIC = f"{PLUGINS / 'real_libraries.py'}:ValidatingPlugin"
HTTPX = f"{PLUGINS / 'real_libraries.py'}:WeatherPlugin"
SPECS = HookSet("real", [HookSpec(name="compute", args=("what", "arg"), mode="first_result")])


async def compute(ref: str, steps: list[tuple[str, Any]]) -> list[Any]:
    """The values ``ref``'s plugin returns for ``steps`` under the default limits."""
    async with PluginHost(SPECS) as host:
        await host.add(ref)
        values = [(await host.call("compute", what=w, arg=a)).value for w, a in steps]
        assert host.reports == []
        return values


async def test_a_pydantic_model_validates_in_a_plugin() -> None:
    good = {"tool": "search", "arguments": {"limit": "5"}}
    bad = {"tool": "", "arguments": {"limit": "many"}, "retries": 9}
    valid, invalid, schema = await compute(
        PYDANTIC, [("validate", good), ("validate", bad), ("schema", None)]
    )
    assert valid == {"tool": "search", "arguments": {"limit": 5}, "retries": 0}
    assert invalid == {"errors": ["tool", "arguments.limit", "retries"]}
    assert schema == ["arguments", "retries", "tool"]


async def test_an_httpx_client_made_at_load_serves_every_call() -> None:
    assert await compute(HTTPX, [("now", "Oslo"), ("now", "Lisbon")]) == [
        {"city": "Oslo", "celsius": 12},
        {"city": "Lisbon", "celsius": 18},
    ]
