"""Hostile plugins against identity and blame: a plugin that takes another's name after
a crash, and producers of values the next plugin in a chain cannot take.

A plugin's identity is fixed by its first Handshake (``host.add``): a restarted worker,
fresh or a resumed standby, that claims another name or version fails that plugin with
``PluginProtocolError`` (counted toward its quarantine), and the call sent with Resume is
never answered under the wrong name. A value that cannot be passed on (nested too deep,
over the next plugin's frame cap) fails the plugin that produced it, ``PluginProtocolError``
naming hook and argument; the next plugin is called with the last good value and is not
blamed. Each test runs the attacker beside the bystander "healthy", whose worker must
serve on untouched; the host's RSS stays within ``RSS_BOUND``, and nothing is left in the
temporary directory (processes and fds: the leak check in conftest). The same attacks
are also made on a host run by an ordinary user, in its own process
(tests/scripts/hostile_user_host.py), its peak RSS read from its own VmHWM.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginFailure, PluginProtocolError, PluginQuarantined
from plugbox.host.calling import call_hook
from plugbox.host.options import PluginOptions
from plugbox.host.supervision import SupervisedPlugin
from plugbox.protocol import LocalProtocolError
from plugbox.reports import FailureReport
from plugbox.specs import HookSet, HookSpec, OnFailure

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins" / "hostile_identity.py"
HOOKS = HookSet(
    "hostile-identity",
    [
        HookSpec(name="step", args=("data",), mode="chain"),
        HookSpec(name="handle", args=("request", "ctx"), mode="first_result", mutable=("ctx",)),
    ],
)
USER_HOST = str(Path(__file__).parents[1] / "scripts" / "hostile_user_host.py")
#: how much the test process's RSS may grow over a test (it moves a few MB of values)
RSS_BOUND = 64 << 20
FAST = Limits(backoff_initial=0.0, warm_spare=False)


def ref(cls: str) -> str:
    return f"{PLUGINS}:{cls}"


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def rss_within_bound(before: int) -> None:
    """The test process's RSS grew by less than ``RSS_BOUND`` (printed, with ``-s``)."""
    grown = rss() - before
    print(f"host RSS grew by {grown / (1 << 20):.1f} MB (bound {RSS_BOUND >> 20} MB)")
    assert grown < RSS_BOUND


@pytest.fixture
def tmpdir_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary directory for the workers' scratch directories (``tempfile``'s),
    checked to be empty once the test's host has closed."""
    path = Path(tempfile.mkdtemp(prefix="hostile-identity-"))
    path.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
        assert sorted(os.listdir(path)) == [], "scratch left behind"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def attacker_scratch(tmpdir_checked: Path) -> Iterator[Path]:
    """The renaming plugin's scratch directory: given, so it outlives each worker."""
    path = Path(tempfile.mkdtemp(prefix="attacker-", dir=os.path.dirname(tmpdir_checked)))
    path.chmod(0o777)  # the worker writes it as nobody
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def supervised(host: PluginHost, name: str) -> SupervisedPlugin:
    (plugin,) = [p for p in host._plugins if p.name == name]
    return plugin


def worker_pid(host: PluginHost, name: str) -> int | None:
    (info,) = [p for p in host.plugins if p.name == name]
    return info.pid


def no_report_of(host: PluginHost, name: str) -> None:
    blamed = [r for r in host.reports if r.plugin == name]
    assert not blamed, f"the bystander was blamed: {[r.summary() for r in blamed]}"


# ---------------------------------------------------------------- identity
def test_a_changed_identity_is_named_and_its_length_bounded() -> None:
    from plugbox.host.admission import Identity, changed_identity

    registered = Identity("attacker", "6.6.6", "", "")
    assert changed_identity(registered, registered) is None
    claimed = Identity("healthy", "6.6.6", "dist", "")
    assert changed_identity(registered, claimed) == (
        "a restarted worker's Handshake claims name 'healthy', dist_name 'dist', but the "
        "plugin was registered with name 'attacker', dist_name ''"
    )
    huge = changed_identity(registered, Identity("h" * 1_000_000, "6.6.6", "", ""))
    assert huge is not None and len(huge) < 400 and "(1000000 chars)" in huge


