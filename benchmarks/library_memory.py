"""What numpy, scipy, pandas, pydantic and httpx plugins cost under the default limits:
load time, and memory as plugbox counts it, as medians over rounds.

    python benchmarks/library_memory.py [--rounds 5]

Each round adds each plugin of tests/plugins/real_memory_*.py and real_libraries.py to a
fresh host (default Limits and Sandbox) and runs the work the tests run. ``load`` is
``host.add``: a worker forked, confined, the plugin imported with its libraries, its
Handshake back. After the load and each step the worker's memory is read as the host's
watch counts it (resident anonymous and shared memory, memfds, scratch tmpfs, above the
baseline the worker stated before the plugin's code ran: what ``memory_mb`` bounds; the
largest is shown), its peak RSS (VmHWM, resident library code included), and the room
its private memory has left under the in-process cap (RLIMIT_DATA less VmData; the least
is shown). It reaches into plugbox.host internals, which may change.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from plugbox import PluginHost
from plugbox.host.memory import MemoryCount
from plugbox.specs import HookSet, HookSpec

PLUGINS = Path(__file__).resolve().parent.parent / "tests" / "plugins"
SPECS = HookSet("real", [HookSpec(name="compute", args=("what", "arg"), mode="first_result")])
LIBRARIES: dict[str, tuple[str, list[tuple[str, Any]]]] = {
    "numpy": ("real_memory_numpy.py:NumpyPlugin", [("inverse", 100), ("inverse", 500)]),
    "scipy": (
        "real_memory_scipy.py:ScipyPlugin",
        [("minimize", [1.3, 0.7, 0.8, 1.9, 1.2]), ("sparse", 2000), ("lapack", 300)],
    ),
    "pandas": (
        "real_memory_pandas.py:PandasPlugin",
        [("groupby", [["a", 1.0], ["b", 2.0]] * 500), ("fit", 400)],
    ),
    "pydantic": (
        "real_libraries.py:ValidatingPlugin",
        [("validate", {"tool": "search", "arguments": {"limit": "5"}}), ("schema", None)],
    ),
    "httpx": ("real_libraries.py:WeatherPlugin", [("now", "Oslo")]),
}


def status_kb(pid: int, *keys: str) -> list[int]:
    """ "kB" figures of /proc/<pid>/status."""
    found = dict.fromkeys(keys, 0)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in found:
                found[name] = int(value.split()[0])
    return [found[key] for key in keys]


def data_cap_kb(pid: int) -> int:
    """The soft RLIMIT_DATA of process ``pid``, in KiB."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max data size"):
                return int(line.split()[3]) // 1024
    raise LookupError("no data size limit")


async def one_round(ref: str, steps: list[tuple[str, Any]]) -> dict[str, float]:
    """Load time (s), and the largest counted memory, private memory and peak RSS
    (MB) seen after the load and each step, for one fresh worker."""
    async with PluginHost(SPECS) as host:
        started = time.perf_counter()
        await host.add(str(PLUGINS / ref))
        load = time.perf_counter() - started
        worker = host._plugins[0].worker
        assert worker is not None and worker.confined is not None
        end = worker.end
        count = MemoryCount(end, worker.confined.layers)
        counted, room = 0, None
        for step in [None, *steps]:
            if step is not None:
                await host.call("compute", what=step[0], arg=step[1])
            rss, data, peak = status_kb(end.pid, "VmRSS", "VmData", "VmHWM")
            counted = max(counted, count.count(rss).total_kb - end.baseline_rss_kb)
            left = data_cap_kb(end.pid) - data
            room = left if room is None else min(room, left)
        return {
            "load_s": load,
            "counted_mb": counted / 1024,
            "peak_rss_mb": peak / 1024,
            "room_mb": (room or 0) / 1024,
        }


async def main(rounds: int) -> None:
    header = ("library", "load (s)", "counted (MB)", "peak RSS (MB)", "room left (MB)")
    print("{:<8} {:>9} {:>13} {:>14} {:>15}".format(*header))
    for name, (ref, steps) in LIBRARIES.items():
        results = [await one_round(ref, steps) for _ in range(rounds)]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"{name:<8} {med['load_s']:>9.3f} {med['counted_mb']:>13.1f} "
            f"{med['peak_rss_mb']:>14.1f} {med['room_mb']:>15.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    anyio.run(main, parser.parse_args().rounds)
