"""How a framework proves in CI that its plugin host survives every misbehaving plugin.

The ``plugbox`` pytest plugin is active as soon as plugbox is installed: it gives the
``plugbox_host`` fixture (an open PluginHost on the test's event loop, closed after the
test, then a leak check that fails the test if a worker, a process it started or an fd
survives), ``each_fault`` (one test per fault in ``plugbox.testing.faults``) and
``assert_contained``.

Replace ``run_one_turn`` with your framework's own entry point: the test then checks
that a turn completes while one plugin in the host misbehaves in every way there is.
"""

from __future__ import annotations

from typing import Any

import pytest

from plugbox import PluginHost, specs
from plugbox.testing import Fault, assert_contained, each_fault

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # add "trio" if your framework runs on it


class GoodPlugin:
    """Stands for your framework's real plugins: defined inline, sent by value."""

    name = "good"

    def before_model(self, request: dict[str, Any]) -> None:
        request.setdefault("tags", []).append("seen-by-good")


async def run_one_turn(host: PluginHost) -> dict[str, Any]:
    """Your framework's code: here, one model turn through the AGENT hooks."""
    request: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    outcome = await host.call("before_model", request=request, context={})
    return {"request": request, "failures": outcome.failures}


@each_fault
async def test_a_turn_survives(plugbox_host: Any, fault: Fault) -> None:
    host = await plugbox_host(specs.AGENT, on_failure="skip")
    await fault.add_to(host, hooks=["before_model"])  # the fault goes first
    await host.add(GoodPlugin)
    turn = await run_one_turn(host)
    assert turn["request"]["tags"] == ["seen-by-good"]  # the good plugin still ran
    if fault.cause is None:
        assert not turn["failures"]
    else:
        (report,) = turn["failures"]
        await assert_contained(
            report,
            cause=fault.causes,
            host=host,
            signal=fault.signal,
            exit_code=fault.exit_code,
            exc_type=fault.exc_type,
        )