async def add_attacker_and_bystander(
    host: PluginHost, scratch: Path, limits: Limits, rename_after: int
) -> int | None:
    """Add the renaming plugin (policy "skip", renaming itself after ``rename_after``
    crashes) and the bystander; the bystander's worker pid."""
    (scratch / "rename_after").write_text(str(rename_after))
    await host.add(
        ref("RenamingPlugin"),
        limits=limits,
        sandbox=Sandbox(scratch=str(scratch)),
        on_failure="skip",
    )
    await host.add(ref("HealthyPlugin"))
    return worker_pid(host, "healthy")


async def crash(host: PluginHost) -> None:
    outcome = await host.call("step", data="crash")
    assert [(r.plugin, r.cause) for r in outcome.failures] == [("attacker", "crashed")]


async def check_attacker_named(host: PluginHost, bystander_pid: int | None) -> None:
    """After the renamed restart: the attacker is still "attacker" everywhere, can be
    removed by that name, and the bystander serves on from the same worker."""
    assert [p.name for p in host.plugins] == ["attacker", "healthy"]
    assert {r.plugin for r in host.reports} == {"attacker"}
    assert host.reports[-1].cause == "quarantined"
    refused = await host.call("step", data="quarantined")
    assert [(r.plugin, r.cause) for r in refused.failures] == [("attacker", "quarantined")]
    await host.remove("attacker")
    assert [p.name for p in host.plugins] == ["healthy"]
    outcome = await host.call("step", data="still")
    assert outcome.value == ["healthy", "still"] and outcome.called == ["healthy"]
    assert worker_pid(host, "healthy") == bystander_pid
    no_report_of(host, "healthy")


