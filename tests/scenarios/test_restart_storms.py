"""Restart storms: a plugin that crashes on every call, or at every start, is restarted
with a growing backoff and quarantined after ``Limits.max_failures`` failures within
``Limits.failure_window``; then calls fail at once, without starting a worker.

The number of workers started is counted on the host side, by the launcher (a
sandboxed worker cannot be trusted to count itself), and must be exactly what the
policy says: one per call that needed a worker, none while quarantined; a storm never
turns into a retry loop. The backoffs are checked as values, from the reports, against
the documented schedule ``backoff_initial * 2**(n-1)``, capped at ``backoff_max``. The
one time check is a lower bound the host guarantees (a restart never starts before its
backoff has passed), which load can only make easier to meet.

Each test runs a real worker (zygote launcher) on asyncio and trio; the conftest leak
check then verifies no process, zombie or fd was left behind.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginCrashed, PluginQuarantined
from plugbox.host.launchers import SpawnedWorker, ZygoteLauncher
from plugbox.host.tasks import HostTasks
from plugbox.reports import FailureReport

pytestmark = pytest.mark.anyio

STORM = str(Path(__file__).parents[1] / "plugins" / "storm.py")

#: five failures within a minute quarantine; backoffs 0.01, 0.02, 0.04, then capped. No
#: standby workers here, so that every worker the launcher starts is a restart (with
#: them, the storm under the same policy: tests/host/test_standby.py)
LIMITS = Limits(
    max_failures=5, failure_window=60.0, backoff_initial=0.01, backoff_max=0.04, warm_spare=False
)


def schedule(limits: Limits, failures: int) -> list[float]:
    """The backoff after each of ``failures`` failures in a row, per the documented policy."""
    return [
        min(limits.backoff_initial * 2 ** (n - 1), limits.backoff_max)
        for n in range(1, failures + 1)
    ]


def test_the_schedule_under_test_grows_then_hits_its_cap() -> None:
    assert schedule(LIMITS, LIMITS.max_failures) == [0.01, 0.02, 0.04, 0.04, 0.04]


class CountingLauncher(ZygoteLauncher):
    """The zygote launcher, noting when it starts each worker (``time.monotonic``)."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []

    async def spawn(self, tg: HostTasks) -> SpawnedWorker:
        self.starts.append(time.monotonic())
        return await super().spawn(tg)


