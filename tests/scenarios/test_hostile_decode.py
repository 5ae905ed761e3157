"""Hostile plugins against the host's own memory and CPU: what a worker sends the host
is bounded in bytes, in what it decodes to, and in the CPU it costs.

Each attack is a real plugin (tests/plugins/hostile_decode.py) in a host beside a
healthy bystander (tests/plugins/attacks.py:HealthyPlugin). A reply that would decode
to far more than its bytes is a protocol error of the plugin that sent it; log records
before the Handshake are kept within a count and a byte cap, the rest dropped and
reported; output lines and Log records over the rate limit are dropped, counted and
reported, and a flood is read only at a bounded share of the host's CPU; what a plugin
writes is logged escaped, one line per record. The host's memory is measured as the
growth of its peak RSS (``VmHWM``, reset before the attack), its CPU as the CPU time
of the test process; every figure is a bound in bytes, counts or CPU seconds.

The same attacks are also made on a host run by an ordinary user, in its own process
(tests/scripts/hostile_user_host.py), its peak RSS read from its own VmHWM.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, PluginInfo
from plugbox.errors import PluginProtocolError, PluginRaised
from plugbox.host import output
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).parents[1] / "plugins"
HOSTILE = f"{PLUGINS / 'hostile_decode.py'}:HostilePlugin"
HEALTHY = f"{PLUGINS / 'attacks.py'}:HealthyPlugin"
SPECS = HookSet(
    "hostile",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)
PLUGIN_LOGGER = "plugbox.plugin.hostile"
USER_HOST = str(Path(__file__).parents[1] / "scripts" / "hostile_user_host.py")
MiB = 1 << 20

pytestmark = pytest.mark.anyio


def _status(key: str) -> int:
    """A field of /proc/self/status, in bytes."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    assert match, key
    return int(match.group(1)) * 1024


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """How far the host's RSS peaked above where it was when the block began: the
    kernel's high-water mark (VmHWM), reset first (/proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("needs /proc/self/clear_refs to reset the peak RSS (Linux 4.0+)")
    base = _status("VmRSS")
    growth = [0]
    yield growth
    growth[0] = _status("VmHWM") - base


def cpu_seconds() -> float:
    """The CPU time this process (the host) has used."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


@dataclass
class Arena:
    host: PluginHost
    bystander: PluginInfo
    attacker: PluginInfo

    async def attack(self, what: str, **target: Any) -> Any:
        return (await self.host.call("attack", what=what, target=target)).value

    async def bystander_serves(self) -> None:
        assert self.bystander.pid is not None
        (answer,) = (await self.host.call("ping")).value
        assert answer.startswith(f"{self.bystander.pid}:") or answer.startswith("2:"), answer
        assert all(r.plugin == "hostile" for r in self.host.reports), self.host.reports

    async def during(self, what: str, **target: Any) -> tuple[Any, int]:
        """Make the attack while the bystander is called (up to 50 times, one after
        another): the attack's value, and how many of those calls were answered before
        the attack was over."""
        result: list[Any] = []
        done = anyio.Event()
        answered = 0
        async with anyio.create_task_group() as tg:

            async def attack() -> None:
                result.append(await self.attack(what, **target))
                done.set()

            tg.start_soon(attack)
            for _ in range(50):
                if done.is_set():
                    break
                await self.bystander_serves()
                answered += 0 if done.is_set() else 1
        return result[0], answered


@asynccontextmanager
async def arena(limits: Limits | None = None, **config: Any) -> AsyncIterator[Arena]:
    async with PluginHost(SPECS) as host:
        bystander = await host.add(HEALTHY)
        attacker = await host.add(HOSTILE, config=config, limits=limits)
        yield Arena(host, bystander, attacker)


@pytest.fixture
def host_log() -> Iterator[io.StringIO]:
    """Everything plugbox logs at INFO and above, formatted as a host application
    would: ``<logger name>: <message>``, one record a line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("plugbox")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def records(caplog: pytest.LogCaptureFixture, message: str) -> int:
    """How many records the plugin's logger logged with exactly ``message``."""
    return sum(1 for r in caplog.records if r.name == PLUGIN_LOGGER and r.getMessage() == message)


