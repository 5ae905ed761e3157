"""plugbox's figures, through its public API only (whatever plugbox is when it runs).

Each function runs its own event loop (``anyio.run``) on the backend it is given:
``"asyncio"``, ``"trio"`` or ``"uvloop"`` (asyncio with uvloop's loop), starts its own
``PluginHost`` and leaves no process behind when it returns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from bench_baselines import memory_of
from bench_common import PAYLOAD, PLUGIN, Missing, mono_ns, now_ns, pin_children

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure
from plugbox.specs import HookSet, HookSpec

#: the benchmark's hook set: one hook per figure.
HOOKS = HookSet(
    "bench",
    [
        HookSpec(
            name="echo",
            args=("payload",),
            mode="first_result",
            doc="returns its argument (sync hook)",
        ),
        HookSpec(
            name="aecho",
            args=("payload",),
            mode="first_result",
            doc="returns its argument (async hook)",
        ),
        HookSpec(name="observe", args=("payload",), mode="observe", doc="returns None"),
        HookSpec(
            name="crash",
            args=("code",),
            mode="first_result",
            on_failure="raise",
            doc="leaves the time on stderr, then os._exit(code)",
        ),
    ],
)

CRASH_MARK = "bench-crash-at "
BACKENDS = ("asyncio", "trio", "uvloop")


def quiet_logging() -> None:
    """plugbox logs every failure and the plugins' stderr at WARNING; the crash rounds
    would flood the console. The records are still made (as in a real host), just not
    printed."""
    logger = logging.getLogger("plugbox")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


#: no single measurement may take longer (a hang is reported as an error, not waited out).
MEASUREMENT_LIMIT = 300.0


def run_on(backend: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``anyio.run(fn, *args)`` on ``backend``; Missing if its package is absent."""

    async def limited() -> Any:
        with anyio.fail_after(MEASUREMENT_LIMIT):
            return await fn(*args)

    if backend == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise Missing("uvloop (pip install uvloop)") from None
        return anyio.run(limited, backend="asyncio", backend_options={"use_uvloop": True})
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise Missing("trio (pip install trio)") from None
        return anyio.run(limited, backend="trio")
    return anyio.run(limited, backend="asyncio")


def _check_echo(value: Any) -> None:
    if value != PAYLOAD:
        raise RuntimeError(f"the plugin answered {value!r}, not the payload")


# ------------------------------------------------------------------ one call
def lat_plugbox(
    warmup: int, n: int, backend: str = "asyncio", launcher: str = "zygote"
) -> list[float]:
    async def main() -> list[float]:
        async with PluginHost(HOOKS, launcher=launcher) as host:
            await host.add(PLUGIN)
            call = host.call
            _check_echo((await call("echo", payload=PAYLOAD)).value)
            pin_children()
            for _ in range(warmup):
                await call("echo", payload=PAYLOAD)
            out = [0.0] * n
            for i in range(n):
                t0 = now_ns()
                await call("echo", payload=PAYLOAD)
                out[i] = (now_ns() - t0) / 1000
            return out

    return run_on(backend, main)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ 64 in flight
async def wave(host: PluginHost, hook: str, inflight: int, count: int) -> None:
    """``inflight`` tasks, each calling ``hook`` ``count`` times in a loop."""

    async def calling() -> None:
        for _ in range(count):
            await host.call(hook, payload=PAYLOAD)

    async with anyio.create_task_group() as tg:
        for _ in range(inflight):
            tg.start_soon(calling)


def tput_plugbox(total: int, inflight: int, backend: str = "asyncio", hook: str = "aecho") -> float:
    """Calls per second with ``inflight`` tasks calling one worker in a loop."""

    async def main() -> float:
        async with PluginHost(HOOKS) as host:
            await host.add(PLUGIN)
            _check_echo((await host.call(hook, payload=PAYLOAD)).value)
            pin_children()
            per_task = total // inflight
            await wave(host, hook, inflight, 50)  # warm-up
            t0 = now_ns()
            await wave(host, hook, inflight, per_task)
            return per_task * inflight / ((now_ns() - t0) / 1e9)

    return run_on(backend, main)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ start
def start_plugbox_warm(rounds: int, launcher: str = "zygote") -> list[float]:
    """host.add + first call answered, the launcher already running (µs)."""

    async def main() -> list[float]:
        out: list[float] = []
        async with PluginHost(HOOKS, launcher=launcher) as host:
            for i in range(rounds + 1):  # round 0 starts the zygote: not counted
                name = f"start-{i}"
                t0 = now_ns()
                await host.add(PLUGIN, config={"name": name})
                _check_echo((await host.call("echo", payload=PAYLOAD)).value)
                elapsed = (now_ns() - t0) / 1000
                await host.remove(name)
                if i:
                    out.append(elapsed)
                else:
                    pin_children()  # the zygote: its workers inherit its CPUs
        return out

    return run_on("asyncio", main)  # type: ignore[no-any-return]


def start_plugbox_cold(rounds: int) -> list[float]:
    """A new PluginHost (so a new zygote) + host.add + first call answered (µs)."""

    async def main() -> list[float]:
        out: list[float] = []
        for i in range(rounds + 1):
            t0 = now_ns()
            async with PluginHost(HOOKS, launcher="zygote") as host:
                await host.add(PLUGIN)
                _check_echo((await host.call("echo", payload=PAYLOAD)).value)
                elapsed = (now_ns() - t0) / 1000
            if i:
                out.append(elapsed)
        return out

    return run_on("asyncio", main)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ crash, report, respawn