@pytest.fixture
def shared_scratch() -> Iterator[str]:
    """A scratch directory every worker of a plugin shares (by default each gets its
    own), writable by the account workers drop to."""
    path = tempfile.mkdtemp(prefix="plugbox-storm-")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam(Sandbox().user or "nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    yield path
    shutil.rmtree(path)


async def crash(host: PluginHost, **input_data: str) -> FailureReport:
    with pytest.raises(PluginCrashed) as info:
        await host.call("process", input_data=input_data)
    return info.value.report


async def assert_quarantined(host: PluginHost, launcher: CountingLauncher) -> None:
    """Calls fail at once with PluginQuarantined, and start no worker."""
    started = len(launcher.starts)
    for _ in range(3):
        with pytest.raises(PluginQuarantined) as info:
            await host.call("process", input_data={"do": "echo"})
        assert info.value.report.cause == "quarantined"
        assert f"quarantined after {LIMITS.max_failures} failures" in info.value.report.detail
    assert len(launcher.starts) == started
    assert host.plugins[0].state == "quarantined"


def assert_backoffs_were_waited(launcher: CountingLauncher, failures: list[FailureReport]) -> None:
    """Each restart began no sooner than the backoff the failure before it announced
    (measured from the previous start, which came before that failure)."""
    gaps = [b - a for a, b in itertools.pairwise(launcher.starts)]
    for gap, failure in zip(gaps, failures, strict=False):
        assert gap >= failure.backoff - 1e-3, (gaps, [f.backoff for f in failures])


async def test_a_plugin_crashing_on_every_call_is_quarantined_after_max_failures() -> None:
    launcher = CountingLauncher()
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(STORM, limits=LIMITS)
        assert len(launcher.starts) == 1

        failures = [await crash(host, do="crash") for _ in range(LIMITS.max_failures)]

        assert [(f.cause, f.exit_code) for f in failures] == [("crashed", 3)] * 5
        assert [f.backoff for f in failures] == schedule(LIMITS, LIMITS.max_failures)
        assert [f.restarts for f in failures] == [0, 1, 2, 3, 4]
        assert len({f.pid for f in failures}) == LIMITS.max_failures  # a fresh worker each
        # one worker per call: the first from add(), then one restart per failure but
        # the last (it quarantined the plugin)
        assert len(launcher.starts) == LIMITS.max_failures
        assert [r.cause for r in host.reports] == ["crashed"] * 5 + ["quarantined"]
        assert host.reports[-1].restarts == LIMITS.max_failures - 1
        assert_backoffs_were_waited(launcher, failures)
        await assert_quarantined(host, launcher)

        host.reset("storm")  # the history is forgotten: no wait, and the schedule restarts
        again = await crash(host, do="crash")
        assert again.backoff == LIMITS.backoff_initial
        assert len(launcher.starts) == LIMITS.max_failures + 1
        assert host.plugins[0].state == "stopped"


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("import_exit", "exited with status 5"),
        ("initialize_raise", "RuntimeError: initialize refused: poisoned"),
        ("initialize_exit", "exited with status 6"),
    ],
)
async def test_a_plugin_crashing_at_every_start_is_quarantined_after_max_failures(
    shared_scratch: str, how: str, words: str
) -> None:
    launcher = CountingLauncher()
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(STORM, limits=LIMITS, sandbox=Sandbox(scratch=shared_scratch))
        # the first worker leaves the poison every later start trips on, and dies
        first = await crash(host, do="poison", arg=how)
        assert first.exit_code == 3

        # each call now waits out the backoff, starts a worker, and that start fails
        failures = [first] + [await crash(host, do="echo") for _ in range(LIMITS.max_failures - 1)]

        for failure in failures[1:]:
            assert failure.cause == "crashed" and failure.hook == "process"
            assert words in failure.detail, failure.detail
        assert [f.backoff for f in failures] == schedule(LIMITS, LIMITS.max_failures)
        assert [f.restarts for f in failures] == [0, 1, 2, 3, 4]
        assert len(launcher.starts) == LIMITS.max_failures
        assert [r.cause for r in host.reports] == ["crashed"] * 5 + ["quarantined"]
        assert_backoffs_were_waited(launcher, failures)
        await assert_quarantined(host, launcher)

        host.reset("storm")  # still poisoned: the next start fails again, with no wait
        again = await crash(host, do="echo")
        assert words in again.detail and again.backoff == LIMITS.backoff_initial
        assert len(launcher.starts) == LIMITS.max_failures + 1


async def test_failures_further_apart_than_the_window_never_quarantine() -> None:
    # every restart waits out a backoff longer than the window, so no two failures
    # ever fall within it: the storm goes on, at the capped backoff, one start per call
    limits = Limits(
        max_failures=2,
        failure_window=0.05,
        backoff_initial=0.06,
        backoff_max=0.06,
        warm_spare=False,
    )
    launcher = CountingLauncher()
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(STORM, limits=limits)
        failures = [await crash(host, do="crash") for _ in range(4)]
        assert [f.backoff for f in failures] == [0.06] * 4
        assert [r.cause for r in host.reports] == ["crashed"] * 4
        assert len(launcher.starts) == 4
        assert_backoffs_were_waited(launcher, failures)
        assert (await host.call("process", input_data={"do": "echo"})).value == {"do": "echo"}
        assert len(launcher.starts) == 5 and host.plugins[0].state == "running"


def test_the_backoff_stays_capped_after_any_number_of_failures_in_a_row() -> None:
    # 2 ** 1024 overflows a float: a plugin failing that often in a row (spaced past its
    # failure window, so never quarantined) once made host.call raise OverflowError
    from plugbox.host.options import PluginOptions
    from plugbox.host.supervision import SupervisedPlugin

    limits = Limits(backoff_initial=0.01, backoff_max=2.0)
    plugin = SupervisedPlugin(
        PluginOptions(ref="p", limits=limits),
        specs.PIPELINE,
        launcher=None,
        tg=None,
        record=lambda report: None,
    )  # type: ignore[arg-type]
    for failures, expected in (
        (1, 0.01),
        (2, 0.02),
        (8, 1.28),
        (9, 2.0),
        (1025, 2.0),
        (10**6, 2.0),
    ):
        plugin.failures_in_row = failures
        assert plugin.backoff() == expected