def dropped(caplog: pytest.LogCaptureFixture, what: str) -> int:
    """The sum of the drops the host reported for the plugin, of ``what`` ("output
    lines" or "log records")."""
    pattern = re.compile(rf"(\d+) {what} \(\d+ bytes\)")
    total = 0
    for r in caplog.records:
        message = r.getMessage()
        if r.name == PLUGIN_LOGGER and message.endswith(
            "from plugin hostile dropped by the rate limit"
        ):
            total += sum(int(n) for n in pattern.findall(message))
    return total


# --------------------------------------------------------------------------- decoded size
@pytest.mark.parametrize(
    ("what", "n"),
    [
        ("empty_maps", 4_000_000),  # 4 MB on the wire; about 300 MB decoded
        ("nested_maps", 600_000),  # 4.2 MB on the wire; about 500 MB decoded
    ],
)
async def test_a_reply_that_decodes_to_far_more_than_its_bytes_fails_its_plugin(
    what: str, n: int
) -> None:
    async with arena() as a:
        with peak_rss_growth() as growth, pytest.raises(PluginProtocolError) as caught:
            await a.attack(what, n=n)
        report = caught.value.report
        assert (report.plugin, report.cause, report.killed) == ("hostile", "protocol", True)
        size = int(re.search(r"a frame of (\d+) bytes", report.detail).group(1))  # type: ignore[union-attr]
        assert size > n
        assert report.detail.endswith(
            f"would decode to more than {32 * size} bytes of objects (its decoded-size cap)"
        ), report.detail
        # the frame (4 MB), its copy as the decoder takes it, nothing of what it decodes to
        print(f"\n{what} x {n}: {size} bytes refused; host peak RSS +{growth[0] / MiB:.1f} MiB")
        assert growth[0] < 48 * MiB, growth[0]
        await a.bystander_serves()
        # the plugin is restarted and serves again
        assert await a.attack("log", text="back") == "logged"


# --------------------------------------------------------------------------- early logs
def early_kept(count: int, size: int) -> int:
    """How many of ``count`` early records of ``size`` characters the host keeps: the
    first ones that fit in EARLY_RECORDS and EARLY_BYTES (each cut to MAX_RECORD)."""
    kept = held = 0
    while kept < min(count, output.EARLY_RECORDS):
        record = min(len(f"{kept}") + size, output.MAX_RECORD) + len("hostile")
        if held + record > output.EARLY_BYTES:
            break
        kept, held = kept + 1, held + record
    return kept


