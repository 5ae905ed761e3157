"""The ``plugbox`` pytest plugin (entry point ``pytest11``: loaded when plugbox is
installed; ``-p no:plugbox`` turns it off).

Fixtures:

- ``plugbox_host``: a factory of open ``PluginHost`` instances on the test's event
  loop (anyio's pytest plugin: asyncio, or trio with an ``anyio_backend`` fixture
  returning ``"trio"``)::

      async def test_survives(plugbox_host):
          host = await plugbox_host(specs.AGENT, on_failure="skip")
          ...

  Every host it made is closed after the test; then the leak check runs.
- ``plugbox_leak_check``: the leak check alone, for tests that open their own hosts:
  after the test, a process descended from the test process, a process left in the
  session of any worker the hosts started (a daemon that escaped the tree), or an fd
  that was not open before fails the test (reported as an error in its teardown, with
  what was left; the leaked processes are killed).

Helpers (``plugbox.testing``): ``each_fault``, ``assert_contained``, ``assert_report``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ..host import PluginHost
from ..specs import PIPELINE, HookSet
from .helpers import LeakCheck

HostFactory = Callable[..., Awaitable[PluginHost]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "plugbox_no_leak_check: skip the plugbox leak check for this test"
    )


@pytest.fixture
def plugbox_leak_check(request: pytest.FixtureRequest) -> Iterator[LeakCheck]:
    """Fails the test if it leaves a process, a worker's descendant or an fd behind."""
    check = LeakCheck.snapshot()
    yield check
    if request.node.get_closest_marker("plugbox_no_leak_check") is None:
        check.verify()


@pytest.fixture
async def plugbox_host(
    plugbox_leak_check: LeakCheck, anyio_backend: Any
) -> AsyncIterator[HostFactory]:
    """``await plugbox_host(hooks=specs.PIPELINE, **PluginHost options)``: an open
    PluginHost, closed after the test (then the leak check runs)."""
    hosts: list[PluginHost] = []

    async def make(hooks: HookSet = PIPELINE, **options: Any) -> PluginHost:
        host = PluginHost(hooks, **options)
        await host.__aenter__()
        hosts.append(host)
        return host

    try:
        yield make
    finally:
        for host in reversed(hosts):
            plugbox_leak_check.note_workers(_worker_pids(host))
            await host.__aexit__(None, None, None)


def _worker_pids(host: PluginHost) -> list[int | None]:
    pids: list[int | None] = [p.pid for p in host.plugins]
    pids += [r.pid for r in host.reports]
    return pids
