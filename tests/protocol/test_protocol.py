"""Tests for ``plugbox.protocol``, with bytes alone: no sockets, no processes, no clock.

Covers message construction and validation, the wire layout, encode/decode round trips
for every message type and direction, ``FrameDecoder`` buffering and caps, the
partial-frame deadline, and the errors (which side broke the protocol, and that a
broken decoder stays broken).
"""

from __future__ import annotations

import dataclasses
import math
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest

from plugbox.protocol import (
    DEFAULT_LIMITS,
    HEADER_SIZE,
    HOST_TO_WORKER,
    HOST_TO_ZYGOTE,
    LOAD_CALL_ID,
    PROTOCOL_VERSION,
    WORKER_TO_HOST,
    ZYGOTE_TO_HOST,
    Call,
    Cancel,
    Confined,
    Error,
    Exited,
    FrameDecoder,
    FrameLimits,
    Handshake,
    LocalProtocolError,
    Log,
    Message,
    ProtocolError,
    RemoteProtocolError,
    Result,
    Resume,
    Shutdown,
    Spawn,
    Spawned,
    Start,
    decode_body,
    encode,
    pack,
)

ALL_TYPES: tuple[type[Message], ...] = (
    Start,
    Confined,
    Handshake,
    Call,
    Result,
    Error,
    Log,
    Cancel,
    Shutdown,
    Resume,
    Spawn,
    Spawned,
    Exited,
)

#: direction name -> (messages it carries, name of the peer that sends them)
DIRECTIONS: dict[str, tuple[frozenset[type[Message]], str]] = {
    "HOST_TO_WORKER": (HOST_TO_WORKER, "host"),
    "WORKER_TO_HOST": (WORKER_TO_HOST, "worker"),
    "HOST_TO_ZYGOTE": (HOST_TO_ZYGOTE, "host"),
    "ZYGOTE_TO_HOST": (ZYGOTE_TO_HOST, "zygote"),
}


def frame(body: bytes) -> bytes:
    """A frame around ``body``, built by hand (independent of ``encode``)."""
    return struct.pack(">I", len(body)) + body


def wire_of(message: Message) -> list[Any]:
    """The wire array of ``message``, built from its dataclass fields."""
    return [message.TAG, *(getattr(message, f.name) for f in dataclasses.fields(message))]


def worker_decoder(limits: FrameLimits = DEFAULT_LIMITS) -> FrameDecoder:
    return FrameDecoder(peer="worker", accept=WORKER_TO_HOST, limits=limits)


def direction_of(message: Message) -> tuple[frozenset[type[Message]], str]:
    for accept, peer in DIRECTIONS.values():
        if type(message) in accept:
            return accept, peer
    raise AssertionError(f"{type(message).__name__} is in no direction")


@contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """Measure the peak of Python allocations (bytes) made inside the block."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result: list[int] = [0]
    try:
        yield lambda: result[0]
    finally:
        result[0] = tracemalloc.get_traced_memory()[1] - base
        if not was_tracing:
            tracemalloc.stop()


def nested_list(depth: int) -> list[Any]:
    """``depth`` levels of lists, the innermost empty: ``nested_list(3) == [[[]]]``."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --------------------------------------------------------------------------- samples

SAMPLES: list[Message] = [
    Start(ref="pkg.module:Plugin"),
    Start(
        ref="pkg.module:Plugin",
        config={"threshold": 3, "names": ["a", "b"], "nested": {"x": None}},
        hooks={"on_event": {"args": ["event", "ctx"], "mutable": ["ctx"]}},
        limits={"memory_mb": 256, "cpu_seconds": 2.5},
        sandbox={"network": False, "paths": ["/tmp"]},
        inline=b"class Plugin:\n    pass\n\x00\xff",
    ),
    Start(
        ref="plugin.py",
        limits={"memory_mb": None, "cpu_seconds": None, "open_files": 64, "max_message_mb": 1},
        sha256="0123456789abcdef" * 4,
        distribution=True,
        initialize=False,
        standby=True,
        log_level=10,
    ),
    Confined(layers={}, pid=1),
    Confined(layers={"seccomp": True, "landlock_tcp": False}, pid=4242, baseline_rss_kb=9000),
    Handshake(protocol=PROTOCOL_VERSION, plugin="demo", version="1.2.3", hooks={}, pid=4242),
    Handshake(
        protocol=PROTOCOL_VERSION,
        plugin="demo",
        version="",
        pid=1,
        hooks={"on_event": ["event"], "on_start": []},
        problems=["method 'on_evnt' looks like a hook the spec does not have"],
    ),
    Call(id=1, hook="on_event", args={}),
    Call(
        id=2**63,
        hook="on_event",
        args={
            "event": {"kind": "x", "n": [1, 2.5, None]},
            "blob": b"\x00\x01",
            "text": "h\u00e9llo \u2603",
        },
    ),
    Result(id=1, value=None),
    Result(
        id=7,
        value={"ok": True, 1: "int key", "neg": -(2**63), "big": 2**64 - 1},
        changed={"ctx": {"seen": [1, 2, 3]}},
    ),
    Result(id=8, value=[b"bytes", "str", 0.1, -0.0, math.inf, [], {}]),
    Error(id=LOAD_CALL_ID, exc_type="ImportError", message="no module named 'x'"),
    Error(
        id=3,
        exc_type="ValueError",
        message="bad",
        traceback="Traceback ...\n",
        chain=["ValueError", "MemoryError"],
    ),
    Error(
        id=LOAD_CALL_ID,
        exc_type="PluginIntegrityError",
        message="integrity check failed",
        details={"what": "the bytes of /p.py", "expected": "0" * 64, "actual": "f" * 64},
    ),
    Log(level=20, logger="plugin.demo", message="hello"),
    Log(level=-5, logger="", message=""),
    Cancel(id=9),
    Shutdown(),
    Resume(),
    Spawn(request=1),
    Spawned(request=1, pid=1234),
    Spawned(request=2, pid=0, error="fork failed: EAGAIN"),
    Exited(pid=1234, exit_code=0, signal=None),
    Exited(pid=1234, exit_code=None, signal=9, max_rss_kb=10240, user_cpu=0.25, system_cpu=1.5),
]