@pytest.mark.parametrize(
    ("count", "size"),
    [
        (48, 2_000_000),  # 96 MB of records before the Handshake: held to EARLY_BYTES
        (20_000, 10),  # many small ones: held to EARLY_RECORDS
    ],
)
async def test_log_records_before_the_handshake_are_kept_within_a_count_and_bytes(
    count: int, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox")
    with peak_rss_growth() as growth:
        async with arena(limits=Limits(max_message_mb=4), early=[count, size]) as a:
            await a.bystander_serves()
            assert await a.attack("log", text="after") == "logged"
    print(f"\n{count} early records of {size} chars: host peak RSS +{growth[0] / MiB:.1f} MiB")
    assert growth[0] < 32 * MiB, growth[0]  # 64 KiB kept, each record decoded in turn
    # the first ones that fit in EARLY_RECORDS and EARLY_BYTES (each cut to MAX_RECORD
    # characters) are logged when the Handshake names the plugin, the rest reported
    kept = early_kept(count, size)
    early = [
        r.getMessage()
        for r in caplog.records
        if r.name == PLUGIN_LOGGER and r.getMessage().startswith("hostile: ")
    ]
    assert len(early) == kept + 1, len(early)  # and "after"
    for i, message in enumerate(early[:kept]):
        text = f"{i}" + "A" * size
        assert message == "hostile: " + output.clip(text, output.MAX_RECORD)
    (report,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == PLUGIN_LOGGER and "early log records" in r.getMessage()
    ]
    match = re.fullmatch(
        r"(\d+) early log records \((\d+) bytes\) from plugin hostile dropped", report
    )
    assert match, report
    assert int(match.group(1)) == count - kept
    assert int(match.group(2)) >= (count - kept) * size


async def test_a_huge_log_record_is_logged_cut_to_a_bounded_length(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox")
    async with arena(limits=Limits(max_message_mb=4)) as a:
        assert await a.attack("log", text="B" * 3_000_000) == "logged"
        await a.bystander_serves()
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hostile: B")]
    more = 3_000_000 - output.MAX_RECORD
    assert message == "hostile: " + "B" * output.MAX_RECORD + f"... [{more} more characters]"


# --------------------------------------------------------------------------- floods
async def test_a_newline_flood_on_stdout_is_dropped_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox")
    n = 4_000_000  # empty lines: 4 MB
    async with arena() as a:
        cpu = cpu_seconds()
        with peak_rss_growth() as growth:
            value, answered = await a.during("newlines", n=n)
        assert value == "flooded" and answered > 0
        # a report's stderr tail says what the rate limit dropped
        with pytest.raises(PluginRaised) as caught:
            await a.attack("raise", message="after the flood")
        tail = caught.value.report.stderr_tail
        assert re.fullmatch(
            r"\[plugbox: \d+ output lines \(\d+ bytes\) of this worker dropped from the log\]",
            tail[0],
        ), tail
        await a.bystander_serves()
    cpu = cpu_seconds() - cpu
    # every line was either logged or counted as dropped, and the drops were reported
    logged = records(caplog, "")
    rss = growth[0] / MiB
    print(f"\n{n} newlines: {logged} logged, host CPU {cpu:.2f} s, peak RSS +{rss:.1f} MiB")
    assert logged + dropped(caplog, "output lines") == n
    assert 0 < logged <= output.BURST_RECORDS + output.RATE_RECORDS * 60
    # a line costs the host no record and no Python work: 4 M lines took far less
    # than the ~2 s of CPU one record per line costs
    assert cpu < 1.0, cpu
    assert growth[0] < 32 * MiB, growth[0]


async def test_a_flood_of_log_frames_is_dropped_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox")
    n = 400_000  # valid Log frames of 10 bytes, written straight onto the channel
    async with arena() as a:
        cpu = cpu_seconds()
        with peak_rss_growth() as growth:
            value, answered = await a.during("log_frames", n=n)
        assert value == "flooded" and answered > 0
        with pytest.raises(PluginRaised) as caught:
            await a.attack("raise", message="after the flood")
        assert "log records" in caught.value.report.stderr_tail[0]
        await a.bystander_serves()
    cpu = cpu_seconds() - cpu
    logged = records(caplog, "x: ")
    rss = growth[0] / MiB
    print(f"\n{n} Log frames: {logged} logged, host CPU {cpu:.2f} s, peak RSS +{rss:.1f} MiB")
    assert logged + dropped(caplog, "log records") == n
    assert 0 < logged <= output.BURST_RECORDS + output.RATE_RECORDS * 60
    # what is dropped is mostly dropped unread: far less than the ~1.5 s of CPU it
    # costs to decode 400 k frames and log one record each
    assert cpu < 1.0, cpu
    assert growth[0] < 32 * MiB, growth[0]


# --------------------------------------------------------------------------- forged lines
async def test_a_plugins_text_cannot_forge_a_host_log_line(host_log: io.StringIO) -> None:
    forged = "ok\nplugbox.host: plugin x removed\r\x1b[2Jcleared\x00\u2028end"
    escaped = "ok\\nplugbox.host: plugin x removed\\r\\x1b[2Jcleared\\x00\\u2028end"
    async with arena() as a:
        assert await a.attack("forge", text=forged) == "forged"
        await a.bystander_serves()
    text = host_log.getvalue()
    lines = text.splitlines()
    # the log record: one line, escaped, under the plugin's logger
    assert f"{PLUGIN_LOGGER}: hostile: {escaped}" in lines
    # the output: a newline on stdout or stderr ends a line, so its second line is a
    # line of its own, under the plugin's logger, its control characters escaped
    rest = escaped.split("\\n", 1)[1]
    assert lines.count(f"{PLUGIN_LOGGER}: ok") == 2
    assert lines.count(f"{PLUGIN_LOGGER}: {rest}") == 2
    # every line the host logged starts with the name of the logger that logged it
    assert all(re.match(r"plugbox(\.[\w-]+)*: ", line) for line in lines), lines
    assert not [line for line in lines if line.startswith("plugbox.host: plugin x")]
    assert "\x1b" not in text and "\x00" not in text and "\u2028" not in text


# --------------------------------------------------------------------------- as a user
def test_an_ordinary_users_host_is_bounded_the_same() -> None:
    done, tmp, left = run_as_ordinary_user(
        [USER_HOST, "decode"], prefix="plugbox-test-hostile-decode-"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    found: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["uid"] != 0 and found["tmpdir"] == tmp
    figures = []
    for what, n in (("empty_maps", 4_000_000), ("nested_maps", 600_000)):
        got = found[what]
        assert (got["error"], got["plugin"], got["cause"], got["killed"]) == (
            "PluginProtocolError",
            "hostile",
            "protocol",
            True,
        ), got
        size = int(re.search(r"a frame of (\d+) bytes", got["detail"]).group(1))  # type: ignore[union-attr]
        assert size > n and got["detail"].endswith(
            f"would decode to more than {32 * size} bytes of objects (its decoded-size cap)"
        ), got["detail"]
        assert got["serves"] and got["back"] == "logged"
        figures.append((what, got["peak_kb"] << 10, 48 * MiB, got["cpu"]))
    for count, size in ((48, 2_000_000), (20_000, 10)):
        got = found[f"early_{count}"]
        kept = early_kept(count, size)
        assert got["serves"] and got["after"] == "logged"
        assert len(got["lines"]) == kept + 1, len(got["lines"])  # and "after"
        for i, line in enumerate(got["lines"][:kept]):
            assert line == (f"{PLUGIN_LOGGER}: hostile: {i}" + "A" * size)[:200]
        (report,) = got["reported"]
        match = re.fullmatch(
            rf"{PLUGIN_LOGGER}: (\d+) early log records \((\d+) bytes\) from plugin "
            r"hostile dropped",
            report,
        )
        assert match, report
        assert int(match.group(1)) == count - kept
        assert int(match.group(2)) >= (count - kept) * size
        figures.append((f"early_{count}x{size}", got["peak_kb"] << 10, 32 * MiB, got["cpu"]))
    for what, n, kind, logged_key, tail in (
        ("newlines", 4_000_000, "output lines", "logged_empty", "output lines"),
        ("log_frames", 400_000, "log records", "logged_x", "log records"),
    ):
        got = found[what]
        assert got["value"] == "flooded" and got["answered"] > 0 and got["serves"], got
        (first,) = got["tail0"]
        assert re.fullmatch(
            rf"\[plugbox: \d+ {tail} \(\d+ bytes\) of this worker dropped from the log\]",
            first,
        ), first
        logged = got[logged_key]
        assert logged + got["dropped"][kind] == n
        assert 0 < logged <= output.BURST_RECORDS + output.RATE_RECORDS * 60
        assert got["cpu"] < 1.0, got["cpu"]
        figures.append((f"{what} x {n}", got["peak_kb"] << 10, 32 * MiB, got["cpu"]))
    got = found["forge"]
    assert got["value"] == "forged" and got["serves"]
    lines = got["lines"]
    escaped = "ok\\nplugbox.host: plugin x removed\\r\\x1b[2Jcleared\\x00\\u2028end"
    assert f"{PLUGIN_LOGGER}: hostile: {escaped}" in lines
    assert lines.count(f"{PLUGIN_LOGGER}: ok") == 2
    rest = escaped.split("\\n", 1)[1]
    assert lines.count(f"{PLUGIN_LOGGER}: {rest}") == 2
    assert all(re.match(r"plugbox(\.[\w-]+)*: ", line) for line in lines), lines
    assert not [line for line in lines if line.startswith("plugbox.host: plugin x")]
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x00" not in text and "\u2028" not in text
    for what, grown, bound, cpu in figures:
        print(
            f"\nuser host, {what}: peak RSS +{grown / MiB:.1f} MiB "
            f"(bound {bound // MiB} MiB), CPU {cpu:.2f} s"
        )
    for what, grown, bound, _ in figures:
        assert grown < bound, (what, grown)


def test_escape_keeps_text_on_one_line() -> None:
    assert output.escape("a\nb\r\tc\x1b\x7f\x85\u2028\u2029é€") == (
        "a\\nb\\r\\tc\\x1b\\x7f\\x85\\u2028\\u2029é€"
    )
    assert output.clip("abcdef", 4) == "abcd... [2 more characters]"
    assert output.clip("abcd", 4) == "abcd"


def test_the_tail_is_bounded_in_lines_and_bytes() -> None:
    out = output.WorkerOutput(logging.getLogger("plugbox.test.tail"), tail_lines=40)
    capture = out.stderr
    capture.feed(b"".join(b"%d%s\n" % (i, b"x" * 3000) for i in range(100)), time.monotonic())
    tail = capture.tail
    assert sum(len(line) for line in tail) <= output.TAIL_BYTES
    assert tail[-1].startswith("99x") and len(tail) == output.TAIL_BYTES // 3003
