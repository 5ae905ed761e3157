"""The audit trail: registration and call records, to the logger and a JSON Lines file,
matching what happened; the file complete after the host is killed mid-run.

Real workers (zygote launcher) on asyncio and trio; the autouse leak check in
conftest.py verifies afterwards that nothing was left behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import reap, wait_gone

from plugbox import HookSet, HookSpec, Limits, PluginHost
from plugbox.errors import PluginLoadError
from plugbox.protocol import pack
from plugbox.trust import integrity

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
AUDITED = str(PLUGINS / "audited.py")
SCRIPT = Path(__file__).parents[1] / "scripts" / "audit_host.py"
HOOKS = HookSet(
    "audit-test",
    [
        HookSpec(
            name="ask", args=("query", "state"), mode="first_result", mutable=frozenset({"state"})
        )
    ],
)
LIMITS = Limits(call_timeout=0.5, backoff_initial=0, max_failures=10)


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["call"], r["plugin"], r["outcome"], r["short_circuit"], r["changed"])
        for r in records
        if r["event"] == "call"
    ]


async def test_audit_records_of_a_mixed_run_match_what_happened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plugbox.audit")
    path = tmp_path / "audit.jsonl"
    async with PluginHost(HOOKS, audit_path=path, on_failure="skip") as host:
        infos = [
            await host.add(AUDITED, config={"name": n, "answer": a}, limits=LIMITS)
            for n, a in (("a", None), ("b", "from b"), ("c", "from c"))
        ]
        touched = await host.call("ask", query="touch", state={"n": 1})  # 1: all change
        answered = await host.call("ask", query="q", state={})  # 2: b answers
        crashed = await host.call("ask", query="crash:a", state={})  # 3: a crashes
        timed_out = await host.call("ask", query="hang:b", state={})  # 4: b hangs
        with pytest.raises(PluginLoadError):
            await host.add(AUDITED, config={"name": "d"}, version=">=9")
    records = read_records(path)

    registrations = [r for r in records if r["event"] == "register"]
    assert [(r["plugin"], r["version"], r["pid"]) for r in registrations] == [
        (i.name, "1.4.2", i.pid) for i in infos
    ]
    reg = registrations[0]
    assert reg["sha256"] == integrity.digest(AUDITED) and reg["sha256_pinned"] is False
    assert reg["hooks"] == {"ask": ["query", "state"]} and reg["ref"] == AUDITED
    assert reg["limits"]["call_timeout"] == 0.5 and reg["sandbox"]["network"] is False
    assert reg["layers"] == infos[0].layers and reg["distribution"] is None

    assert touched.value is None and touched.args["state"]["seen_by"] == ["a", "b", "c"]
    assert answered.value == "from b" and answered.called == ["a", "b"]
    assert crashed.value == "from b" and [f.cause for f in crashed.failures] == ["crashed"]
    assert timed_out.value == "from c" and [f.cause for f in timed_out.failures] == ["timeout"]
    assert calls(records) == [
        (1, "a", "ok", False, ["state"]),
        (1, "b", "ok", False, ["state"]),
        (1, "c", "ok", False, ["state"]),
        (2, "a", "ok", False, []),
        (2, "b", "ok", True, []),  # c never asked
        (3, "a", "crashed", False, []),
        (3, "b", "ok", True, []),
        (4, "a", "ok", False, []),
        (4, "b", "timeout", False, []),
        (4, "c", "ok", True, []),
    ]
    by_call = {(r["call"], r["plugin"]): r for r in records if r["event"] == "call"}
    crash = by_call[3, "a"]
    assert crash["detail"] == crashed.failures[0].detail == "exited with status 3"
    assert crash["pid"] == infos[0].pid and crash["policy"] == "skip"
    timeout = by_call[4, "b"]
    assert timeout["detail"] == timed_out.failures[0].detail
    assert timeout["duration"] >= 0.5 and timeout["bytes_out"] == 0
    restarted = by_call[4, "a"]
    assert restarted["pid"] != infos[0].pid and restarted["wire_id"] == 1  # a fresh worker
    answer = by_call[2, "b"]
    assert answer["bytes_in"] == len(pack("q")) + len(pack({}))
    assert answer["bytes_out"] == len(pack("from b")) and answer["returned"] is True
    assert answer["wire_id"] == 2 and answer["hook"] == "ask" and answer["mode"] == "first_result"
    assert "args" not in answer and "result" not in answer  # not unless asked
    first = by_call[1, "a"]
    assert first["bytes_out"] == len(pack(None)) + len(pack({"n": 1, "seen_by": ["a"]}))

    refused = [r for r in records if r["event"] == "refuse"]
    assert len(refused) == 1 and refused[0]["error"] == "PluginVersionError"
    assert "pinned to '>=9'" in refused[0]["reason"]
    assert [r["plugin"] for r in records if r["event"] == "close"] == ["c", "b", "a"]
    assert all(r["schema"] == 1 and r["host_pid"] == os.getpid() for r in records)

    logged = [r.audit for r in caplog.records if r.name == "plugbox.audit"]  # type: ignore[attr-defined]
    assert json.loads(json.dumps(logged)) == records  # the same records (tuples: lists)
    messages = [r.getMessage() for r in caplog.records if r.name == "plugbox.audit"]
    assert any(
        m.startswith("call #2 ask -> b: ok in ") and m.endswith("short-circuit") for m in messages
    )


async def test_arguments_are_recorded_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with PluginHost(HOOKS, audit_path=path, audit_args=True) as host:
        await host.add(AUDITED, config={"answer": b"\x00bytes"})
        await host.call("ask", query="touch", state={"k": [1, 2]})
        await host.call("ask", query="q", state={})
    one, two = [r for r in read_records(path) if r["event"] == "call"]
    assert one["args"] == {"query": "touch", "state": {"k": [1, 2]}}
    assert one["changes"] == {"state": {"k": [1, 2], "seen_by": ["audited"]}}
    assert two["result"] == {"$bytes": "AGJ5dGVz"}


async def test_auditing_off_costs_nothing_and_writes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plugbox.audit")
    async with PluginHost(HOOKS) as host:
        assert not host._audit.active()
        await host.add(AUDITED, config={"answer": "x"})
        assert (await host.call("ask", query="q", state={})).value == "x"
        assert host.plugins[0].sha256 is None  # not even hashed
    assert not [r for r in caplog.records if r.name == "plugbox.audit"]


async def test_auditing_is_decided_as_the_host_is_made_and_as_plugins_are_added(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observed = HookSet(
        "audit-observe",
        [HookSpec(name="ask", args=("query", "state"), mode="observe")],
    )
    caplog.set_level(logging.WARNING, logger="plugbox.audit")
    async with PluginHost(observed) as host:
        await host.add(AUDITED, config={"name": "a"})
        caplog.set_level(logging.INFO, logger="plugbox.audit")
        await host.call("ask", query="q", state={})  # off when "a" was added: not audited
        await host.add(AUDITED, config={"name": "b"})  # on from here, for every plugin
        outcome = await host.call("ask", query="q", state={})
        pids = {info.name: info.pid for info in host.plugins}
    records = [r.audit for r in caplog.records if r.name == "plugbox.audit"]  # type: ignore[attr-defined]
    assert records[0]["event"] == "register" and records[0]["plugin"] == "b"
    observe = sorted(  # observe: in the order they finished
        (r["call"], r["plugin"], r["mode"], r["outcome"], r["pid"], r["wire_id"])
        for r in records
        if r["event"] == "call"
    )
    assert observe == [
        (1, "a", "observe", "ok", pids["a"], 2),  # the first call was "a"'s wire id 1
        (1, "b", "observe", "ok", pids["b"], 1),
    ]
    assert outcome.called == ["a", "b"]
    assert [(r["event"], r["plugin"]) for r in records[3:]] == [("close", "b"), ("close", "a")]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_audit_file_is_complete_after_the_host_is_killed(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "audit.jsonl"
    host = subprocess.Popen(
        [sys.executable, str(SCRIPT), AUDITED, str(path), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    descendants: list[int] = []
    try:
        assert host.stdout is not None
        done = 0
        while done < 20:
            line = host.stdout.readline()
            assert line, host.stderr.read() if host.stderr else ""
            done = int(line.split()[1])
        descendants = [p.pid for p in psutil.Process(host.pid).children(recursive=True)]
        host.send_signal(signal.SIGKILL)  # mid-run: the host is calling in a loop
        host.wait()
    finally:
        reap(host)
    assert wait_gone(descendants) == []  # the workers and the zygote died with it
    text = path.read_text()
    assert text.endswith("\n")  # no torn last line
    records = [json.loads(line) for line in text.splitlines()]  # every line whole JSON
    assert records[0]["event"] == "register" and records[0]["plugin"] == "audited"
    made = [r for r in records if r["event"] == "call"]
    assert len(made) >= done  # every call that returned before the kill is there
    assert [r["call"] for r in made] == list(range(1, len(made) + 1))
    assert all(r["outcome"] == "ok" and r["short_circuit"] for r in made)
    assert not [r for r in records if r["event"] == "close"]  # it never closed