def sample_id(message: Message) -> str:
    return type(message).__name__


def one_of_each() -> dict[type[Message], Message]:
    seen: dict[type[Message], Message] = {}
    for message in SAMPLES:
        seen.setdefault(type(message), message)
    return seen


def test_samples_cover_every_message_type() -> None:
    assert set(one_of_each()) == set(ALL_TYPES)


# --------------------------------------------------------------------------- tags, directions


def test_tags_are_stable_and_unique() -> None:
    tags = {cls: cls.TAG for cls in ALL_TYPES}
    assert tags == {
        Start: 0,
        Handshake: 1,
        Call: 2,
        Result: 3,
        Error: 4,
        Log: 5,
        Cancel: 6,
        Shutdown: 7,
        Confined: 8,
        Resume: 9,
        Spawn: 20,
        Spawned: 21,
        Exited: 22,
    }


def test_directions_partition_the_message_types() -> None:
    sets = [accept for accept, _ in DIRECTIONS.values()]
    assert frozenset().union(*sets) == frozenset(ALL_TYPES)
    assert sum(len(s) for s in sets) == len(ALL_TYPES)  # pairwise disjoint
    assert {Start, Call, Cancel, Shutdown, Resume} == HOST_TO_WORKER
    assert {Confined, Handshake, Result, Error, Log} == WORKER_TO_HOST
    assert {Spawn} == HOST_TO_ZYGOTE
    assert {Spawned, Exited} == ZYGOTE_TO_HOST


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize("message", [m for m in SAMPLES if dataclasses.fields(m)], ids=sample_id)
def test_messages_are_frozen(message: Message) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, dataclasses.fields(message)[0].name, 1)


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Call(1, "on_event", {})  # type: ignore[misc]
    with pytest.raises(TypeError):
        Cancel(1)  # type: ignore[misc]


BAD_CONSTRUCTIONS: list[tuple[str, type[Message], dict[str, Any]]] = [
    ("start-ref-empty", Start, {"ref": ""}),
    ("start-ref-not-str", Start, {"ref": b"pkg:P"}),
    ("start-config-not-map", Start, {"ref": "p:P", "config": [("a", 1)]}),
    ("start-config-int-key", Start, {"ref": "p:P", "config": {1: "a"}}),
    ("start-hooks-bytes-key", Start, {"ref": "p:P", "hooks": {b"h": {}}}),
    ("start-limits-none", Start, {"ref": "p:P", "limits": None}),
    ("start-sandbox-int-key", Start, {"ref": "p:P", "sandbox": {0: True}}),
    ("start-inline-str", Start, {"ref": "p:P", "inline": "source"}),
    ("start-inline-bytearray", Start, {"ref": "p:P", "inline": bytearray(b"x")}),
    ("start-limits-unknown-name", Start, {"ref": "p:P", "limits": {"sha256": "ab"}}),
    ("start-limits-not-a-limit", Start, {"ref": "p:P", "limits": {"standby": True}}),
    ("start-limits-zero", Start, {"ref": "p:P", "limits": {"open_files": 0}}),
    ("start-limits-str", Start, {"ref": "p:P", "limits": {"stack_kb": "1024"}}),
    ("start-limits-bool", Start, {"ref": "p:P", "limits": {"file_size_mb": True}}),
    ("start-limits-none-not-allowed", Start, {"ref": "p:P", "limits": {"open_files": None}}),
    ("start-sha256-short", Start, {"ref": "p:P", "sha256": "ab" * 31}),
    ("start-sha256-not-hex", Start, {"ref": "p:P", "sha256": "g" * 64}),
    ("start-sha256-bytes", Start, {"ref": "p:P", "sha256": b"a" * 64}),
    ("start-standby-int", Start, {"ref": "p:P", "standby": 1}),
    ("start-distribution-none", Start, {"ref": "p:P", "distribution": None}),
    ("start-initialize-str", Start, {"ref": "p:P", "initialize": "no"}),
    ("start-log-level-str", Start, {"ref": "p:P", "log_level": "INFO"}),
    ("start-log-level-bool", Start, {"ref": "p:P", "log_level": True}),
    (
        "handshake-protocol-str",
        Handshake,
        {"protocol": "1", "plugin": "p", "version": "1", "hooks": {}, "pid": 1},
    ),
    (
        "handshake-plugin-empty",
        Handshake,
        {"protocol": 1, "plugin": "", "version": "1", "hooks": {}, "pid": 1},
    ),
    (
        "handshake-version-none",
        Handshake,
        {"protocol": 1, "plugin": "p", "version": None, "hooks": {}, "pid": 1},
    ),
    (
        "handshake-hooks-values-not-lists",
        Handshake,
        {"protocol": 1, "plugin": "p", "version": "1", "hooks": {"h": "event"}, "pid": 1},
    ),
    (
        "handshake-hooks-args-not-str",
        Handshake,
        {"protocol": 1, "plugin": "p", "version": "1", "hooks": {"h": [1]}, "pid": 1},
    ),
    (
        "handshake-pid-zero",
        Handshake,
        {"protocol": 1, "plugin": "p", "version": "1", "hooks": {}, "pid": 0},
    ),
    (
        "handshake-problems-not-str",
        Handshake,
        {"protocol": 1, "plugin": "p", "version": "1", "hooks": {}, "pid": 1, "problems": [1]},
    ),
    ("call-id-zero", Call, {"id": 0, "hook": "h", "args": {}}),
    ("call-id-negative", Call, {"id": -1, "hook": "h", "args": {}}),
    ("call-id-float", Call, {"id": 1.0, "hook": "h", "args": {}}),
    ("call-id-str", Call, {"id": "1", "hook": "h", "args": {}}),
    ("call-hook-empty", Call, {"id": 1, "hook": "", "args": {}}),
    ("call-hook-not-str", Call, {"id": 1, "hook": None, "args": {}}),
    ("call-args-int-key", Call, {"id": 1, "hook": "h", "args": {1: "x"}}),
    ("call-args-not-map", Call, {"id": 1, "hook": "h", "args": ["x"]}),
    ("call-missing-args", Call, {"id": 1, "hook": "h"}),
    ("result-id-zero", Result, {"id": 0, "value": None}),
    ("result-id-none", Result, {"id": None, "value": None}),
    ("result-changed-int-key", Result, {"id": 1, "value": None, "changed": {1: 2}}),
    ("result-missing-value", Result, {"id": 1}),
    ("error-id-negative", Error, {"id": -1, "exc_type": "E", "message": "m"}),
    ("error-exc-type-not-str", Error, {"id": 1, "exc_type": ValueError, "message": "m"}),
    ("error-message-bytes", Error, {"id": 1, "exc_type": "E", "message": b"m"}),
    ("error-traceback-none", Error, {"id": 1, "exc_type": "E", "message": "m", "traceback": None}),
    (
        "error-chain-not-str",
        Error,
        {"id": 1, "exc_type": "E", "message": "m", "chain": [ValueError]},
    ),
    ("error-chain-str", Error, {"id": 1, "exc_type": "E", "message": "m", "chain": "ValueError"}),
    ("error-details-list", Error, {"id": 0, "exc_type": "E", "message": "m", "details": ["x"]}),
    (
        "error-details-value-not-str",
        Error,
        {"id": 0, "exc_type": "E", "message": "m", "details": {"actual": 1}},
    ),
    (
        "error-details-int-key",
        Error,
        {"id": 0, "exc_type": "E", "message": "m", "details": {1: "x"}},
    ),
    ("log-level-str", Log, {"level": "INFO", "logger": "l", "message": "m"}),
    ("log-logger-none", Log, {"level": 20, "logger": None, "message": "m"}),
    ("log-message-bytes", Log, {"level": 20, "logger": "l", "message": b"m"}),
    ("cancel-id-zero", Cancel, {"id": 0}),
    ("cancel-id-str", Cancel, {"id": "1"}),
    ("shutdown-unknown-field", Shutdown, {"now": True}),
    ("spawn-request-zero", Spawn, {"request": 0}),
    ("spawn-request-float", Spawn, {"request": 1.5}),
    ("spawned-request-zero", Spawned, {"request": 0, "pid": 1}),
    ("spawned-pid-negative", Spawned, {"request": 1, "pid": -1}),
    ("spawned-error-none", Spawned, {"request": 1, "pid": 0, "error": None}),
    ("exited-both-code-and-signal", Exited, {"pid": 1, "exit_code": 0, "signal": 9}),
    ("exited-neither-code-nor-signal", Exited, {"pid": 1, "exit_code": None, "signal": None}),
    ("exited-pid-zero", Exited, {"pid": 0, "exit_code": 0, "signal": None}),
    ("exited-exit-code-str", Exited, {"pid": 1, "exit_code": "0", "signal": None}),
    ("exited-signal-float", Exited, {"pid": 1, "exit_code": None, "signal": 9.0}),
    ("exited-max-rss-float", Exited, {"pid": 1, "exit_code": 0, "signal": None, "max_rss_kb": 1.5}),
    ("exited-user-cpu-str", Exited, {"pid": 1, "exit_code": 0, "signal": None, "user_cpu": "0.1"}),
    (
        "exited-system-cpu-none",
        Exited,
        {"pid": 1, "exit_code": 0, "signal": None, "system_cpu": None},
    ),
]


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(cls, kwargs) for _, cls, kwargs in BAD_CONSTRUCTIONS],
    ids=[name for name, _, _ in BAD_CONSTRUCTIONS],
)
def test_construction_rejects_wrong_fields(cls: type[Message], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        cls(**kwargs)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Call(id=True, hook="h", args={}),
        lambda: Cancel(id=True),
        lambda: Log(level=False, logger="l", message="m"),
        lambda: Spawn(request=True),
        lambda: Exited(pid=1, exit_code=False, signal=None),
    ],
    ids=["call-id", "cancel-id", "log-level", "spawn-request", "exited-exit-code"],
)
def test_construction_rejects_bool_for_int_fields(build: Callable[[], Message]) -> None:
    with pytest.raises(TypeError):
        build()