def crash_rounds(
    rounds: int,
    backend: str = "asyncio",
    sandbox: Sandbox | None = None,
    gap: float = 0.0,
    warm_spare: bool = True,
) -> dict[str, Any]:
    """Crash the worker ``rounds`` times; after each, time the next call.

    Returns µs samples: ``death_to_report`` (the plugin's last moment, stamped on
    CLOCK_MONOTONIC just before os._exit, to the PluginFailure caught by the caller),
    ``call_to_report`` (the crashing call's start to the exception), ``respawn`` (the
    next call after the report: a fresh worker started, loaded and answering),
    ``crash_to_answer`` (death to that next answer), and the causes seen. Backoff is
    set to 0 so the figure is the mechanism, not the policy's deliberate wait. ``gap``
    seconds pass between the answer and the next crash (time for the standby worker a
    restart leaves behind to be ready: ``Limits.warm_spare``).
    """
    limits = Limits(
        backoff_initial=0.0, max_failures=1_000_000, failure_window=1.0, warm_spare=warm_spare
    )

    async def main() -> dict[str, Any]:
        death: list[float] = []
        call_to_report: list[float] = []
        respawn: list[float] = []
        total: list[float] = []
        causes: dict[str, int] = {}
        unstamped = 0
        async with PluginHost(HOOKS) as host:
            await host.add(PLUGIN, limits=limits, sandbox=sandbox)
            _check_echo((await host.call("echo", payload=PAYLOAD)).value)
            pin_children()  # the zygote too: respawned workers inherit its CPUs
            for i in range(rounds + 2):  # two warm-up rounds
                t_call = mono_ns()
                try:
                    await host.call("crash", code=3)
                except PluginFailure as exc:
                    t_caught = mono_ns()
                    report = exc.report
                else:
                    raise RuntimeError("the crash hook returned instead of crashing")
                stamp = _crash_stamp(report.stderr_tail)
                t0 = now_ns()
                _check_echo((await host.call("echo", payload=PAYLOAD)).value)
                t1 = now_ns()
                if gap:
                    await anyio.sleep(gap)
                if i < 2:
                    continue
                causes[report.cause] = causes.get(report.cause, 0) + 1
                call_to_report.append((t_caught - t_call) / 1000)
                respawn.append((t1 - t0) / 1000)
                if stamp is None:
                    unstamped += 1
                else:
                    death.append((t_caught - stamp) / 1000)
                    total.append((t_caught - stamp) / 1000 + (t1 - t0) / 1000)
        return {
            "death_to_report": death,
            "call_to_report": call_to_report,
            "respawn": respawn,
            "crash_to_answer": total,
            "causes": causes,
            "unstamped": unstamped,
        }

    return run_on(backend, main)  # type: ignore[no-any-return]


def _crash_stamp(tail: tuple[str, ...] | list[str]) -> int | None:
    for line in reversed(list(tail)):
        if CRASH_MARK in line:
            try:
                return int(line.split(CRASH_MARK, 1)[1].split()[0])
            except (IndexError, ValueError):
                return None
    return None


# ------------------------------------------------------------------ memory
def idle_rss(launcher: str = "zygote") -> dict[str, Any]:
    """RSS / USS / PSS (MB) of an idle worker, after a few calls; the zygote's too."""

    async def main() -> dict[str, Any]:
        import psutil

        async with PluginHost(HOOKS, launcher=launcher) as host:
            info = await host.add(PLUGIN)
            pin_children()
            for _ in range(20):
                await host.call("echo", payload=PAYLOAD)
            await anyio.sleep(0.3)
            pid = host.plugins[0].pid or info.pid
            if pid is None:
                raise RuntimeError("the plugin has no worker pid")
            out: dict[str, Any] = {"worker": memory_of(pid)}
            # in a pid namespace the plugin's process has two more above it (the
            # launched one and the namespace's init): their private memory counts too
            launcher_pid = getattr(host._launcher, "pid", None) or os.getpid()
            tree = [psutil.Process(pid)]
            while tree[-1].ppid() not in (launcher_pid, 1):
                tree.append(psutil.Process(tree[-1].ppid()))
            mems = [memory_of(p.pid) for p in tree]
            out["worker"]["processes"] = len(tree)
            for key in ("uss", "pss"):
                if all(key in m for m in mems):
                    out["worker"][f"{key}_all"] = sum(m[key] for m in mems)
            if launcher == "zygote":
                try:
                    out["zygote"] = memory_of(tree[-1].ppid())
                except psutil.Error:
                    pass
            return out

    return run_on("asyncio", main)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ fan-out
def fanout(n_plugins: int, calls: int, warmup: int = 50) -> dict[str, Any]:
    """p50 of an observe hook with 1 plugin, then with ``n_plugins`` (µs samples)."""

    async def main() -> dict[str, Any]:
        async def measure(expect: int) -> list[float]:
            for _ in range(warmup):
                await host.call("observe", payload=PAYLOAD)
            outcome = await host.call("observe", payload=PAYLOAD)
            if len(outcome.called) != expect or outcome.failures:
                raise RuntimeError(
                    f"observe reached {len(outcome.called)} of {expect} "
                    f"plugins ({len(outcome.failures)} failures)"
                )
            out = [0.0] * calls
            for i in range(calls):
                t0 = now_ns()
                await host.call("observe", payload=PAYLOAD)
                out[i] = (now_ns() - t0) / 1000
            return out

        async with PluginHost(HOOKS) as host:
            await host.add(PLUGIN, config={"name": "fan-0"})
            pin_children(anywhere=True)  # 50 workers: every CPU, as the scheduler likes
            one = await measure(1)
            t0 = now_ns()
            for i in range(1, n_plugins):
                await host.add(PLUGIN, config={"name": f"fan-{i}"})
            add_ms = (now_ns() - t0) / 1e6
            many = await measure(n_plugins)
            return {"one": one, "many": many, "add_ms": add_ms}

    return run_on("asyncio", main)  # type: ignore[no-any-return]
