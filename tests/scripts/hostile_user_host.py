"""A host in its own process, run by an ordinary user, for the hostile decode and
identity tests: it makes their attacks beside the bystander and prints one JSON line
with what it saw (outcomes, peak RSS growth from VmHWM, CPU seconds, logged lines).

``python hostile_user_host.py decode``: tests/plugins/hostile_decode.py's attacks.
``python hostile_user_host.py identity``: tests/plugins/hostile_identity.py's attacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).parents[1] / "plugins"
PLUGIN_LOGGER = "plugbox.plugin.hostile"
#: how a record the plugin logged starts, as this host logs it
EARLY = f"{PLUGIN_LOGGER}: hostile: "


def status_kb(key: str) -> int:
    """A field of /proc/self/status, in kB."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    assert match, key
    return int(match.group(1))


async def measured(found: dict[str, Any], name: str, attack: Callable[[], Awaitable[Any]]) -> None:
    """Run ``attack`` and put in ``found[name]`` what it returned, with how far this
    process's peak RSS (VmHWM, reset first; not ru_maxrss, which keeps the peak of the
    process it was exec'd from) rose above its RSS then, and the CPU seconds it took."""
    Path("/proc/self/clear_refs").write_text("5")
    base, cpu = status_kb("VmRSS"), os.times()
    result = await attack()
    now = os.times()
    result["peak_kb"] = status_kb("VmHWM") - base
    result["cpu"] = now.user + now.system - cpu.user - cpu.system
    found[name] = result


def failure(exc: PluginFailure) -> dict[str, Any]:
    r = exc.report
    return {"error": type(exc).__name__, "plugin": r.plugin, "cause": r.cause}