def test_edge_values_that_are_allowed() -> None:
    assert Error(id=LOAD_CALL_ID, exc_type="E", message="m").id == 0
    assert Spawned(request=1, pid=0, error="fork failed").pid == 0
    assert Exited(pid=1, exit_code=None, signal=15).signal == 15
    assert Exited(pid=1, exit_code=0, signal=None, user_cpu=1, system_cpu=2).user_cpu == 1
    assert Result(id=1, value=object()).id == 1  # any value; encoding decides later
    assert Start(ref="p:P", inline=None).inline is None


# --------------------------------------------------------------------------- wire layout


@pytest.mark.parametrize("message", SAMPLES, ids=sample_id)
def test_to_wire_is_tag_then_fields_in_declaration_order(message: Message) -> None:
    assert message.to_wire() == wire_of(message)


@pytest.mark.parametrize("message", SAMPLES, ids=sample_id)
def test_encode_is_length_header_then_msgpack_body(message: Message) -> None:
    data = encode(message)
    assert HEADER_SIZE == 4
    (size,) = struct.unpack(">I", data[:HEADER_SIZE])
    assert size == len(data) - HEADER_SIZE
    body = data[HEADER_SIZE:]
    assert body == pack(wire_of(message))
    assert msgpack.unpackb(body, raw=False, strict_map_key=False) == wire_of(message)


def test_shutdown_on_the_wire() -> None:
    assert encode(Shutdown()) == b"\x00\x00\x00\x02\x91\x07"


def test_pack_uses_bin_type_for_bytes_and_str_for_str() -> None:
    assert pack(b"\x00") == b"\xc4\x01\x00"
    assert pack("a") == b"\xa1a"
    assert pack([1, None, True]) == b"\x93\x01\xc0\xc3"


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, frozenset({1}), 1j, pack],
    ids=["object", "set", "frozenset", "complex", "function"],
)
def test_pack_rejects_unsupported_types(value: Any) -> None:
    with pytest.raises(TypeError):
        pack(value)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("message", SAMPLES, ids=sample_id)
def test_round_trip_through_frame_decoder(message: Message) -> None:
    accept, peer = direction_of(message)
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(encode(message), now=0.0)
    decoded = decoder.next_message(now=0.0)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoder.next_message(now=0.0) is None
    assert decoder.pending_bytes == 0


