"""A real worker writes hypothesis-generated garbage on its channel: the host kills it,
reports ``PluginProtocolError`` (cause ``protocol``) naming what was wrong, restarts
it at the next call, and serves on, every time.

Starting a worker per example is slow, so hypothesis does not drive the host here: it
draws a fixed, derandomized set of byte strings up front (``garbage()``), and one host
takes them all in turn. Each string is kept only if the sans-IO decoder, given the host's
limits, refuses it outright (before any message and without waiting for more bytes), so
the verdict the host must reach is known exactly: the report's detail is the decoder's
error, word for word. ``tests/protocol/test_fuzz_protocol.py`` covers the decoder itself.

Also here: well-formed messages out of place (a reply to no call, a second Handshake or
Confined), a Handshake rewritten by the plugin's own code,
and values nested deeper than the protocol allows, which each side now refuses to send
instead of having the peer kill or die over them.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginLoadError, PluginProtocolError, PluginRaised
from plugbox.protocol import (
    MAX_VALUE_DEPTH,
    PROTOCOL_VERSION,
    WORKER_TO_HOST,
    Confined,
    FrameDecoder,
    FrameLimits,
    Handshake,
    Log,
    RemoteProtocolError,
    Result,
    encode,
    pack,
)

pytestmark = pytest.mark.anyio

WIRE = str(Path(__file__).parents[1] / "plugins" / "storm_wire.py")
EXAMPLES = int(os.environ.get("PLUGBOX_FUZZ_WORKER_EXAMPLES", "12"))
#: restarts are the point: no backoff, and no quarantine however many there are
LIMITS = Limits(backoff_initial=0, max_failures=10_000)
HOST_LIMITS = FrameLimits(max_frame_bytes=LIMITS.max_message_mb << 20)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def framed(bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return bodies.map(lambda body: struct.pack(">I", len(body)) + body)


#: what a broken or hostile worker might write
GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=512),  # mostly a header announcing too much
    framed(st.binary(min_size=1, max_size=512)),  # a frame of noise
    framed(
        st.tuples(st.integers(-2, 30), st.lists(VALUES, max_size=8)).map(
            lambda p: pack([p[0], *p[1]])
        )
    ),  # a message array of any tag and fields
    framed(VALUES.map(pack)),  # msgpack, but not a message
    # a valid Log first (the host takes it), then a frame of noise
    st.tuples(st.text(max_size=20), st.binary(min_size=1, max_size=64)).map(
        lambda p: (
            encode(Log(level=20, logger="fuzz", message=p[0])) + struct.pack(">I", len(p[1])) + p[1]
        )
    ),
)


def refusal(data: bytes) -> RemoteProtocolError | None:
    """The error a decoder with the host's limits raises on ``data`` before it yields
    anything but Log messages, or None if it accepts it or waits for more."""
    decoder = FrameDecoder(peer="worker", accept=WORKER_TO_HOST, limits=HOST_LIMITS)
    decoder.feed(data, now=0.0)
    try:
        while (message := decoder.next_message(now=0.0)) is not None:
            if not isinstance(message, Log):
                return None
    except RemoteProtocolError as exc:
        return exc
    return None


@functools.cache
def garbage() -> tuple[bytes, ...]:
    """``EXAMPLES`` byte strings the decoder refuses, drawn by hypothesis (fixed seed)."""
    found: list[bytes] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
    )
    @given(GARBAGE)
    def collect(data: bytes) -> None:
        assume(refusal(data) is not None)
        found.append(data)

    collect()
    return tuple(found)


def test_the_garbage_is_varied() -> None:
    drawn = garbage()
    assert len(drawn) == len(set(drawn)) >= EXAMPLES * 3 // 4
    reasons = {str(refusal(data)).split(":")[1] for data in drawn}
    assert len(reasons) >= 3, reasons


async def test_a_worker_writing_garbage_is_killed_and_the_host_serves_on(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(WIRE, limits=LIMITS)
        await host.add(behave)  # a sibling, unaffected throughout
        for restarts, data in enumerate(garbage()):
            expected = refusal(data)
            with pytest.raises(PluginProtocolError) as info:
                await host.call("process", input_data={"send": data})
            report = info.value.report
            assert (report.plugin, report.cause, report.restarts) == (
                "wire",
                "protocol",
                restarts,
            ), data
            assert report.detail == str(expected), data
            assert report.killed and report.signal == "SIGKILL"
            assert report.pid is not None and not pid_alive(report.pid)
            # both plugins answer: the wire plugin from a fresh worker
            out = await host.call("process", input_data={"do": "echo"})
            assert out.called == ["wire", "behave"]
        assert [r.cause for r in host.reports] == ["protocol"] * len(garbage())


@pytest.mark.parametrize(
    "data",
    [
        encode(Result(id=999, value=None)),
        encode(Handshake(protocol=1, plugin="again", version="1", hooks={}, pid=1)),
        encode(Confined(layers={"seccomp": True}, pid=1, baseline_rss_kb=1)),
    ],
    ids=["reply-to-no-call", "second-handshake", "confined-after-handshake"],
)
async def test_well_formed_messages_out_of_place_are_protocol_errors_too(data: bytes) -> None:
    # the decoder accepts these; the host's dispatch refuses them
    assert refusal(data) is None
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(WIRE, limits=LIMITS)
        with pytest.raises(PluginProtocolError) as info:
            await host.call("process", input_data={"send": data})
        assert info.value.report.cause == "protocol"
        assert info.value.report.detail.startswith("worker broke the protocol: ")
        assert (await host.call("process", input_data={"x": 1})).value == {"x": 1}


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_a_value_nested_too_deep_is_refused_by_its_sender_and_kills_no_worker() -> None:
    # Once, the host sent a too-deep argument, and the worker, refusing the frame, died:
    # a crash charged to the plugin (counted toward its quarantine). And a plugin
    # returning one was killed for a protocol error. Now each side refuses to send it.
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(WIRE, limits=LIMITS)
        with pytest.raises(TypeError, match=f"nests deeper than {MAX_VALUE_DEPTH} levels"):
            await host.call("process", input_data=nested(MAX_VALUE_DEPTH + 1))
        out = await host.call("process", input_data=nested(MAX_VALUE_DEPTH))
        assert out.value == nested(MAX_VALUE_DEPTH)
        # a returned value may nest as deep as an argument, no deeper, so that a chain
        # can hand it to the next plugin (a Result frame could hold one level more)
        assert (await host.call("process", input_data={"nest": MAX_VALUE_DEPTH})).value == (
            nested(MAX_VALUE_DEPTH)
        )
        with pytest.raises(PluginRaised) as raised:
            await host.call("process", input_data={"nest": MAX_VALUE_DEPTH + 1})
        report = raised.value.report
        assert report.exc_type == "TypeError"
        assert f"nests deeper than {MAX_VALUE_DEPTH + 1} levels" in (report.exc_message or "")
        assert host.reports == [report]
        assert host.plugins[0].pid == info.pid and host.plugins[0].restarts == 0


async def test_a_chain_passes_the_deepest_value_on_without_killing_the_next_worker(
    behave: str,
) -> None:
    # process is a chain: the wire plugin's deepest value becomes behave's argument
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(WIRE, limits=LIMITS)
        await host.add(behave, limits=LIMITS)
        out = await host.call("process", input_data={"nest": MAX_VALUE_DEPTH})
        assert out.value == nested(MAX_VALUE_DEPTH) and out.called == ["wire", "behave"]
        assert host.reports == [] and [p.restarts for p in host.plugins] == [0, 0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


FORGED = str(Path(__file__).parents[1] / "plugins" / "forged_handshake.py")


@pytest.mark.parametrize(
    ("hooks", "claim"),
    [
        ({"process": ["input_data"], "no_such_hook": ["x"]}, "claims hook 'no_such_hook'"),
        ({"process": ["input_data", "bogus"]}, "claims hook 'process' takes"),
        ({"process": ["input_data", "input_data"]}, "claims hook 'process' takes"),
    ],
    ids=["unknown-hook", "unknown-argument", "argument-twice"],
)
async def test_a_handshake_claiming_what_the_host_did_not_offer_is_a_protocol_error(
    behave: str, hooks: dict[str, list[str]], claim: str
) -> None:
    # The Handshake is sent after the plugin's code ran, so a plugin can rewrite it; the
    # host once took its list of arguments on trust and raised KeyError at every call
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave)
        with pytest.raises(PluginLoadError) as info:
            await host.add(FORGED, config={"hooks": hooks})
        report = info.value.report
        assert report is not None and report.cause == "protocol"
        assert claim in report.detail
        assert [p.name for p in host.plugins] == ["behave"]
        assert (await host.call("process", input_data={"x": 1})).called == ["behave"]


@pytest.mark.parametrize(
    ("config", "claim"),
    [
        (
            {"layers": {"seccomp": True, "landlock_filesystem": True, "user_namespace": True}},
            "sandbox layers differ",
        ),
        ({"layers": {"made_up_layer": True}}, "['made_up_layer']"),
        ({"baseline_rss_kb": 4 << 20}, "baseline RSS (4194304 KiB) differs"),
        ({"pid": 1}, "the Handshake names pid 1, not the"),
    ],
    ids=["layers-claimed", "layer-added", "baseline-inflated", "pid-of-init"],
)
async def test_a_handshake_rewritten_to_claim_more_sandbox_or_memory_is_a_protocol_error(
    behave: str, config: dict[str, object], claim: str
) -> None:
    # The layers the Handshake claims decide Sandbox(strict=True), its baseline RSS is
    # what the memory cap counts from, its pid the process the host watches and kills:
    # a plugin that rewrote them could pass a strict host unconfined, grow 4 GiB past
    # its cap, or name another process. The worker states all three (Confined) before
    # the plugin's code runs, and the host holds the Handshake to that.
    sandbox = Sandbox(seccomp=False, landlock=False, namespaces=False)
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave)
        with pytest.raises(PluginLoadError) as info:
            await host.add(FORGED, config=config, sandbox=sandbox)
        report = info.value.report
        assert report is not None and report.cause == "protocol"
        assert claim in report.detail
        assert [p.name for p in host.plugins] == ["behave"]
        assert (await host.call("process", input_data={"x": 1})).called == ["behave"]


async def test_a_handshake_for_another_protocol_version_is_a_protocol_error(behave: str) -> None:
    # A worker from another plugbox (another interpreter, an older install) may frame
    # its messages alike and mean other things by them: the host refuses its Handshake
    # and names both versions
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(behave)
        with pytest.raises(PluginLoadError) as info:
            await host.add(FORGED, config={"protocol": PROTOCOL_VERSION + 1})
        report = info.value.report
        assert report is not None and report.cause == "protocol"
        assert report.detail == (
            f"while loading: worker broke the protocol: the Handshake is for protocol "
            f"version {PROTOCOL_VERSION + 1}; the host speaks version {PROTOCOL_VERSION}"
        )
        assert [p.name for p in host.plugins] == ["behave"]
        assert (await host.call("process", input_data={"x": 1})).called == ["behave"]


async def test_an_unforged_handshake_from_the_same_plugin_loads(behave: str) -> None:
    # the control for the test above: the plugin that rewrites nothing loads and serves
    async with PluginHost(specs.PIPELINE) as host:
        plugin = await host.add(FORGED, config={})
        assert plugin.name == "forged"
        assert (await host.call("process", input_data={"x": 1})).value == {"x": 1}