class Lines(logging.Handler):
    """Every plugbox record, formatted ``<logger name>: <message>``."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


# --------------------------------------------------------------------------- decode
DECODE = HookSet(
    "hostile",
    [
        HookSpec(name="attack", args=("what", "target"), mode="first_result"),
        HookSpec(name="ping", args=(), mode="collect"),
    ],
)


class Arena:
    def __init__(self, host: PluginHost, bystander: int | None) -> None:
        self.host, self.bystander = host, bystander

    async def attack(self, what: str, **target: Any) -> Any:
        return (await self.host.call("attack", what=what, target=target)).value

    async def serves(self) -> bool:
        (answer,) = (await self.host.call("ping")).value
        ok = answer.startswith(f"{self.bystander}:") or answer.startswith("2:")
        return ok and all(r.plugin == "hostile" for r in self.host.reports)

    async def during(self, what: str, **target: Any) -> tuple[Any, int, bool]:
        """The attack's value, how many bystander calls were answered while it went
        on, and whether every one was answered right."""
        result: list[Any] = []
        done = anyio.Event()
        answered, ok = 0, True
        async with anyio.create_task_group() as tg:

            async def attack() -> None:
                result.append(await self.attack(what, **target))
                done.set()

            tg.start_soon(attack)
            for _ in range(50):
                if done.is_set():
                    break
                ok = await self.serves() and ok
                answered += 0 if done.is_set() else 1
        return result[0], answered, ok


def arena_host(limits: Limits | None = None, **config: Any) -> Any:
    class Opened:
        async def __aenter__(self) -> Arena:
            self.host = PluginHost(DECODE)
            await self.host.__aenter__()
            bystander = await self.host.add(f"{PLUGINS / 'attacks.py'}:HealthyPlugin")
            await self.host.add(
                f"{PLUGINS / 'hostile_decode.py'}:HostilePlugin", config=config, limits=limits
            )
            return Arena(self.host, bystander.pid)

        async def __aexit__(self, *exc: Any) -> None:
            await self.host.__aexit__(*exc)

    return Opened()


async def decode(found: dict[str, Any], lines: Lines) -> None:
    for what, n in (("empty_maps", 4_000_000), ("nested_maps", 600_000)):

        async def decoded(what: str = what, n: int = n) -> dict[str, Any]:
            async with arena_host() as a:
                try:
                    await a.attack(what, n=n)
                    got: dict[str, Any] = {"error": None}
                except PluginFailure as exc:
                    got = failure(exc)
                    got.update(detail=exc.report.detail, killed=exc.report.killed)
                got["serves"] = await a.serves()
                got["back"] = await a.attack("log", text="back")
            return got

        await measured(found, what, decoded)
    lines.take()
    for count, size in ((48, 2_000_000), (20_000, 10)):

        async def early(count: int = count, size: int = size) -> dict[str, Any]:
            async with arena_host(limits=Limits(max_message_mb=4), early=[count, size]) as a:
                got = {"serves": await a.serves(), "after": await a.attack("log", text="after")}
            logged = lines.take()
            got["lines"] = [line[:200] for line in logged if line.startswith(EARLY)]
            got["reported"] = [line for line in logged if "early log records" in line]
            return got

        await measured(found, f"early_{count}", early)
    for what, n in (("newlines", 4_000_000), ("log_frames", 400_000)):

        async def flood(what: str = what, n: int = n) -> dict[str, Any]:
            lines.take()
            async with arena_host() as a:
                value, answered, ok = await a.during(what, n=n)
                try:
                    await a.attack("raise", message="after the flood")
                    tail: list[str] = []
                except PluginFailure as exc:
                    tail = list(exc.report.stderr_tail)
                got = {"value": value, "answered": answered, "tail0": tail[:1]}
                got["serves"] = ok and await a.serves()
            logged = lines.take()
            counted = re.compile(r"(\d+) (output lines|log records) \(\d+ bytes\)")
            got["dropped"] = {"output lines": 0, "log records": 0}
            for line in logged:
                if line.endswith("from plugin hostile dropped by the rate limit"):
                    for k, kind in counted.findall(line):
                        got["dropped"][kind] += int(k)
            got["logged_empty"] = logged.count(f"{PLUGIN_LOGGER}: ")
            got["logged_x"] = logged.count(f"{PLUGIN_LOGGER}: x: ")
            return got

        await measured(found, what, flood)

    async def forge() -> dict[str, Any]:
        lines.take()
        forged = "ok\nplugbox.host: plugin x removed\r\x1b[2Jcleared\x00\u2028end"
        async with arena_host() as a:
            got = {"value": await a.attack("forge", text=forged), "serves": await a.serves()}
        got["lines"] = "\n".join(lines.take()).splitlines()
        return got

    await measured(found, "forge", forge)


# --------------------------------------------------------------------------- identity
IDENTITY = HookSet(
    "hostile-identity",
    [HookSpec(name="step", args=("data",), mode="chain")],
)


def ref(cls: str) -> str:
    return f"{PLUGINS / 'hostile_identity.py'}:{cls}"


def pid_of(host: PluginHost, name: str) -> int | None:
    (info,) = [p for p in host.plugins if p.name == name]
    return info.pid


async def still_serves(host: PluginHost, got: dict[str, Any], bystander: int | None) -> None:
    outcome = await host.call("step", data="still")
    got["still"] = [outcome.value, outcome.called]
    got["same_bystander"] = pid_of(host, "healthy") == bystander
    got["bystander_blamed"] = [r.summary() for r in host.reports if r.plugin == "healthy"]


async def identity(found: dict[str, Any], lines: Lines) -> None:
    async def renamed() -> dict[str, Any]:
        scratch = Path(tempfile.mkdtemp(prefix="attacker-"))  # outlives each worker
        try:
            (scratch / "rename_after").write_text("1")
            limits = Limits(backoff_initial=0.0, warm_spare=False, max_failures=2)
            async with PluginHost(IDENTITY) as host:
                await host.add(
                    ref("RenamingPlugin"),
                    limits=limits,
                    sandbox=Sandbox(scratch=str(scratch)),
                    on_failure="skip",
                )
                bystander = (await host.add(ref("HealthyPlugin"))).pid
                crash = await host.call("step", data="crash")
                got: dict[str, Any] = {"crash": [[r.plugin, r.cause] for r in crash.failures]}
                outcome = await host.call("step", data="after")
                got["after"] = [outcome.value, outcome.called]
                got["reports"] = [
                    [r.plugin, r.version, r.cause, r.hook, r.detail] for r in outcome.failures
                ]
                got["names"] = [p.name for p in host.plugins]
                got["blamed"] = sorted({r.plugin for r in host.reports})
                got["last"] = host.reports[-1].cause
                refused = await host.call("step", data="quarantined")
                got["refused"] = [[r.plugin, r.cause] for r in refused.failures]
                await host.remove("attacker")
                await still_serves(host, got, bystander)
            got["impostor_log"] = sorted(
                {line.split(": ")[0] for line in lines.take() if "renamed after" in line}
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return got

    await measured(found, "renamed", renamed)
    for producer, name, consumer_mb in (("DeepPlugin", "deep", 16), ("BigPlugin", "big", 1)):
        for policy in ("skip", "raise"):

            async def chain(
                producer: str = producer,
                name: str = name,
                mb: int = consumer_mb,
                policy: Any = policy,
            ) -> dict[str, Any]:
                async with PluginHost(IDENTITY) as host:
                    await host.add(ref(producer), limits=Limits(max_failures=2), on_failure=policy)
                    healthy = await host.add(ref("HealthyPlugin"), limits=Limits(max_message_mb=mb))
                    producer_pid = pid_of(host, name)
                    got: dict[str, Any] = {"failures": []}
                    for data in ("start", "again"):
                        try:
                            outcome = await host.call("step", data=data)
                            (report,) = outcome.failures
                            error = None
                            if [outcome.value, outcome.called] != [["healthy", data], ["healthy"]]:
                                error = "the chain did not go on with the caller's value"
                        except PluginFailure as exc:
                            report, error = exc.report, type(exc).__name__
                        got["failures"].append(
                            [error, report.plugin, report.cause, report.hook, report.detail]
                        )
                    got["producer_lives"] = pid_of(host, name) == producer_pid
                    got["last"] = [host.reports[-1].plugin, host.reports[-1].cause]
                    await host.remove(name)
                    await still_serves(host, got, healthy.pid)
                return got

            await measured(found, f"{name}_{policy}", chain)


async def main(mode: str) -> None:
    lines = Lines()
    logger = logging.getLogger("plugbox")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    found: dict[str, Any] = {"uid": os.geteuid(), "tmpdir": tempfile.gettempdir()}
    await (decode if mode == "decode" else identity)(found, lines)
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
