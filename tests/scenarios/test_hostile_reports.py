"""Hostile plugins against what the host keeps of their failures.

A plugin that only raises used to cost its host memory without bound: every report was
kept with its stderr tail, exception type, message and traceback, each as large as a
worker could send. Each attack here runs beside a healthy bystander and asserts the exact
failure, that the bystander keeps serving, and the host's RSS growth against a stated
bound; the conftest leak check covers processes and fds (the attacks write no files; the
host run as an ordinary user is checked for files left in its TMPDIR). The history and
the caps are also tested on their own, without workers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, specs
from plugbox.errors import PluginQuarantined, PluginRaised
from plugbox.host.failure_reports import (
    EXC_TYPE_BYTES,
    MESSAGE_BYTES,
    STDERR_TAIL_BYTES,
    TRACEBACK_BYTES,
    capped,
    stderr_tail,
)
from plugbox.host.history import ReportHistory, report_size
from plugbox.reports import FailureCounts, FailureReport

HOSTILE = str(Path(__file__).parents[1] / "plugins" / "hostile_reports.py")
MB = 1 << 20
#: what a report may hold beyond a cap: the marker that says how much was cut
MARKER = 200

#: the host's RSS growth allowed over 2,000 raises with 160 KB of fresh stderr each
#: (before the history was bounded: +305 MB)
STDERR_RSS_BOUND = 64 * MB
#: ... and over 30 raises each sending an Error frame of 15 MB (before: +483 MB with a
#: huge traceback and message, +858 MB with a huge exception type name)
HUGE_RSS_BOUND = 128 * MB


def utf8(text: str | None) -> int:
    return len((text or "").encode("utf-8", "surrogatepass"))


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def assert_report_capped(report: FailureReport) -> None:
    """Every text a worker put in ``report`` is within its cap."""
    assert sum(utf8(line) for line in report.stderr_tail) <= STDERR_TAIL_BYTES + MARKER
    assert utf8(report.traceback) <= TRACEBACK_BYTES + MARKER
    assert utf8(report.exc_message) <= MESSAGE_BYTES + MARKER
    assert utf8(report.exc_type) <= EXC_TYPE_BYTES + MARKER
    assert utf8(report.detail) <= EXC_TYPE_BYTES + MESSAGE_BYTES + 2 * MARKER
    assert "\n" not in report.summary()


# ---------------------------------------------------------------- attacks
@pytest.mark.anyio
async def test_raises_with_fresh_stderr_keep_the_host_bounded() -> None:
    limits = Limits(report_history=50, report_history_kb=512)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{HOSTILE}:StderrRaiserPlugin", limits=limits, on_failure="skip", config={})
        healthy = await host.add(f"{HOSTILE}:HealthyPlugin")
        out = await host.call("process", input_data=-1)  # warm up before measuring
        before = rss()
        cut = 0
        for i in range(2000):
            out = await host.call("process", input_data=i)
            assert out.value == {"healthy": i} and out.called == ["healthy"]
            (report,) = out.failures  # one call's failures stay complete
            assert isinstance(report, FailureReport) and report.cause == "raised"
            assert report.exc_type == "ValueError"
            assert report.exc_message == "raised after a screenful of stderr"
            assert_report_capped(report)
            cut += bool(report.stderr_tail) and "earlier lines cut" in report.stderr_tail[0]
        grown = rss() - before
        print(f"figure: 2,000 raises with 160 KB of fresh stderr: host RSS {grown / MB:+.1f} MB")
        assert grown < STDERR_RSS_BOUND, f"the host grew by {grown / MB:.0f} MB"
        assert cut > 0, "no report had its stderr tail cut: the attack did not fill it"
        kept = [r for r in host.reports if r.plugin == "stderr-raiser"]
        assert 0 < len(kept) <= 50
        assert sum(report_size(r) for r in kept) <= 512 * 1024
        counts = host.failure_counts("stderr-raiser")
        assert counts.total == 2001 and dict(counts.by_cause) == {"raised": 2001}  # warm-up too
        assert counts.kept == len(kept) and counts.dropped == 2001 - len(kept)
        assert host.failure_counts("healthy") == FailureCounts(plugin="healthy")
        assert host.plugins[1].pid == healthy.pid and host.plugins[1].state == "running"


@pytest.mark.anyio
@pytest.mark.parametrize("via", ["patch", "qualname"])
async def test_raises_with_huge_error_frames_keep_the_host_bounded(via: str) -> None:
    # "patch": the plugin replaces the worker's error reply with one of megabytes of
    # type, message and traceback; "qualname": an exception class named in megabytes,
    # which the worker's own reply carries (it has memory enough to build that name)
    config = {"via": via, "mb": 15 if via == "patch" else 12}
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(
            f"{HOSTILE}:HugeErrorPlugin",
            limits=Limits(memory_mb=512),
            on_failure="skip",
            config=config,
        )
        await host.add(f"{HOSTILE}:HealthyPlugin")
        await host.call("process", input_data=-1)
        before = rss()
        for i in range(30):
            out = await host.call("process", input_data=i)
            assert out.value == {"healthy": i}
            (report,) = out.failures
            assert report.cause == "raised" and report.plugin == "huge-error"
            assert_report_capped(report)
            assert report.exc_type is not None and report.exc_type.startswith("Huge")
            assert report.exc_type.endswith(
                f"characters cut: a report keeps at most {EXC_TYPE_BYTES:,} bytes of "
                f"an exception type]"
            )
            if via == "patch":
                assert report.traceback is not None and report.exc_message is not None
                assert report.traceback.startswith("Traceback (most recent call last):\n")
                assert (
                    f"characters cut: a report keeps at most {TRACEBACK_BYTES:,} bytes of "
                    f"a traceback]\n" in report.traceback
                )
                assert "bytes of a message]" in report.exc_message
        grown = rss() - before
        print(
            f"figure: 30 raises, {config['mb']} MB Error frames ({via}): RSS {grown / MB:+.1f} MB"
        )
        assert grown < HUGE_RSS_BOUND, f"the host grew by {grown / MB:.0f} MB"
        counts = host.failure_counts("huge-error")
        assert counts.total == 31 and counts.kept + counts.dropped == 31
        assert counts.kept_bytes <= Limits().report_history_kb * 1024


@pytest.mark.anyio
async def test_max_raises_quarantines_a_plugin_that_keeps_raising() -> None:
    limits = Limits(max_raises=5, raise_window=3600)
    async with PluginHost(specs.PIPELINE) as host:
        raiser = await host.add(f"{HOSTILE}:StderrRaiserPlugin", limits=limits, config={"lines": 0})
        healthy = await host.add(f"{HOSTILE}:HealthyPlugin")
        assert raiser.pid is not None
        for _ in range(5):  # the fifth raise is reported as itself, then quarantines
            with pytest.raises(PluginRaised) as raised:
                await host.call("process", input_data=1)
            assert raised.value.report.exc_type == "ValueError"
        assert not psutil.pid_exists(raiser.pid), "the quarantined plugin's worker lives on"
        assert host.reports[-1].cause == "quarantined"
        with pytest.raises(PluginQuarantined) as refused:
            await host.call("process", input_data=2)
        detail = refused.value.report.detail
        assert detail.startswith("quarantined after 5 raises within 3600 s (Limits.max_raises=5; ")
        assert "last: raised: ValueError: raised after a screenful of stderr" in detail
        assert host.plugins[0].state == "quarantined"
        # the bystander serves on, from the same worker
        value, _ = await host._plugins[1].invoke("process", {"input_data": 3})
        assert value == {"healthy": 3} and host.plugins[1].pid == healthy.pid
        counts = host.failure_counts("stderr-raiser")
        assert dict(counts.by_cause) == {"raised": 5, "quarantined": 1}
        host.reset("stderr-raiser")  # a fresh worker, and the count starts again
        with pytest.raises(PluginRaised):
            await host.call("process", input_data=4)
        assert host.plugins[0].pid not in (None, raiser.pid)
        assert host.plugins[0].state == "running"


@pytest.mark.anyio
async def test_raises_do_not_quarantine_by_default() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(f"{HOSTILE}:StderrRaiserPlugin", config={"lines": 0})
        for _ in range(30):
            with pytest.raises(PluginRaised):
                await host.call("process", input_data=1)
        assert host.plugins[0].state == "running"
        assert host.failure_counts("stderr-raiser").by_cause == {"raised": 30}


@pytest.mark.anyio
async def test_one_calls_failures_stay_complete_beyond_the_history() -> None:
    async with PluginHost(specs.PIPELINE, on_failure="skip", max_reports=1) as host:
        for name in ("r1", "r2", "r3"):
            await host.add(
                f"{HOSTILE}:StderrRaiserPlugin",
                limits=Limits(report_history=1),
                config={"lines": 0, "name": name, "message": "one\nline"},
            )
        await host.add(f"{HOSTILE}:HealthyPlugin")
        out = await host.call("process", input_data=7)
        assert [r.plugin for r in out.failures] == ["r1", "r2", "r3"]
        assert out.value == {"healthy": 7}
        assert [r.plugin for r in host.reports] == ["r3"]  # max_reports=1 across plugins
        assert [host.failure_counts(n).dropped for n in ("r1", "r2", "r3")] == [1, 1, 0]
        assert out.failures[0].exc_message == "one\nline"
        assert out.failures[0].summary().endswith("raised: ValueError: one\\nline")
        with pytest.raises(KeyError, match="no plugin named 'nobody-added'"):
            host.failure_counts("nobody-added")


#: a host run by an ordinary user: both attacks, then what it saw of itself
USER_HOST = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import anyio, psutil
    from plugbox import Limits, PluginHost, specs

    HOSTILE = sys.argv[1]

    async def main():
        me = psutil.Process()
        async with PluginHost(specs.PIPELINE, on_failure="skip") as host:
            await host.add(f"{HOSTILE}:StderrRaiserPlugin")
            await host.add(f"{HOSTILE}:HealthyPlugin")
            await host.call("process", input_data=-1)
            before = me.memory_info().rss
            healthy = 0
            for i in range(2000):
                out = await host.call("process", input_data=i)
                healthy += out.value == {"healthy": i}
            await host.add(f"{HOSTILE}:HugeErrorPlugin", limits=Limits(memory_mb=512))
            for i in range(30):
                out = await host.call("process", input_data=i)
                healthy += out.value == {"healthy": i}
            grown = me.memory_info().rss - before
            print(json.dumps({
                "uid": os.geteuid(),
                "tmpdir": tempfile.gettempdir(),
                "healthy": healthy,
                "grown": grown,
                "counts": {n: dict(host.failure_counts(n).by_cause)
                           for n in ("stderr-raiser", "huge-error")},
                "kept": len(host.reports),
            }))

    anyio.run(main)
    """
)


