"""The standby worker (``Limits.warm_spare``): once a plugin's worker has died, the
restart leaves one more worker forked, confined and waiting, none of the plugin's code
run in it, and the next restart resumes it instead of starting from nothing.

What is checked: a healthy plugin never gets one; the standby is confined as the serving
worker is and has not loaded the plugin; the next restart is served by that very worker,
whose plugin module was imported after the crash (so nothing of the plugin ran early);
a standby that died meanwhile, or that read a plugin file since changed, is not used and
its end is no plugin failure; ``warm_spare=False`` keeps none; closing the host, even
while a standby is being forked, leaves nothing behind (the leak check in conftest).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from plugbox import Limits, PluginHost, specs
from plugbox.errors import PluginCrashed, PluginQuarantined
from plugbox.host.launchers import SpawnedWorker, ZygoteLauncher
from plugbox.host.supervision import SupervisedPlugin
from plugbox.host.tasks import HostTasks
from plugbox.host.worker_process import WorkerProcess

pytestmark = pytest.mark.anyio

PLUGIN = Path(__file__).parents[1] / "plugins" / "standby.py"
LIMITS = Limits(backoff_initial=0)


def now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@pytest.fixture
def plugin_file(tmp_path: Path) -> str:
    target = tmp_path / "standby.py"
    shutil.copy(PLUGIN, target)
    return str(target)


def supervised(host: PluginHost) -> SupervisedPlugin:
    (plugin,) = host._plugins
    return plugin


async def crash(host: PluginHost) -> None:
    with pytest.raises(PluginCrashed) as info:
        await host.call("process", input_data="exit")
    assert info.value.report.cause == "crashed" and info.value.report.exit_code == 3


async def ready_spare(host: PluginHost) -> WorkerProcess:
    """The standby worker, once it has reported its sandbox."""
    plugin = supervised(host)
    if plugin.standby.launching is not None:
        await plugin.standby.launching.wait()
    spare = plugin.standby.worker
    assert spare is not None, "no standby worker after a restart"
    assert await spare.wait_confined(), "the standby worker died before it was confined"
    return spare


async def restarted_with_standby(host: PluginHost, plugin_file: str) -> WorkerProcess:
    """Add the plugin, crash it and call it again: the restart leaves a standby."""
    await host.add(plugin_file, limits=LIMITS)
    await crash(host)
    await host.call("process", input_data="hello")
    return await ready_spare(host)


async def test_a_restart_leaves_a_standby_and_the_next_restart_resumes_it(plugin_file: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=LIMITS)
        first = (await host.call("process", input_data="hello")).value
        plugin = supervised(host)
        assert plugin.standby.worker is None and plugin.standby.launching is None  # never failed

        await crash(host)
        await host.call("process", input_data="hello")  # a fresh worker, then a standby
        spare = await ready_spare(host)
        assert spare.handshake is None  # the plugin is not loaded in it
        assert spare.confined is not None and spare.confined.layers == plugin.layers
        assert spare is not plugin.worker and spare.alive

        before = now()
        await crash(host)
        second = (await host.call("process", input_data="hello")).value
        assert plugin.worker is spare, "the restart did not use the standby worker"
        # the plugin's module was imported, and initialize ran, after the crash: in the
        # standby worker nothing of the plugin had run before it was needed
        assert second["loaded_at"] > before and second["initialized_at"] > before
        assert first["loaded_at"] < before and second["text"] == "first"
        assert [r.cause for r in host.reports] == ["crashed", "crashed"]
        assert host.plugins[0].restarts == 2

        replacement = await ready_spare(host)  # and the next one is on its way
        assert replacement is not spare


async def test_a_resumed_standby_sends_the_plugins_log_records(
    plugin_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the log handler is set up before the standby waits: the records the plugin logs
    # as it loads (before the Handshake) and in its calls still reach the host
    caplog.set_level(logging.WARNING, logger="plugbox.plugin")
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=LIMITS, config={"log": True})
        await crash(host)
        await host.call("process", input_data="hello")
        spare = await ready_spare(host)
        caplog.clear()
        await crash(host)
        await host.call("process", input_data="log")
        assert supervised(host).worker is spare
        logged = [r.getMessage() for r in caplog.records if r.name == "plugbox.plugin.standby"]
        loaded = [m for m in logged if m.startswith("standby: initialized at ")]
        assert len(loaded) == 1, logged
        stamp = loaded[0].rsplit(" ", 1)[1]
        assert f"standby: called after {stamp}" in logged


async def test_a_standby_that_read_an_older_plugin_file_is_not_used(plugin_file: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        spare = await restarted_with_standby(host, plugin_file)
        text = Path(plugin_file).read_text().replace('TEXT = "first"', 'TEXT = "edited"')
        Path(plugin_file).write_text(text)

        await crash(host)
        out = (await host.call("process", input_data="hello")).value
        assert out["text"] == "edited"  # the file as it is now, in a fresh worker
        assert supervised(host).worker is not spare
        assert not spare.alive and spare.handshake is None
        _, _, death = await spare.wait_verdict()
        assert death.signal == signal.SIGKILL  # discarded by the host
        assert [r.cause for r in host.reports] == ["crashed", "crashed"]


async def test_a_standby_that_died_waiting_is_replaced_and_not_reported(plugin_file: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        spare = await restarted_with_standby(host, plugin_file)
        os.kill(spare.spawned.pid, signal.SIGKILL)  # as the OOM killer might
        await spare.wait_verdict()

        before = now()
        await crash(host)
        out = (await host.call("process", input_data="hello")).value
        assert out["loaded_at"] > before and supervised(host).worker is not spare
        # the standby's end was no failure of the plugin: only the two crashes count
        assert [r.cause for r in host.reports] == ["crashed", "crashed"]
        assert host.plugins[0].failures == 2


async def test_warm_spare_false_keeps_no_standby(plugin_file: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=Limits(backoff_initial=0, warm_spare=False))
        await crash(host)
        await host.call("process", input_data="hello")
        await host.call("process", input_data="hello")  # time for a standby to start
        plugin = supervised(host)
        assert plugin.standby.worker is None and plugin.standby.launching is None


async def test_closing_while_the_standby_is_being_forked_leaves_nothing(plugin_file: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=LIMITS)
        await crash(host)
        await host.call("process", input_data="hello")
        # the standby's launch was started as the call was answered; close at once
    plugin = supervised(host)
    assert plugin.standby.worker is None and plugin.standby.launching is None


class SendLog:
    """Each call the host sends: to which worker, and whether its Handshake was in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[WorkerProcess, str, bool]] = []
        original = WorkerProcess.send_call

        def send_call(worker: WorkerProcess, hook: str, *args: Any) -> int | None:
            self.sent.append((worker, hook, worker.handshake is not None))
            return original(worker, hook, *args)

        monkeypatch.setattr(WorkerProcess, "send_call", send_call)

    def to(self, worker: WorkerProcess) -> list[tuple[str, bool]]:
        return [(hook, handshake_in) for w, hook, handshake_in in self.sent if w is worker]