@pytest.mark.parametrize("message", SAMPLES, ids=sample_id)
def test_round_trip_through_decode_body(message: Message) -> None:
    accept, peer = direction_of(message)
    body = encode(message)[HEADER_SIZE:]
    assert decode_body(body, peer=peer, accept=accept) == message


def test_round_trip_keeps_bytes_and_str_apart() -> None:
    message = Result(id=1, value={"b": b"abc", "s": "abc", "k": {b"bk": 1, "sk": 2}})
    decoded = decode_body(encode(message)[HEADER_SIZE:], peer="worker", accept=WORKER_TO_HOST)
    assert isinstance(decoded, Result)
    assert decoded.value == {"b": b"abc", "s": "abc", "k": {b"bk": 1, "sk": 2}}
    assert type(decoded.value["b"]) is bytes
    assert type(decoded.value["s"]) is str


@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
def test_each_decoder_accepts_exactly_its_direction(direction: str, cls: type[Message]) -> None:
    accept, peer = DIRECTIONS[direction]
    message = one_of_each()[cls]
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(encode(message), now=0.0)
    if cls in accept:
        assert decoder.next_message(now=0.0) == message
    else:
        with pytest.raises(RemoteProtocolError) as info:
            decoder.next_message(now=0.0)
        assert info.value.side == peer
        assert f"{cls.__name__} is not a message the {peer} may send" in str(info.value)


def test_missing_trailing_defaults_are_filled_in() -> None:
    body = pack([Error.TAG, 5, "ValueError", "boom"])
    decoded = decode_body(body, peer="worker", accept=WORKER_TO_HOST)
    assert decoded == Error(id=5, exc_type="ValueError", message="boom")
    assert decode_body(pack([Shutdown.TAG]), peer="host", accept=HOST_TO_WORKER) == Shutdown()


# --------------------------------------------------------------------------- decoder buffering

STREAM: list[Message] = [
    Handshake(protocol=PROTOCOL_VERSION, plugin="demo", version="1", hooks={"h": []}, pid=9),
    Log(level=20, logger="demo", message="x" * 300),
    Result(id=1, value={"k": [1, 2, 3]}),
    Error(id=2, exc_type="KeyError", message="'k'"),
]
STREAM_BYTES = b"".join(encode(m) for m in STREAM)


def drain(decoder: FrameDecoder, now: float | None = None) -> list[Message]:
    out: list[Message] = []
    while (message := decoder.next_message(now)) is not None:
        out.append(message)
    return out


def test_empty_decoder_needs_more_bytes() -> None:
    decoder = worker_decoder()
    assert decoder.next_message() is None
    assert decoder.next_message(now=1.0) is None
    assert decoder.pending_bytes == 0
    assert decoder.peer == "worker"


def test_feed_byte_by_byte() -> None:
    decoder = worker_decoder()
    got: list[Message] = []
    ends = set()
    offset = 0
    for message in STREAM:
        offset += len(encode(message))
        ends.add(offset)
    for i in range(len(STREAM_BYTES)):
        decoder.feed(STREAM_BYTES[i : i + 1], now=float(i))
        new = drain(decoder, now=float(i))
        if i + 1 in ends:
            assert len(new) == 1
        else:
            assert new == []
            assert decoder.pending_bytes > 0
        got.extend(new)
    assert got == STREAM
    assert decoder.pending_bytes == 0


def test_several_frames_in_one_chunk() -> None:
    decoder = worker_decoder()
    decoder.feed(STREAM_BYTES, now=0.0)
    assert decoder.pending_bytes == len(STREAM_BYTES)
    assert drain(decoder, now=0.0) == STREAM
    assert decoder.pending_bytes == 0


def test_one_and_a_half_frames_then_the_rest() -> None:
    first, second = encode(STREAM[0]), encode(STREAM[1])
    cut = len(first) + len(second) // 2
    data = first + second
    decoder = worker_decoder()
    decoder.feed(data[:cut], now=0.0)
    assert decoder.next_message(now=0.0) == STREAM[0]
    assert decoder.next_message(now=0.0) is None
    assert decoder.pending_bytes == cut - len(first)
    decoder.feed(data[cut:], now=1.0)
    assert decoder.next_message(now=1.0) == STREAM[1]
    assert decoder.next_message(now=1.0) is None


def test_frame_split_at_every_position() -> None:
    data = encode(STREAM[2])
    for cut in range(len(data) + 1):
        decoder = worker_decoder()
        decoder.feed(data[:cut], now=0.0)
        if cut < len(data):
            assert decoder.next_message(now=0.0) is None, cut
            assert decoder.pending_bytes == cut
        decoder.feed(data[cut:], now=0.0)
        assert drain(decoder, now=0.0) == [STREAM[2]], cut


def test_feeding_nothing_is_a_no_op() -> None:
    decoder = worker_decoder()
    decoder.feed(b"", now=5.0)
    assert decoder.pending_bytes == 0
    assert decoder.deadline() is None
    assert decoder.next_message(now=5.0) is None


# --------------------------------------------------------------------------- caps


def assert_remote_error(
    info: pytest.ExceptionInfo[RemoteProtocolError], peer: str, *needles: str
) -> None:
    error = info.value
    assert isinstance(error, ProtocolError)
    assert error.side == peer
    assert str(error).startswith(f"{peer} broke the protocol: ")
    for needle in needles:
        assert needle in str(error), (needle, str(error))


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    limits = FrameLimits(max_frame_bytes=1024)
    decoder = worker_decoder(limits)
    decoder.feed(struct.pack(">I", 1025), now=0.0)  # the header only, no body yet
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker", "1025", "1024")