def test_an_ordinary_users_host_stays_bounded() -> None:
    done, tmp, left = run_as_ordinary_user(
        ["-c", USER_HOST, HOSTILE], prefix="plugbox-test-hostile-reports-"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    found: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["uid"] != 0 and found["tmpdir"] == tmp
    assert found["healthy"] == 2030
    assert found["counts"] == {
        "stderr-raiser": {"raised": 2031},
        "huge-error": {"raised": 30},
    }
    assert found["kept"] <= 2 * Limits().report_history
    print(f"figure: an ordinary user's host, both attacks: RSS {found['grown'] / MB:+.1f} MB")
    assert found["grown"] < HUGE_RSS_BOUND, f"the host grew by {found['grown'] / MB:.0f} MB"


# ---------------------------------------------------------------- the parts alone
def report(plugin: str, n: int, cause: Any = "raised", text: str = "") -> FailureReport:
    return FailureReport(plugin=plugin, version="1", hook="h", cause=cause, detail=f"{n}{text}")


def test_history_keeps_the_newest_per_plugin_in_count_and_bytes() -> None:
    history = ReportHistory(max_reports=10_000)
    for n in range(10):
        history.record(report("a", n), keep=3, keep_bytes=1 << 20)
    assert [r.detail for r in history.reports()] == ["7", "8", "9"]
    big = "x" * 10_000
    for n in range(10):
        history.record(report("b", n, "crashed", big), keep=100, keep_bytes=25_000)
    b = history.counts("b")
    assert b is not None and b.kept == 2 and b.kept_bytes <= 25_000
    assert b == FailureCounts(
        plugin="b", total=10, by_cause={"crashed": 10}, dropped=8, kept=2, kept_bytes=b.kept_bytes
    )
    a = history.counts("a")
    assert a is not None and (a.total, a.dropped, a.kept) == (10, 7, 3)
    assert history.counts("c") is None


def test_history_bounds_the_count_across_plugins_oldest_first() -> None:
    history = ReportHistory(max_reports=4)
    for n in range(6):
        history.record(report("ab"[n % 2], n), keep=100, keep_bytes=1 << 20)
    assert [(r.plugin, r.detail) for r in history.reports()] == [
        ("a", "2"),
        ("b", "3"),
        ("a", "4"),
        ("b", "5"),
    ]
    history.record(report("a", 6, "quarantined"), keep=0, keep_bytes=1 << 20)
    a = history.counts("a")
    assert a is not None and a.kept == 0 and a.total == 4 and a.dropped == 4
    assert a.by_cause == {"raised": 3, "quarantined": 1}


def test_caps_cut_whole_characters_and_say_how_much() -> None:
    assert capped("short", 100, "a message") == "short"
    text = "\U0001f600" * 100_000
    out = capped(text, 1000, "a message")
    assert utf8(out) <= 1000
    head, marker = out.split("\n")
    assert marker == (
        f"[... {100_000 - len(head):,} characters cut: a report keeps at most 1,000 bytes "
        f"of a message]"
    )
    tb = "Traceback\n" + "y" * 10**7 + "\nValueError: the end"
    out = capped(tb, TRACEBACK_BYTES, "a traceback", 0.25)
    assert out.startswith("Traceback\n") and out.endswith("\nValueError: the end")
    assert utf8(out) <= TRACEBACK_BYTES
    lines = [f"{i} " + "é" * 4000 for i in range(40)]
    tail = stderr_tail(lines)
    assert tail[-1] == lines[-1] and tail[0].startswith("[... ") and "earlier lines cut" in tail[0]
    assert sum(utf8(line) for line in tail) <= STDERR_TAIL_BYTES + MARKER
    assert stderr_tail(["a", "b"]) == ("a", "b")
    (alone,) = stderr_tail(["z" * 100_000])
    assert utf8(alone) <= STDERR_TAIL_BYTES and "bytes of stderr]" in alone


def test_limits_check_the_new_settings() -> None:
    with pytest.raises(ValueError, match=r"Limits\.max_raises must be a positive number"):
        Limits(max_raises=0)
    with pytest.raises(ValueError, match=r"Limits\.raise_window must be a positive number"):
        Limits(max_raises=3, raise_window=0)
    with pytest.raises(ValueError, match=r"Limits\.report_history_kb must be a number >= 0"):
        Limits(report_history_kb=-1)
    assert Limits().max_raises is None  # off by default