async def test_the_call_that_resumes_a_standby_is_sent_with_resume_and_answered(
    plugin_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SendLog(monkeypatch)
    async with PluginHost(specs.PIPELINE) as host:
        spare = await restarted_with_standby(host, plugin_file)
        before = now()
        await crash(host)
        out = (await host.call("process", input_data="hello")).value
        assert supervised(host).worker is spare
        # sent before its Handshake came, answered by the plugin loaded after the crash
        assert log.to(spare) == [("process", False)]
        assert out["initialized_at"] > before and out["text"] == "first"
        await host.call("process", input_data="again")
        assert log.to(spare) == [("process", False), ("process", True)]


async def test_a_call_sent_with_resume_fails_as_the_restart_does_and_nothing_is_left(
    plugin_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SendLog(monkeypatch)
    # where the worker (nobody, when the tests run as root) can see it
    visible = Path(tempfile.mkdtemp(prefix="plugbox-test-"))
    visible.chmod(0o755)
    marker = visible / "FAIL_INITIALIZE"
    try:
        await _fail_a_resumed_load(plugin_file, log, marker)
    finally:
        shutil.rmtree(visible, ignore_errors=True)


async def _fail_a_resumed_load(plugin_file: str, log: SendLog, marker: Path) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=LIMITS, config={"fail_if": str(marker)})
        await crash(host)
        await host.call("process", input_data="hello")
        spare = await ready_spare(host)
        await crash(host)
        marker.touch()  # the standby's file is unchanged: only its initialize fails
        with pytest.raises(PluginCrashed) as info:
            await host.call("process", input_data="hello")
        assert log.to(spare) == [("process", False)]  # it was sent, never answered
        assert "restart failed" in info.value.report.detail
        assert f"told to fail by {marker}" in info.value.report.detail
        await spare.wait_reaped()
        assert not spare.alive and supervised(host).worker is not spare
        marker.unlink()
        out = (await host.call("process", input_data="hello")).value
        assert out["text"] == "first"
        assert [r.cause for r in host.reports] == ["crashed", "crashed", "crashed"]


async def test_with_a_version_pin_the_call_waits_for_the_handshake(
    plugin_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a version refused at the Handshake must never have had a hook called
    log = SendLog(monkeypatch)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(plugin_file, limits=LIMITS, version=">=1")
        await crash(host)
        await host.call("process", input_data="hello")
        spare = await ready_spare(host)
        await crash(host)
        await host.call("process", input_data="hello")
        assert supervised(host).worker is spare
        assert log.to(spare) == [("process", True)]


@pytest.mark.parametrize("warm_spare", [True, False])
async def test_a_call_given_up_while_its_restart_loads_leaves_no_worker(
    plugin_file: str, monkeypatch: pytest.MonkeyPatch, warm_spare: bool
) -> None:
    made: list[WorkerProcess] = []
    original = WorkerProcess.__init__

    def init(worker: WorkerProcess, *args: Any, **kwargs: Any) -> None:
        original(worker, *args, **kwargs)
        made.append(worker)

    monkeypatch.setattr(WorkerProcess, "__init__", init)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(
            plugin_file,
            config={"sleep": 0.3},
            limits=Limits(backoff_initial=0, warm_spare=warm_spare),
        )
        if warm_spare:  # a restart first, to have a standby for the next one
            await crash(host)
            await host.call("process", input_data="hello")
            await ready_spare(host)
        await crash(host)
        with anyio.move_on_after(0.1) as scope:  # while the plugin loads
            await host.call("process", input_data="hello")
        assert scope.cancelled_caught
        abandoned = made[-1]
        assert abandoned.handshake is None and supervised(host).worker is None
        with anyio.fail_after(10):  # stopped, not left to live on unseen
            await abandoned.wait_reaped()
        # giving up is the caller's doing, not a failure of the plugin
        assert [r.cause for r in host.reports] == ["crashed"] * (2 if warm_spare else 1)
        out = (await host.call("process", input_data="hello")).value
        assert out["text"] == "first"


class CountingLauncher(ZygoteLauncher):
    """The zygote launcher, counting the workers it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def spawn(self, tg: HostTasks) -> SpawnedWorker:
        self.starts += 1
        return await super().spawn(tg)


async def test_a_crash_storm_with_standbys_starts_no_more_workers_and_waits_its_backoffs(
    plugin_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the restart policy (tests/scenarios/test_restart_storms.py) with standby workers: still one
    # worker started per failure, each restart's backoff waited before the standby is
    # resumed, and none kept once the plugin is quarantined
    limits = Limits(max_failures=5, failure_window=60.0, backoff_initial=0.01, backoff_max=0.04)
    resumed: list[tuple[WorkerProcess, float]] = []
    real_resume = WorkerProcess.resume

    def resume(self: WorkerProcess) -> None:
        resumed.append((self, time.monotonic()))
        real_resume(self)

    monkeypatch.setattr(WorkerProcess, "resume", resume)
    launcher = CountingLauncher()
    async with PluginHost(specs.PIPELINE, launcher=launcher) as host:
        await host.add(plugin_file, limits=limits)
        plugin = supervised(host)
        failures, started = [], []
        for _ in range(limits.max_failures):
            started.append(time.monotonic())
            with pytest.raises(PluginCrashed) as info:
                await host.call("process", input_data="exit")
            failures.append(info.value.report)
        assert [f.cause for f in failures] == ["crashed"] * 5
        assert [f.restarts for f in failures] == [0, 1, 2, 3, 4]
        # the first restart starts afresh; each later one resumes the standby the one
        # before left, which was started after that restart's call, not beside it
        assert len(resumed) == 3
        assert launcher.starts == limits.max_failures
        # resumed at the 3rd, 4th and 5th calls: each no sooner than the backoff the
        # failure before announced, counted from that failing call's start (before it)
        for (_, at), crash_started, failure in zip(
            resumed, started[1:4], failures[1:4], strict=True
        ):
            assert at - crash_started >= failure.backoff  # a lower bound, never a speed
        assert plugin.quarantine is not None
        assert plugin.standby.worker is None and plugin.standby.launching is None
        with pytest.raises(PluginQuarantined):
            await host.call("process", input_data="hello")
        assert launcher.starts == limits.max_failures


def test_a_precompiled_file_plugin_runs_what_was_compiled_and_a_bad_text_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a standby compiles the plugin's text while it waits (compiling runs none of it)
    from plugbox.worker import loader

    monkeypatch.setattr(sys, "path", list(sys.path))  # import_source adds the file's dir
    path = tmp_path / "precompiled.py"
    path.write_text("class APlugin:\n    said = 'compiled while waiting'\n")
    source = loader.parse_ref(str(path))
    loader.precompile(source)
    assert source.code is not None
    source.text = b"class APlugin:\n    said = 'read later'\n"
    try:
        assert loader.instantiate(source).said == "compiled while waiting"
    finally:
        sys.modules.pop("plugbox_plugin_precompiled", None)

    # a text that does not compile is no error until it is imported, where it was one
    path.write_text("class APlugin(:\n")
    broken = loader.parse_ref(str(path))
    loader.precompile(broken)
    assert broken.code is None
    with pytest.raises(SyntaxError):
        loader.instantiate(broken)
    sys.modules.pop("plugbox_plugin_precompiled", None)


@pytest.mark.parametrize(
    "hooks",
    [
        specs.PIPELINE.to_worker(),
        specs.AGENT.to_worker(),
        {"fetch": {"args": ["url", "timeout"], "kind": "async"}},
    ],
    ids=["pipeline", "agent", "async-hook"],
)
def test_the_rehearsal_runs_a_load_and_a_call_through_the_workers_channel(
    hooks: dict[str, object],
) -> None:
    # a standby rehearses, on a stand-in of its own, what a restart runs after Resume
    # (a failed rehearsal is not an error, so this is where one would show)
    import asyncio

    from plugbox.worker import rehearsal

    loop = asyncio.new_event_loop()
    try:
        assert rehearsal.rehearse(loop, hooks, {"seccomp": True}, os.getpid())
    finally:
        loop.close()


def test_the_rehearsal_leaves_no_module_path_or_log_handler_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rehearsal runs a stand-in module's import as if it sat beside the plugin's file:
    # the plugin's own import must then find sys.path, sys.modules and the root logger
    # as a worker without a rehearsal would
    import asyncio
    import logging

    from plugbox.worker import loader, rehearsal

    plugin = tmp_path / "beside.py"
    plugin.write_text("class BesidePlugin:\n    pass\n")
    source = loader.parse_ref(str(plugin))
    imported: list[str | None] = []
    instantiate = loader.instantiate

    def spy(stand_in: loader.Source) -> Any:
        imported.append(stand_in.path)
        return instantiate(stand_in)

    monkeypatch.setattr(loader, "instantiate", spy)
    path, modules = sys.path[:], set(sys.modules)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loop = asyncio.new_event_loop()
    try:
        assert rehearsal.rehearse(loop, specs.PIPELINE.to_worker(), {}, os.getpid(), source)
    finally:
        loop.close()
    assert str(tmp_path) not in sys.path
    assert sys.path == path
    assert not [name for name in set(sys.modules) - modules if "rehearsal" in name]
    assert (root.handlers, root.level) == (handlers, level)
    # the stand-in was imported, beside the plugin's file
    assert imported == [str(tmp_path / "plugbox_rehearsal.py")]


def test_a_host_run_by_asyncio_run_makes_standbys_and_closes(plugin_file: str) -> None:
    """A host in a plain ``asyncio.run`` (as agent frameworks run it, not ``anyio.run``):
    a restart still leaves a standby, the next restart resumes it, and closing the host
    right after leaves nothing waiting."""
    import asyncio

    async def main() -> None:
        async with PluginHost(specs.PIPELINE) as host:
            spare = await restarted_with_standby(host, plugin_file)
            await crash(host)
            await host.call("process", input_data="hello")
            assert supervised(host).worker is spare
            await host.call("process", input_data="hello")

    asyncio.run(asyncio.wait_for(main(), 60))


async def test_removing_a_plugin_ends_the_task_that_makes_its_standbys(
    plugin_file: str,
) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await restarted_with_standby(host, plugin_file)
        standby = supervised(host).standby
        assert standby._wake is not None  # its maker waits for the next restart
        await host.remove(host.plugins[0].name)
        await anyio.wait_all_tasks_blocked()
        assert standby._wake is None  # (set in the maker's finally: it has ended)
        assert standby.worker is None and standby.launching is None