async def test_a_fresh_worker_cannot_take_another_plugins_name(
    tmpdir_checked: Path, attacker_scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plugbox.plugin")
    audit = attacker_scratch.parent / f"{attacker_scratch.name}.audit.jsonl"
    before = rss()
    limits = Limits(backoff_initial=0.0, warm_spare=False, max_failures=2)
    try:
        async with PluginHost(HOOKS, audit_path=audit) as host:
            bystander = await add_attacker_and_bystander(host, attacker_scratch, limits, 1)
            await crash(host)
            outcome = await host.call("step", data="after")  # a fresh worker, renamed
            (report,) = outcome.failures
            assert outcome.called == ["healthy"] and outcome.value == ["healthy", "after"]
            assert report.plugin == "attacker" and report.version == "6.6.6"
            assert report.cause == "protocol" and report.hook == "step"
            assert report.detail == (
                "while loading: a restarted worker's Handshake claims name 'healthy', but "
                "the plugin was registered with name 'attacker'"
            )
            await check_attacker_named(host, bystander)
            records = [json.loads(line) for line in audit.read_text().splitlines()]
        rss_within_bound(before)
    finally:
        audit.unlink(missing_ok=True)
    # the trail names the bystander only for the bystander's own worker
    served = {r["pid"] for r in records if r.get("plugin") == "healthy" and "pid" in r}
    assert served == {bystander}
    assert [r["event"] for r in records if r.get("plugin") == "attacker"][-1] == "remove"
    # the impostor's log, sent before its Handshake, went out under its registered name
    renamed = [r for r in caplog.records if "renamed after" in r.getMessage()]
    assert renamed and {r.name for r in renamed} == {"plugbox.plugin.attacker"}


async def test_a_resumed_standby_cannot_take_another_plugins_name(
    tmpdir_checked: Path, attacker_scratch: Path
) -> None:
    before = rss()
    limits = Limits(backoff_initial=0.0, warm_spare=True, max_failures=3)
    async with PluginHost(HOOKS) as host:
        bystander = await add_attacker_and_bystander(host, attacker_scratch, limits, 2)
        attacker = supervised(host, "attacker")
        await crash(host)
        ok = await host.call("step", data=1)  # an honest restart; a standby is made after
        assert ok.value == ["healthy", ["answered as attacker", 1]]
        if attacker.standby.launching is not None:
            await attacker.standby.launching.wait()
        spare = attacker.standby.worker
        assert spare is not None and await spare.wait_confined()
        await crash(host)
        # resumes the standby (none of the plugin's code ran in it before), with the call
        # sent right behind Resume (no version pin, no strict sandbox): the worker may
        # run it, renamed, but its answer is never taken
        outcome = await host.call("step", data="after")
        assert spare.calls == 1, "the call was not sent with Resume"
        (report,) = outcome.failures
        assert report.plugin == "attacker" and report.cause == "protocol"
        assert report.pid == spare.pid and report.detail.endswith(
            "claims name 'healthy', but the plugin was registered with name 'attacker'"
        )
        assert outcome.called == ["healthy"] and outcome.value == ["healthy", "after"]
        assert attacker.name == "attacker" and attacker.worker is None
        await check_attacker_named(host, bystander)
    rss_within_bound(before)


# ---------------------------------------------------------------- blame
async def chain_host(
    host: PluginHost, producer: str, *, consumer_mb: int = 16, policy: OnFailure = "skip"
) -> int | None:
    """The producer (its failures quarantine it at the second), then the bystander
    with a ``consumer_mb`` frame cap: the bystander's worker pid."""
    await host.add(ref(producer), limits=Limits(max_failures=2), on_failure=policy)
    await host.add(ref("HealthyPlugin"), limits=Limits(max_message_mb=consumer_mb))
    return worker_pid(host, "healthy")


CHAINS = [
    (
        "DeepPlugin",
        "deep",
        16,
        "hook 'step': the value it returned cannot be passed on as argument 'data' "
        "(it broke the contract of what may cross): it nests deeper than 62 levels "
        "(the protocol's cap)",
    ),
    (
        "BigPlugin",
        "big",
        1,
        "hook 'step': the value it left as argument 'data' (2097157 bytes) cannot "
        "be sent to plugin 'healthy': Call of 2097171 bytes exceeds the "
        "1048576-byte frame cap",
    ),
]


@pytest.mark.parametrize(("producer", "name", "consumer_mb", "problem"), CHAINS)
@pytest.mark.parametrize("policy", ["skip", "raise"])
async def test_a_value_the_next_plugin_cannot_take_fails_its_producer(
    tmpdir_checked: Path,
    producer: str,
    name: str,
    consumer_mb: int,
    problem: str,
    policy: OnFailure,
) -> None:
    before = rss()
    async with PluginHost(HOOKS) as host:
        bystander = await chain_host(host, producer, consumer_mb=consumer_mb, policy=policy)
        producer_pid = worker_pid(host, name)
        for data in ("start", "again"):
            if policy == "raise":  # PluginProtocolError of the producer, out of host.call
                with pytest.raises(PluginProtocolError) as info:
                    await host.call("step", data=data)
                report = info.value.report
            else:  # the chain goes on with the last good value, the caller's
                outcome = await host.call("step", data=data)
                (report,) = outcome.failures
                assert outcome.called == ["healthy"] and outcome.value == ["healthy", data]
            assert (report.plugin, report.cause, report.hook) == (name, "protocol", "step")
            assert report.detail == problem
        # its worker was not suspect and lives on; the failures quarantined it
        assert worker_pid(host, name) == producer_pid
        assert host.reports[-1].cause == "quarantined" and host.reports[-1].plugin == name
        if policy == "raise":
            with pytest.raises(PluginQuarantined):
                await host.call("step", data="quarantined")
        await host.remove(name)
        outcome = await host.call("step", data="still")
        assert outcome.value == ["healthy", "still"] and outcome.called == ["healthy"]
        assert worker_pid(host, "healthy") == bystander
        no_report_of(host, "healthy")
    rss_within_bound(before)


async def test_a_value_of_a_type_that_cannot_cross_fails_its_producer(
    tmpdir_checked: Path,
) -> None:
    """A msgpack extension type never reaches the next plugin: the host refuses the
    producer's reply as it decodes it (the producer's worker is killed)."""
    async with PluginHost(HOOKS) as host:
        bystander = await chain_host(host, "ExtPlugin")
        outcome = await host.call("step", data="start")
        (report,) = outcome.failures
        assert (report.plugin, report.cause) == ("ext", "protocol")
        assert "exceeds max_ext_len(0)" in report.detail
        assert outcome.called == ["healthy"] and outcome.value == ["healthy", "start"]
        assert worker_pid(host, "healthy") == bystander
        no_report_of(host, "healthy")


async def test_a_mutable_argument_the_next_plugin_cannot_take_fails_who_changed_it(
    tmpdir_checked: Path,
) -> None:
    before = rss()
    audit = tmpdir_checked.parent / f"{tmpdir_checked.name}.audit.jsonl"
    try:
        async with PluginHost(HOOKS, audit_path=audit) as host:
            await host.add(ref("MutatingPlugin"), on_failure="skip")
            await host.add(ref("HealthyPlugin"), limits=Limits(max_message_mb=1))
            bystander = worker_pid(host, "healthy")
            ctx = {"user": "u1"}
            outcome = await host.call("handle", request="r", ctx=ctx)
            (report,) = outcome.failures
            assert (report.plugin, report.cause) == ("mutating", "protocol")
            assert report.detail == (
                "hook 'handle': the value it left as argument 'ctx' (2097171 bytes) "
                "cannot be sent to plugin 'healthy': Call of 2097196 bytes exceeds the "
                "1048576-byte frame cap"
            )
            # the bystander saw the caller's ctx, which is the caller's own dict again
            assert outcome.value == {"request": "r", "ctx_keys": ["user"]}
            assert outcome.called == ["healthy"] and ctx == {"user": "u1"}
            assert outcome.args["ctx"] is ctx
            assert worker_pid(host, "healthy") == bystander
            no_report_of(host, "healthy")
        records = [json.loads(line) for line in audit.read_text().splitlines()]
    finally:
        audit.unlink(missing_ok=True)
    calls = [(r["plugin"], r["outcome"]) for r in records if r["event"] == "call"]
    assert calls == [("mutating", "ok"), ("mutating", "protocol"), ("healthy", "ok")]
    rss_within_bound(before)


async def test_the_callers_own_argument_over_a_frame_cap_is_a_type_error(
    tmpdir_checked: Path,
) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(ref("HealthyPlugin"), limits=Limits(max_message_mb=1))
        pid = worker_pid(host, "healthy")
        with pytest.raises(TypeError, match=r"hook 'step': the arguments \('data': 2097157 "):
            await host.call("step", data=b"x" * (2 << 20))
        assert (await host.call("step", data=1)).value == ["healthy", 1]
        assert worker_pid(host, "healthy") == pid and host.reports == []


# ---------------------------------------------------------------- as a user
def test_an_ordinary_users_host_keeps_names_and_blame() -> None:
    done, tmp, left = run_as_ordinary_user(
        [USER_HOST, "identity"], prefix="plugbox-test-hostile-identity-"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    found: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["uid"] != 0 and found["tmpdir"] == tmp
    got = found["renamed"]
    assert got["crash"] == [["attacker", "crashed"]]
    assert got["after"] == [["healthy", "after"], ["healthy"]]
    assert got["reports"] == [
        [
            "attacker",
            "6.6.6",
            "protocol",
            "step",
            "while loading: a restarted worker's Handshake claims name 'healthy', but "
            "the plugin was registered with name 'attacker'",
        ]
    ]
    assert got["names"] == ["attacker", "healthy"] and got["blamed"] == ["attacker"]
    assert got["last"] == "quarantined"
    assert got["refused"] == [["attacker", "quarantined"]]
    assert got["impostor_log"] == ["plugbox.plugin.attacker"]
    figures = [("renamed", got)]
    for _, name, _, problem in CHAINS:
        for policy in ("skip", "raise"):
            got = found[f"{name}_{policy}"]
            error = "PluginProtocolError" if policy == "raise" else None
            assert got["failures"] == [[error, name, "protocol", "step", problem]] * 2
            assert got["producer_lives"] and got["last"] == [name, "quarantined"]
            figures.append((f"{name}_{policy}", got))
    for what, got in figures:
        assert got["still"] == [["healthy", "still"], ["healthy"]], what
        assert got["same_bystander"] and got["bystander_blamed"] == [], what
        print(f"user host, {what}: peak RSS +{got['peak_kb'] / 1024:.1f} MB")
    for what, got in figures:
        assert got["peak_kb"] << 10 < RSS_BOUND, (what, got["peak_kb"])


# ---------------------------------------------------------------- blame, unit
class FakeCallee:
    """A plugin as ``call_hook`` sees it: answers ``answer(data)``; a Call over ``cap``
    bytes of arguments raises as the worker's send does."""

    def __init__(self, name: str, answer: Any, cap: int = 1 << 20) -> None:
        self.name, self.answer, self.cap = name, answer, cap
        self.hooks = {"c": ["data"]}
        self.closed = False
        self.options = PluginOptions(ref=name, on_failure="skip")
        self.got: list[Any] = []

    async def invoke(self, hook: str, args: dict[str, Any], packed: dict[str, bytes]) -> Any:
        size = sum(map(len, packed.values()))
        if size > self.cap:
            raise LocalProtocolError(f"Call of {size} bytes exceeds the cap", side="host")
        self.got.append(args["data"])
        return self.answer(args["data"]), {}

    def refuse(self, hook: str, detail: str) -> PluginFailure:
        report = FailureReport(
            plugin=self.name, version="1", hook=hook, cause="protocol", detail=detail
        )
        return PluginProtocolError(report)


async def test_blame_goes_back_producer_by_producer_to_the_last_good_value() -> None:
    chain = HookSpec(name="c", args=("data",), mode="chain")
    a = FakeCallee("a", lambda data: b"a" * 3000)
    b = FakeCallee("b", lambda data: b"b" * 2000)
    c = FakeCallee("c", lambda data: ["c", data], cap=1000)
    outcome = await call_hook(chain, [a, b, c], {"data": "start"})  # type: ignore[list-item]
    # b's value (2000 bytes) is too large for c: b fails, and c would get a's value
    # (3000 bytes), also too large: a fails, and c gets the caller's
    assert [(r.plugin, r.detail) for r in outcome.failures] == [
        (
            "b",
            "hook 'c': the value it left as argument 'data' (2003 bytes) cannot be sent "
            "to plugin 'c': Call of 2003 bytes exceeds the cap",
        ),
        (
            "a",
            "hook 'c': the value it left as argument 'data' (3003 bytes) cannot be sent "
            "to plugin 'c': Call of 3003 bytes exceeds the cap",
        ),
    ]
    assert outcome.called == ["c"] and c.got == ["start"] and outcome.value == ["c", "start"]


async def test_a_value_too_deep_to_pass_on_is_refused_before_anything_is_applied() -> None:
    from plugbox.host.calling import Handoff

    mutable = HookSpec(name="c", args=("data",), mode="first_result", mutable=("data",))
    handoff = Handoff(mutable, None)
    args, packed = {"data": {"k": 1}}, {"data": b"\x81\xa1k\x01"}
    who = FakeCallee("p", None)
    problem = handoff.take(who, args, packed, None, {"data": nested(63)})  # type: ignore[arg-type]
    assert problem == (
        "hook 'c': the value it left cannot be passed on as argument 'data' (it broke the "
        "contract of what may cross): it nests deeper than 62 levels (the protocol's cap)"
    )
    assert args == {"data": {"k": 1}} and packed == {"data": b"\x81\xa1k\x01"}
    assert handoff.take(who, args, packed, None, {"data": nested(62)}) is None  # type: ignore[arg-type]
    assert args == {"data": nested(62)}


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth - 1):
        value = [value]
    return value