def test_huge_declared_frame_is_refused_from_its_header_alone() -> None:
    decoder = worker_decoder()
    decoder.feed(b"\xff\xff\xff\xff", now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker", str(2**32 - 1))


def test_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    sized = {len(pack(wire_of(Log(level=1, logger="l", message="m" * n)))): n for n in range(80)}
    message = Log(level=1, logger="l", message="m" * sized[64])
    data = encode(message, max_frame_bytes=64)
    assert len(data) == HEADER_SIZE + 64
    decoder = worker_decoder(FrameLimits(max_frame_bytes=64))
    decoder.feed(data, now=0.0)
    assert decoder.next_message(now=0.0) == message

    too_big = Log(level=1, logger="l", message="m" * sized[65])
    decoder = worker_decoder(FrameLimits(max_frame_bytes=64))
    decoder.feed(frame(pack(wire_of(too_big)))[:HEADER_SIZE], now=0.0)
    with pytest.raises(RemoteProtocolError):
        decoder.next_message(now=0.0)


def test_empty_frame_is_refused() -> None:
    decoder = worker_decoder()
    decoder.feed(b"\x00\x00\x00\x00", now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker", "empty frame")


def test_nesting_up_to_max_depth_is_accepted() -> None:
    limits = FrameLimits(max_depth=10)
    # wire array (1) > value (2) > ... : a value of depth 9 makes the frame depth 10
    message = Result(id=1, value=nested_list(9))
    body = pack(wire_of(message))
    assert decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=limits) == message


def result_with_nested_value(frame_depth: int) -> bytes:
    """A Result body, written by hand, whose frame nests ``frame_depth`` arrays deep."""
    value = b"\x91" * (frame_depth - 2) + b"\x90"
    return b"\x94" + bytes([Result.TAG]) + b"\x01" + value + b"\x80"


def test_hand_written_nesting_matches_msgpack() -> None:
    assert result_with_nested_value(5) == pack(wire_of(Result(id=1, value=nested_list(4))))


@pytest.mark.parametrize("depth", [11, 12, 200, 5000])
def test_nesting_deeper_than_max_depth_is_refused(depth: int) -> None:
    decoder = worker_decoder(FrameLimits(max_depth=10))
    decoder.feed(frame(result_with_nested_value(depth)), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker")


def test_nesting_in_map_values_counts_too() -> None:
    limits = FrameLimits(max_depth=4)
    ok = Result(id=1, value={"a": {"b": {}}})  # [ {a: {b: {}}} ] -> depth 4
    assert decode_body(pack(wire_of(ok)), peer="worker", accept=WORKER_TO_HOST, limits=limits) == ok
    deep = Result(id=1, value={"a": {"b": {"c": {}}}})
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(pack(wire_of(deep)), peer="worker", accept=WORKER_TO_HOST, limits=limits)
    assert_remote_error(info, "worker", "deeper than 4")


@pytest.mark.parametrize(
    "header",
    [
        b"\xdd\x80\x00\x00\x00",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\x80\x00\x00\x00",
        b"\xdb\x80\x00\x00\x00",
        b"\xc6\x80\x00\x00\x00",
    ],
    ids=["array32-2**31", "array32-max", "map32-2**31", "str32-2**31", "bin32-2**31"],
)
def test_huge_declared_length_in_a_short_frame_is_refused_without_allocating(header: bytes) -> None:
    decoder = worker_decoder()
    decoder.feed(frame(header + b"\xc0" * 8), now=0.0)
    with peak_allocation() as peak, pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker", "undecodable")
    assert peak() < 1_000_000


def test_nested_huge_declared_lengths_are_refused_without_allocating() -> None:
    # Each array header declares 2**31 elements; no level may preallocate for them.
    body = b"\x92\x03" + b"\xdd\x80\x00\x00\x00" * 50 + b"\xc0" * 16
    with peak_allocation() as peak, pytest.raises(RemoteProtocolError):
        decode_body(body, peer="worker", accept=WORKER_TO_HOST)
    assert peak() < 1_000_000


def test_deep_nesting_is_refused_before_allocating() -> None:
    # 1000 nested arrays, each declaring 10_000 elements (the frame is long enough for
    # that to pass the per-container cap); max_depth is the default 64.
    body = b"\xdd" + struct.pack(">I", 10_000)
    body = body * 1000 + b"\xc0" * 10_000
    with peak_allocation() as peak, pytest.raises(RemoteProtocolError):
        decode_body(body, peer="worker", accept=WORKER_TO_HOST)
    assert peak() < 16_000_000


def test_container_length_cap() -> None:
    limits = FrameLimits(max_container_len=5)
    ok = Result(id=1, value=[1, 2, 3, 4, 5], changed={"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    assert decode_body(pack(wire_of(ok)), peer="worker", accept=WORKER_TO_HOST, limits=limits) == ok
    too_long = Result(id=1, value=[1, 2, 3, 4, 5, 6])
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(pack(wire_of(too_long)), peer="worker", accept=WORKER_TO_HOST, limits=limits)
    assert_remote_error(info, "worker", "undecodable")
    too_wide = Result(id=1, value={str(i): i for i in range(6)})
    with pytest.raises(RemoteProtocolError):
        decode_body(pack(wire_of(too_wide)), peer="worker", accept=WORKER_TO_HOST, limits=limits)


def test_the_message_array_itself_counts_against_the_container_cap() -> None:
    limits = FrameLimits(max_container_len=2)
    with pytest.raises(RemoteProtocolError):
        decode_body(
            pack(wire_of(Result(id=1, value=None))),
            peer="worker",
            accept=WORKER_TO_HOST,
            limits=limits,
        )


def _n_fields(cls: type[Message]) -> int:
    return len(dataclasses.fields(cls))


BAD_BODIES: list[tuple[str, bytes, tuple[str, ...]]] = [
    # not msgpack, or msgpack the decoder refuses
    ("reserved-byte", b"\xc1", ("undecodable",)),
    ("garbage", b"\xc1\xff\x00\xde\xad\xbe\xef", ("undecodable",)),
    ("truncated-array", b"\x93\x03\x01", ("undecodable",)),
    ("truncated-str", b"\x92\x05\xa5ab", ("undecodable",)),
    ("trailing-bytes", pack([Log.TAG, 1, "l", "m"]) + b"\xc0", ("undecodable",)),
    ("invalid-utf8", b"\x94\x05\x01\xa1\xff\xa0", ("undecodable",)),
    ("str-longer-than-frame", b"\x92\x05\xdb\x00\x01\x00\x00", ("undecodable",)),
    ("bin-longer-than-frame", b"\x92\x03\xc6\x00\x01\x00\x00", ("undecodable",)),
    ("array-key-in-map", b"\x93\x03\x01\x81\x91\x01\x01", ("undecodable",)),
    ("map-key-in-map", b"\x93\x03\x01\x81\x80\x01", ("undecodable",)),
    ("fixext1", b"\x93\x03\x01\xd4\x01\x00", ("undecodable",)),
    ("fixext16", b"\x93\x03\x01\xd8\x05" + b"\x00" * 16, ("undecodable",)),
    ("ext8", b"\x93\x03\x01\xc7\x03\x07abc", ("undecodable",)),
    ("ext8-empty", b"\x93\x03\x01\xc7\x00\x07", ("undecodable",)),
    ("timestamp32", b"\x93\x03\x01\xd6\xff\x00\x00\x00\x00", ("undecodable",)),
    ("ext-as-tag", b"\x91\xd4\x03\x00", ("undecodable",)),
    # valid msgpack, not a message
    ("map", pack({"tag": Result.TAG}), ("array starting with a message tag",)),
    ("int", pack(Result.TAG), ("array starting with a message tag",)),
    ("str", pack("Result"), ("array starting with a message tag",)),
    ("nil", pack(None), ("array starting with a message tag",)),
    ("bin", pack(b"\x93\x03\x01\xc0"), ("array starting with a message tag",)),
    ("empty-array", pack([]), ("array starting with a message tag",)),
    ("str-tag", pack(["3", 1, None]), ("array starting with a message tag",)),
    ("float-tag", pack([3.0, 1, None]), ("array starting with a message tag",)),
    ("nil-tag", pack([None, 1, None]), ("array starting with a message tag",)),
    ("list-tag", pack([[3], 1, None]), ("array starting with a message tag",)),
    ("unknown-tag", pack([99, 1]), ("unknown message tag 99",)),
    ("negative-tag", pack([-1]), ("unknown message tag -1",)),
    ("huge-tag", pack([2**64 - 1]), ("unknown message tag",)),
    (
        "worker-sends-call",
        pack(wire_of(Call(id=1, hook="h", args={}))),
        ("Call is not a message the worker may send",),
    ),
    (
        "worker-sends-start",
        pack(wire_of(Start(ref="p:P"))),
        ("Start is not a message the worker may send",),
    ),
    (
        "worker-sends-spawned",
        pack(wire_of(Spawned(request=1, pid=2))),
        ("Spawned is not a message the worker may send",),
    ),
    # the right message, badly shaped
    (
        "log-too-many-fields",
        pack([Log.TAG, 20, "l", "m", *range(_n_fields(Log) - 2)]),
        ("Log has", "fields", f"at most {_n_fields(Log)} allowed"),
    ),
    (
        "result-too-many-fields",
        pack([Result.TAG, 1, None, {}, *[None] * (_n_fields(Result) - 2)]),
        ("Result has",),
    ),
    ("log-too-few-fields", pack([Log.TAG, 20]), ("malformed Log",)),
    ("result-no-fields", pack([Result.TAG]), ("malformed Result",)),
    ("result-id-str", pack([Result.TAG, "1", None, {}]), ("malformed Result",)),
    ("result-id-zero", pack([Result.TAG, 0, None, {}]), ("malformed Result",)),
    ("result-changed-int-key", pack([Result.TAG, 1, None, {1: 2}]), ("malformed Result",)),
    ("result-changed-nil", pack([Result.TAG, 1, None, None]), ("malformed Result",)),
    ("result-id-bool", pack([Result.TAG, True, None, {}]), ("malformed Result",)),
    ("result-id-float", pack([Result.TAG, 1.0, None, {}]), ("malformed Result",)),
    ("result-changed-bytes-key", pack([Result.TAG, 1, None, {b"k": 2}]), ("malformed Result",)),
    ("float-tag", pack([float(Result.TAG), 1, None, {}]), ("array starting with a message tag",)),
    ("error-negative-id", pack([Error.TAG, -1, "E", "m"]), ("malformed Error",)),
    ("error-chain-ints", pack([Error.TAG, 1, "E", "m", "", [1]]), ("malformed Error",)),
    ("log-message-bin", pack([Log.TAG, 20, "l", b"m"]), ("malformed Log",)),
    ("handshake-pid-zero", pack([Handshake.TAG, 1, "p", "1", {}, 0]), ("malformed Handshake",)),
    (
        "handshake-hooks-list",
        pack([Handshake.TAG, 1, "p", "1", ["h"], 5]),
        ("malformed Handshake",),
    ),
]


#: Calls the worker must refuse, each with what its error must say
BAD_CALLS = [
    ("call-id-zero", pack([Call.TAG, 0, "h", {}]), ("malformed Call", "Call.id")),
    ("call-id-bool", pack([Call.TAG, True, "h", {}]), ("malformed Call", "Call.id")),
    ("call-id-str", pack([Call.TAG, "1", "h", {}]), ("malformed Call", "Call.id")),
    ("call-hook-empty", pack([Call.TAG, 1, "", {}]), ("malformed Call", "Call.hook")),
    ("call-hook-bytes", pack([Call.TAG, 1, b"h", {}]), ("malformed Call", "Call.hook")),
    ("call-args-list", pack([Call.TAG, 1, "h", []]), ("malformed Call", "Call.args")),
    ("call-args-int-key", pack([Call.TAG, 1, "h", {1: 2}]), ("malformed Call", "Call.args")),
    (
        "result-to-worker",
        pack([Result.TAG, 1, None, {}]),
        ("Result is not a message the host may send",),
    ),
]


@pytest.mark.parametrize(
    ("body", "needles"), [(b, n) for _, b, n in BAD_CALLS], ids=[name for name, _, _ in BAD_CALLS]
)
def test_bad_call_from_host_is_a_remote_protocol_error(
    body: bytes, needles: tuple[str, ...]
) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(body, peer="host", accept=HOST_TO_WORKER)
    assert_remote_error(info, "host", *needles)


def test_a_call_and_a_result_decode_to_the_messages_encode_was_given() -> None:
    # (they are built without their constructor: they must still be equal to, and as
    # frozen as, the constructor's)
    for message, accept, peer in [
        (Call(id=2**40, hook="h\u00e9", args={"a": [1, {"b": None}]}), HOST_TO_WORKER, "host"),
        (Result(id=3, value={"v": [1.5]}, changed={"a": {}}), WORKER_TO_HOST, "worker"),
    ]:
        decoded = decode_body(encode(message)[4:], peer=peer, accept=accept)
        assert type(decoded) is type(message) and decoded == message
        with pytest.raises(AttributeError):
            decoded.id = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "needles"),
    [(body, needles) for _, body, needles in BAD_BODIES],
    ids=[name for name, _, _ in BAD_BODIES],
)
def test_bad_frame_from_worker_is_a_remote_protocol_error(
    body: bytes, needles: tuple[str, ...]
) -> None:
    decoder = worker_decoder()
    decoder.feed(frame(body), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, "worker", *needles)

    with pytest.raises(RemoteProtocolError) as direct:
        decode_body(body, peer="worker", accept=WORKER_TO_HOST)
    assert_remote_error(direct, "worker", *needles)


@pytest.mark.parametrize(
    ("body", "accept", "peer"),
    [
        (pack([True, PROTOCOL_VERSION, "p", "1", {}, 5]), WORKER_TO_HOST, "worker"),
        (pack([False, "pkg:P"]), HOST_TO_WORKER, "host"),
    ],
    ids=["true-as-handshake", "false-as-start"],
)
def test_bool_is_not_a_message_tag(
    body: bytes, accept: frozenset[type[Message]], peer: str
) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body, peer=peer, accept=accept)


@pytest.mark.parametrize("peer", ["worker", "host", "zygote"])
def test_errors_name_the_decoders_peer(peer: str) -> None:
    decoder = FrameDecoder(peer=peer, accept=HOST_TO_ZYGOTE)
    decoder.feed(frame(pack([99])), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    assert_remote_error(info, peer, "unknown message tag 99", f"the {peer} may send")
    assert info.value.reason in str(info.value)


# --------------------------------------------------------------------------- broken decoder


def _break_by_bad_body(decoder: FrameDecoder) -> RemoteProtocolError:
    decoder.feed(frame(b"\xc1") + encode(STREAM[0]), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    return info.value


def _break_by_header(decoder: FrameDecoder) -> RemoteProtocolError:
    decoder.feed(b"\x00\x00\x00\x00" + encode(STREAM[0]), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    return info.value


def _break_by_timeout(decoder: FrameDecoder) -> RemoteProtocolError:
    decoder.feed(encode(STREAM[0])[:3], now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.check_deadline(DEFAULT_LIMITS.frame_timeout + 1.0)
    return info.value


def _break_by_wrong_direction(decoder: FrameDecoder) -> RemoteProtocolError:
    decoder.feed(encode(Shutdown()), now=0.0)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message(now=0.0)
    return info.value


@pytest.mark.parametrize(
    "breaker",
    [_break_by_bad_body, _break_by_header, _break_by_timeout, _break_by_wrong_direction],
    ids=["bad-body", "empty-frame-header", "timeout", "wrong-direction"],
)
def test_a_broken_decoder_stays_broken(
    breaker: Callable[[FrameDecoder], RemoteProtocolError],
) -> None:
    decoder = worker_decoder()
    first = breaker(decoder)
    assert first.side == "worker"
    for attempt in (
        lambda: decoder.next_message(now=1.0),
        lambda: decoder.next_message(),
        lambda: decoder.feed(encode(STREAM[1]), now=1.0),
        lambda: decoder.feed(b"", now=1.0),
        lambda: decoder.check_deadline(1.0),
        lambda: decoder.next_message(now=2.0),
    ):
        with pytest.raises(RemoteProtocolError) as again:
            attempt()
        assert again.value is first


# --------------------------------------------------------------------------- deadline


def test_no_deadline_when_nothing_is_buffered() -> None:
    decoder = worker_decoder()
    assert decoder.deadline() is None
    decoder.check_deadline(0.0)
    decoder.check_deadline(1e12)


@pytest.mark.parametrize("timeout", [0.5, 10.0])
def test_partial_frame_deadline(timeout: float) -> None:
    limits = FrameLimits(frame_timeout=timeout)
    decoder = worker_decoder(limits)
    data = encode(STREAM[1])
    decoder.feed(data[:10], now=100.0)
    assert decoder.next_message(now=100.0) is None
    assert decoder.deadline() == pytest.approx(100.0 + timeout)
    # more bytes of the same frame do not move the deadline
    decoder.feed(data[10:20], now=100.0 + timeout / 2)
    assert decoder.deadline() == pytest.approx(100.0 + timeout)
    decoder.check_deadline(100.0 + timeout - 0.01)

    late = worker_decoder(limits)
    late.feed(data[:10], now=100.0)
    with pytest.raises(RemoteProtocolError) as info:
        late.check_deadline(100.0 + timeout + 0.01)
    assert_remote_error(info, "worker", "partial frame", f"{timeout:g}")

    decoder.feed(data[20:], now=100.0 + timeout - 0.01)
    assert decoder.next_message(now=100.0 + timeout - 0.01) == STREAM[1]
    assert decoder.deadline() is None
    decoder.check_deadline(100.0 + 1000 * timeout)


def test_partial_header_starts_the_clock() -> None:
    decoder = worker_decoder(FrameLimits(frame_timeout=1.0))
    decoder.feed(b"\x00", now=50.0)
    assert decoder.deadline() == pytest.approx(51.0)
    with pytest.raises(RemoteProtocolError):
        decoder.check_deadline(51.5)


def test_leftover_after_a_frame_starts_a_new_clock_when_now_is_given() -> None:
    decoder = worker_decoder(FrameLimits(frame_timeout=10.0))
    first, second = encode(STREAM[0]), encode(STREAM[1])
    decoder.feed(first[:3], now=0.0)
    decoder.feed(first[3:] + second[:5], now=7.0)
    assert decoder.deadline() is None  # a whole frame waits to be taken: nothing is late
    assert decoder.next_message(now=7.0) == STREAM[0]
    assert decoder.deadline() == pytest.approx(17.0)  # the second one arrived at 7
    decoder.check_deadline(16.0)


def test_leftover_keeps_the_old_clock_when_now_is_not_given() -> None:
    decoder = worker_decoder(FrameLimits(frame_timeout=10.0))
    first, second = encode(STREAM[0]), encode(STREAM[1])
    decoder.feed(first + second[:5], now=3.0)
    assert decoder.next_message() == STREAM[0]
    assert decoder.deadline() == pytest.approx(13.0)


def test_whole_frames_then_a_new_partial_frame_restart_the_clock() -> None:
    decoder = worker_decoder(FrameLimits(frame_timeout=10.0))
    decoder.feed(encode(STREAM[0]), now=0.0)
    assert drain(decoder, now=0.0) == [STREAM[0]]
    assert decoder.deadline() is None
    decoder.feed(encode(STREAM[1])[:5], now=100.0)
    assert decoder.deadline() == pytest.approx(110.0)
    decoder.check_deadline(105.0)


# --------------------------------------------------------------------------- encode errors


UNENCODABLE: list[tuple[str, Any]] = [
    ("object", object()),
    ("set", {1, 2}),
    ("complex", 3j),
    ("int-too-big", 2**64),
    ("int-too-small", -(2**63) - 1),
    ("lone-surrogate", "\ud800"),
    ("nested-set", {"a": [1, {2}]}),
]


@pytest.mark.parametrize("value", [v for _, v in UNENCODABLE], ids=[n for n, _ in UNENCODABLE])
@pytest.mark.parametrize("side", ["worker", "host"])
def test_encode_refuses_unencodable_values(value: Any, side: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(Result(id=1, value=value), side=side)
    error = info.value
    assert error.side == side
    assert str(error).startswith(f"{side} broke the protocol: cannot encode Result")
    assert isinstance(error.__cause__, (TypeError, ValueError, OverflowError))


def test_encode_refuses_a_self_referential_value() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LocalProtocolError) as info:
        encode(Call(id=1, hook="h", args={"x": loop}), side="host")
    assert info.value.side == "host"


def test_encode_names_local_by_default() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(Result(id=1, value=object()))
    assert info.value.side == "local"
    assert str(info.value).startswith("local broke the protocol: ")


def test_encode_refuses_a_frame_over_the_cap() -> None:
    message = Log(level=20, logger="l", message="x" * 100)
    body_len = len(encode(message)) - HEADER_SIZE
    assert encode(message, max_frame_bytes=body_len)  # exactly at the cap is fine
    with pytest.raises(LocalProtocolError) as info:
        encode(message, side="worker", max_frame_bytes=body_len - 1)
    assert info.value.side == "worker"
    assert str(info.value).startswith("worker broke the protocol: ")
    assert f"{body_len} bytes" in str(info.value)
    assert f"{body_len - 1}-byte" in str(info.value)


def test_encode_default_cap_matches_decoder_default() -> None:
    message = Result(id=1, value=b"\x00" * (DEFAULT_LIMITS.max_frame_bytes + 1))
    with pytest.raises(LocalProtocolError):
        encode(message, side="worker")


def test_an_extension_type_sent_anyway_is_the_senders_protocol_error() -> None:
    # encode cannot see an ExtType without walking the value; the receiver refuses it and
    # names the sender, so a plugin returning one is killed as a protocol breaker.
    frame = encode(Result(id=1, value=msgpack.ExtType(1, b"x")), side="worker")
    decoder = worker_decoder()
    decoder.feed(frame, now=0.0)
    with pytest.raises(RemoteProtocolError, match="worker broke the protocol"):
        decoder.next_message()


# --------------------------------------------------------------------------- limits, errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_bytes": 0},
        {"max_frame_bytes": -1},
        {"max_frame_bytes": 15},
        {"max_depth": 1},
        {"max_depth": 0},
        {"max_depth": -3},
        {"max_container_len": 0},
        {"max_container_len": -1},
        {"frame_timeout": 0},
        {"frame_timeout": 0.0},
        {"frame_timeout": -1.0},
        {"frame_timeout": -math.inf},
    ],
    ids=lambda kw: "{}={}".format(*next(iter(kw.items()))),
)
def test_frame_limits_reject_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FrameLimits(**kwargs)


def test_frame_limits_reject_nan_timeout() -> None:
    with pytest.raises(ValueError):
        FrameLimits(frame_timeout=math.nan)


def test_frame_limits_smallest_sensible_values_are_allowed() -> None:
    limits = FrameLimits(max_frame_bytes=16, max_depth=2, max_container_len=1, frame_timeout=0.001)
    assert limits.max_frame_bytes == 16
    assert FrameLimits() == DEFAULT_LIMITS


def test_error_classes() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, Exception)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    error = RemoteProtocolError("bad frame", side="zygote")
    assert error.side == "zygote"
    assert error.reason == "bad frame"
    assert str(error) == "zygote broke the protocol: bad frame"


def test_packing_after_a_value_that_is_not_of_exact_types_starts_clean() -> None:
    # exact-type packing keeps one packer per thread: a value it gives up on half-way
    # (a tuple deep in a list, an int subclass) must leave nothing behind in it
    import threading

    from plugbox.protocol import check_crossable, encode_result

    class Count(int):
        pass

    half_way = [{"a": [1, 2, "x" * 300, (3, 4)]}, [b"y" * 200, Count(5)], {"b": {"c": (1,)}}]
    good = {"k": ["v", 1.5, None, b"\x00"]}
    for bad in half_way:
        assert check_crossable(bad) == pack(bad)
        assert check_crossable(good) == pack(good)
        frame = encode_result(7, good, {"arg": bad})
        assert decode_body(frame[HEADER_SIZE:], peer="worker", accept=WORKER_TO_HOST) == Result(
            id=7, value=good, changed={"arg": pack_roundtrip(bad)}
        )
    big = {"blob": b"\x01" * (1 << 20)}  # grows the packer's buffer: it is not kept
    assert check_crossable(big) == pack(big)
    assert check_crossable(good) == pack(good)
    seen: list[bytes] = []  # another thread packs with a packer of its own
    worker = threading.Thread(target=lambda: seen.append(check_crossable(good)))
    worker.start()
    worker.join()
    assert seen == [pack(good)]


def pack_roundtrip(value: Any) -> Any:
    return msgpack.unpackb(pack(value), raw=False)
