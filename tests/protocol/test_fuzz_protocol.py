"""Property-based tests (hypothesis) of the wire protocol: the decoder and the messages.

The property behind them all: whatever bytes a peer sends, in whatever chunks, the
decoder yields valid messages of its direction or raises ``RemoteProtocolError``, never
any other exception, and never allocates more than a bounded multiple of what it was
fed. And the other way round: every message the types allow survives encode -> decode
unchanged, and every value a field does not allow is refused, by name, both when the
message is built and when it arrives on the wire.

The examples are derandomized and not stored (``derandomize=True, database=None``) so
every run, here and in CI, tries the same inputs; ``PLUGBOX_FUZZ_EXAMPLES`` raises the
number of examples per test for a longer local run. Hypothesis deadlines are off: they
are timing assertions, and the suite has none.

``tests/worker/test_fuzz_worker.py`` sends such bytes from a real worker to a real host.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plugbox.protocol import (
    DEFAULT_LIMITS,
    HOST_TO_WORKER,
    HOST_TO_ZYGOTE,
    MAX_VALUE_DEPTH,
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
    RemoteProtocolError,
    Result,
    Resume,
    Shutdown,
    Spawn,
    Spawned,
    Start,
    check_crossable,
    decode_body,
    encode,
    encode_call,
    encode_result,
    pack,
)
from plugbox.protocol._values import depth_exceeds, unpack_as_peer

settings.register_profile(
    "plugbox-fuzz",
    max_examples=int(os.environ.get("PLUGBOX_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    database=None,
    # large generated inputs are the point here, not a sign of a slow strategy
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: applied to each test (not loaded globally: it would change every other module's
#: hypothesis settings too)
FUZZ = settings.get_profile("plugbox-fuzz")

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
#: (messages a direction carries, the peer that sends them)
DIRECTIONS: tuple[tuple[frozenset[type[Message]], str], ...] = (
    (HOST_TO_WORKER, "host"),
    (WORKER_TO_HOST, "worker"),
    (HOST_TO_ZYGOTE, "host"),
    (ZYGOTE_TO_HOST, "zygote"),
)


def direction_of(cls: type[Message]) -> tuple[frozenset[type[Message]], str]:
    return next((accept, peer) for accept, peer in DIRECTIONS if cls in accept)


# --------------------------------------------------------------------------- memory

#: The decoder's allocation bound, in bytes per byte of input. Python objects cost far
#: more than their msgpack encoding (an empty map is 1 byte on the wire and a 64-byte
#: dict; a fixarray header is 1 byte that makes msgpack preallocate a 15-slot, 176-byte
#: list), so "bounded" means linear in the input with this factor, plus a constant for
#: the decoder's own fixed costs (an exception, its message). What it rules out is any
#: allocation driven by a declared length rather than by bytes actually received.
BYTES_PER_INPUT_BYTE = 192
FIXED_COST = 64 * 1024


def memory_bound(input_size: int) -> int:
    return BYTES_PER_INPUT_BYTE * input_size + FIXED_COST


@contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """Measure the peak of Python allocations (bytes) made inside the block."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = [0]
    try:
        yield lambda: result[0]
    finally:
        result[0] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()


# --------------------------------------------------------------------------- values

INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack carries
SCALARS = (
    st.none() | st.booleans() | INTS | st.floats() | st.text(max_size=12) | st.binary(max_size=12)
)
#: map keys the peer can decode (msgpack refuses array and map keys: unhashable)
KEYS = st.none() | st.booleans() | INTS | st.floats() | st.text(max_size=8) | st.binary(max_size=8)
#: any value msgpack can carry (what a peer can put in any field)
MSGPACK: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
#: the same without NaN, so that equality can check a round trip
PLAIN_SCALARS = (
    st.none()
    | st.booleans()
    | INTS
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
PLAIN_KEYS = (
    st.none()
    | st.booleans()
    | INTS
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
PLAIN: st.SearchStrategy[Any] = st.recursive(
    PLAIN_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(PLAIN_KEYS, inner, max_size=5),
    max_leaves=20,
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a field accepts, written down independently of the message classes."""

    valid: st.SearchStrategy[Any]
    accepts: Callable[[Any], bool]


INT = Kind(INTS, _is_int)
POSITIVE = Kind(st.integers(1, 2**64 - 1), lambda v: _is_int(v) and v > 0)
NATURAL = Kind(st.integers(0, 2**64 - 1), lambda v: _is_int(v) and v >= 0)
INT_OR_NONE = Kind(st.none() | INTS, lambda v: v is None or _is_int(v))
NUMBER = Kind(
    INTS | st.floats(allow_nan=False),
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
)
STR = Kind(st.text(max_size=20), lambda v: isinstance(v, str))
NONEMPTY_STR = Kind(st.text(min_size=1, max_size=20), lambda v: isinstance(v, str) and v != "")
STR_LIST = Kind(st.lists(st.text(max_size=8), max_size=4), _is_str_list)
STR_MAP = Kind(st.dictionaries(st.text(max_size=8), PLAIN, max_size=4), _is_str_map)
STR_TO_STR_LIST = Kind(
    st.dictionaries(st.text(max_size=8), STR_LIST.valid, max_size=4),
    lambda v: _is_str_map(v) and all(_is_str_list(x) for x in v.values()),
)
STR_TO_BOOL = Kind(
    st.dictionaries(st.text(max_size=8), st.booleans(), max_size=4),
    lambda v: _is_str_map(v) and all(isinstance(x, bool) for x in v.values()),
)
BYTES_OR_NONE = Kind(
    st.none() | st.binary(max_size=40), lambda v: v is None or isinstance(v, bytes)
)
ANY = Kind(PLAIN, lambda v: True)
BOOL = Kind(st.booleans(), lambda v: isinstance(v, bool))
STR_TO_STR = Kind(
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    lambda v: _is_str_map(v) and all(isinstance(x, str) for x in v.values()),
)
HEX = "0123456789abcdefABCDEF"
SHA256_OR_NONE = Kind(
    st.none() | st.text(alphabet=HEX, min_size=64, max_size=64),
    lambda v: v is None or (isinstance(v, str) and len(v) == 64 and all(c in HEX for c in v)),
)
_POSITIVE_NUMBERS = st.integers(1, 2**64 - 1) | st.floats(min_value=0, exclude_min=True)
#: Start.limits: each limit a worker applies, a positive number (two may be None)
_NULLABLE_LIMITS = ("memory_mb", "cpu_seconds")
_LIMITS = (*_NULLABLE_LIMITS, "open_files", "file_size_mb", "stack_kb", "max_message_mb")


def _is_worker_limits(v: Any) -> bool:
    return isinstance(v, dict) and all(
        k in _LIMITS
        and (
            (x is None and k in _NULLABLE_LIMITS)
            or (isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0)
        )
        for k, x in v.items()
    )


WORKER_LIMITS = Kind(
    st.fixed_dictionaries(
        {},
        optional={
            k: (st.none() | _POSITIVE_NUMBERS) if k in _NULLABLE_LIMITS else _POSITIVE_NUMBERS
            for k in _LIMITS
        },
    ),
    _is_worker_limits,
)

#: every field of every message, in wire order, with what it accepts
FIELDS: dict[type[Message], dict[str, Kind]] = {
    Start: {
        "ref": NONEMPTY_STR,
        "config": STR_MAP,
        "hooks": STR_MAP,
        "limits": WORKER_LIMITS,
        "sandbox": STR_MAP,
        "inline": BYTES_OR_NONE,
        "sha256": SHA256_OR_NONE,
        "distribution": BOOL,
        "initialize": BOOL,
        "standby": BOOL,
        "log_level": INT,
    },
    Confined: {"layers": STR_TO_BOOL, "pid": POSITIVE, "baseline_rss_kb": NATURAL},
    Handshake: {
        "protocol": INT,
        "plugin": NONEMPTY_STR,
        "version": STR,
        "hooks": STR_TO_STR_LIST,
        "pid": POSITIVE,
        "problems": STR_LIST,
        "baseline_rss_kb": NATURAL,
        "layers": STR_TO_BOOL,
        "dist_name": STR,
        "dist_version": STR,
    },
    Call: {"id": POSITIVE, "hook": NONEMPTY_STR, "args": STR_MAP},
    Result: {"id": POSITIVE, "value": ANY, "changed": STR_MAP},
    Error: {
        "id": NATURAL,
        "exc_type": STR,
        "message": STR,
        "traceback": STR,
        "chain": STR_LIST,
        "details": STR_TO_STR,
    },
    Log: {"level": INT, "logger": STR, "message": STR},
    Cancel: {"id": POSITIVE},
    Shutdown: {},
    Resume: {},
    Spawn: {"request": POSITIVE},
    Spawned: {"request": POSITIVE, "pid": NATURAL, "error": STR},
    Exited: {
        "pid": POSITIVE,
        "exit_code": INT_OR_NONE,
        "signal": INT_OR_NONE,
        "max_rss_kb": INT,
        "user_cpu": NUMBER,
        "system_cpu": NUMBER,
    },
}

#: (class, field) for every field with something to refuse
CHECKED_FIELDS = [
    (cls, name) for cls, kinds in FIELDS.items() for name, kind in kinds.items() if kind is not ANY
]


def fields_of(cls: type[Message]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]  # every Message is a dataclass


def has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def messages_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Any valid ``cls``, fields with defaults sometimes left out."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in fields_of(cls):
        (optional if has_default(f) else required)[f.name] = FIELDS[cls][f.name].valid
    if cls is Exited:  # exactly one of exit_code and signal
        del required["exit_code"], required["signal"]
        ending = st.one_of(
            INTS.map(lambda n: {"exit_code": n, "signal": None}),
            INTS.map(lambda n: {"exit_code": None, "signal": n}),
        )
        return st.tuples(st.fixed_dictionaries(required, optional=optional), ending).map(
            lambda parts: cls(**parts[0], **parts[1])
        )
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))


MESSAGES: st.SearchStrategy[Message] = st.sampled_from(ALL_TYPES).flatmap(messages_of)


def test_the_field_table_names_every_field_in_wire_order() -> None:
    for cls in ALL_TYPES:
        assert list(FIELDS[cls]) == [f.name for f in fields_of(cls)]


# --------------------------------------------------------------------------- round trip


@FUZZ
@given(MESSAGES)
def test_every_valid_message_survives_encode_then_decode(message: Message) -> None:
    frame = encode(message, verify=True)
    accept, peer = direction_of(type(message))
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(frame, now=0.0)
    decoded = decoder.next_message(now=0.0)
    assert type(decoded) is type(message)
    assert decoded == message
    # equality hides 1 == 1.0 == True and 0.0 == -0.0: the bytes do not
    assert decoded is not None and encode(decoded) == frame
    assert decoder.next_message(now=0.0) is None
    assert decoder.pending_bytes == 0 and decoder.deadline() is None


# --------------------------------------------------------------------------- wrong fields

#: a value of each msgpack type and shape, so every wrong type is tried often
ONE_OF_EACH_TYPE: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**64 - 1,
    -(2**63),
    0.0,
    -1.5,
    1.0,
    float("inf"),
    "",
    "x",
    "1",
    b"",
    b"x",
    [],
    [None],
    ["x"],
    [1],
    {},
    {"k": None},
    {"k": "v"},
    {"k": True},
    {"k": ["x"]},
    {"k": [1]},
    {1: "v"},
    {b"k": 1},
    {None: 1},
    [[]],
    {"k": {}},
]


@st.composite
def refusals(draw: st.DrawFn) -> tuple[tuple[type[Message], str], Message, Any]:
    """(a field, a valid message of its type, a value that field does not accept)."""
    cls, name = draw(st.sampled_from(CHECKED_FIELDS))
    kind = FIELDS[cls][name]
    values = st.sampled_from(ONE_OF_EACH_TYPE) | MSGPACK
    return (cls, name), draw(messages_of(cls)), draw(values.filter(lambda v: not kind.accepts(v)))


@FUZZ
@given(refusals())
# a bool was accepted as CPU seconds (bool is an int subclass): found by checking the
# fields against FIELDS (the sweep below), kept here as an example
@example(((Exited, "user_cpu"), Exited(pid=1, exit_code=0, signal=None), True))
@example(((Exited, "signal"), Exited(pid=1, exit_code=None, signal=9), "9"))
def test_a_value_a_field_does_not_accept_is_refused_naming_the_field(
    case: tuple[tuple[type[Message], str], Message, Any],
) -> None:
    (cls, name), good, bad = case
    check_refused(cls, name, good, bad)


def check_refused(cls: type[Message], name: str, good: Message, bad: Any) -> None:
    kwargs = {f: getattr(good, f) for f in FIELDS[cls]}
    kwargs[name] = bad
    if cls is Exited and name in ("exit_code", "signal"):
        # the wrong value is not None: its partner must be, or the pair is what is wrong
        kwargs["signal" if name == "exit_code" else "exit_code"] = None
    needle = f"{cls.__name__}.{name} "
    with pytest.raises(TypeError) as built:
        cls(**kwargs)
    assert str(built.value).startswith(needle), str(built.value)

    accept, peer = direction_of(cls)
    body = pack([cls.TAG, *kwargs.values()])
    with pytest.raises(RemoteProtocolError) as decoded:
        decode_body(body, peer=peer, accept=accept)
    assert decoded.value.side == peer
    assert decoded.value.reason.startswith(f"malformed {cls.__name__}: {needle}"), (
        decoded.value.reason
    )


#: a valid message of each type with fields to refuse
BASES: dict[type[Message], Message] = {
    Start: Start(ref="m:P"),
    Confined: Confined(layers={}, pid=1),
    Handshake: Handshake(protocol=1, plugin="p", version="1", hooks={}, pid=1),
    Call: Call(id=1, hook="h", args={}),
    Result: Result(id=1, value=None),
    Error: Error(id=0, exc_type="E", message="m"),
    Log: Log(level=20, logger="l", message="m"),
    Cancel: Cancel(id=1),
    Spawn: Spawn(request=1),
    Spawned: Spawned(request=1, pid=0),
    Exited: Exited(pid=1, exit_code=0, signal=None),
}


@pytest.mark.parametrize(
    ("cls", "name"), CHECKED_FIELDS, ids=[f"{cls.__name__}.{name}" for cls, name in CHECKED_FIELDS]
)
def test_every_field_refuses_a_value_of_every_other_type(cls: type[Message], name: str) -> None:
    # the sweep behind the property above, so no (field, type) pair is left to chance:
    # it found that Exited.user_cpu and system_cpu took a bool (an int subclass)
    wrong = [v for v in ONE_OF_EACH_TYPE if not FIELDS[cls][name].accepts(v)]
    assert wrong
    for bad in wrong:
        check_refused(cls, name, BASES[cls], bad)


@FUZZ
@given(
    st.sampled_from(ALL_TYPES).flatmap(lambda cls: st.tuples(st.just(cls), messages_of(cls))),
    st.data(),
)
def test_a_message_with_fields_cut_off_or_added_decodes_or_is_refused(
    pair: tuple[type[Message], Message], data: st.DataObject
) -> None:
    cls, message = pair
    wire = [cls.TAG, *(getattr(message, f) for f in FIELDS[cls])]
    keep = data.draw(st.integers(1, len(wire)), label="keep")
    extra = data.draw(st.lists(MSGPACK, max_size=3), label="extra")
    body = pack(wire[:keep] + extra)
    accept, peer = direction_of(cls)
    required = sum(1 for f in fields_of(cls) if not has_default(f))
    if extra:
        try:  # the extra values land in other fields' places: either way will do
            decoded = decode_body(body, peer=peer, accept=accept)
        except RemoteProtocolError as exc:
            if keep == len(wire):
                assert f"at most {len(FIELDS[cls])} allowed" in exc.reason
        else:
            assert type(decoded) is cls and keep < len(wire)
    elif keep - 1 < required:
        with pytest.raises(RemoteProtocolError, match=f"malformed {cls.__name__}: .*missing"):
            decode_body(body, peer=peer, accept=accept)
    else:
        decoded = decode_body(body, peer=peer, accept=accept)
        assert type(decoded) is cls
        for name in list(FIELDS[cls])[: keep - 1]:
            assert getattr(decoded, name) == getattr(message, name)


# --------------------------------------------------------------------------- byte streams


def framed(bodies: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return bodies.map(lambda body: struct.pack(">I", len(body)) + body)


WIRE_ARRAYS = st.tuples(
    st.sampled_from([m.TAG for m in ALL_TYPES]) | INTS | SCALARS,
    st.lists(MSGPACK, max_size=12),
).map(lambda parts: pack([parts[0], *parts[1]]))

#: one frame's worth of bytes: valid, plausible, or not at all
FRAMES = st.one_of(
    MESSAGES.map(encode),
    framed(WIRE_ARRAYS),
    framed(MSGPACK.map(pack)),
    framed(st.binary(max_size=1500)),
    # a header that lies about the length that follows
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=64)).map(
        lambda parts: struct.pack(">I", parts[0]) + parts[1]
    ),
)
STREAMS = st.binary(max_size=2048) | st.lists(FRAMES, min_size=1, max_size=4).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(decoder: FrameDecoder, chunks: list[bytes]) -> tuple[list[Message], str | None]:
    """Feed ``chunks``, taking every whole message after each: the messages, and the
    reason of the RemoteProtocolError that stopped the decoder, if one did. Any other
    exception escapes and fails the test."""
    out: list[Message] = []
    try:
        for now, chunk in enumerate([b"", *chunks]):  # b"": take what was fed before
            decoder.feed(chunk, now=float(now))
            while (message := decoder.next_message(now=float(now))) is not None:
                out.append(message)
    except RemoteProtocolError as exc:
        # a broken decoder stays broken, with the same error
        for call in (
            lambda: decoder.feed(b"\x00", now=0.0),
            decoder.next_message,
            lambda: decoder.check_deadline(0.0),
        ):
            with pytest.raises(RemoteProtocolError) as again:
                call()
            assert again.value is exc
        return out, exc.reason
    return out, None


@FUZZ
@given(STREAMS, st.lists(st.integers(0, 2**16), max_size=8), st.sampled_from(DIRECTIONS))
@example(b"\x00\x00\x00\x03\x91\x91\x90", [], (WORKER_TO_HOST, "worker"))
@example(b"\x00\x00\x00\x01\xc1", [1, 2, 3], (HOST_TO_WORKER, "host"))
def test_any_bytes_in_any_chunks_decode_or_raise_a_protocol_error(
    stream: bytes, cuts: list[int], direction: tuple[frozenset[type[Message]], str]
) -> None:
    accept, peer = direction
    decoder = FrameDecoder(peer=peer, accept=accept)
    with peak_allocation() as peak:
        messages, error = run(decoder, chunked(stream, cuts))
    assert peak() <= memory_bound(len(stream))
    assert all(type(m) in accept for m in messages)
    # the chunking changes nothing: the same messages, then the same verdict
    assert run(FrameDecoder(peer=peer, accept=accept), [stream]) == (messages, error)
    if error is None:  # what is left is the start of one frame, and has a deadline
        assert decoder.pending_bytes == len(stream) - sum(len(encode(m)) for m in messages)
        assert (decoder.deadline() is None) == (decoder.pending_bytes == 0)


@FUZZ
@given(MESSAGES)
def test_a_valid_frame_cut_anywhere_waits_for_the_rest_until_its_deadline(message: Message) -> None:
    frame = encode(message)
    accept, peer = direction_of(type(message))
    timeout = DEFAULT_LIMITS.frame_timeout
    for cut in range(1, len(frame)):
        decoder = FrameDecoder(peer=peer, accept=accept)
        decoder.feed(frame[:cut], now=100.0)
        assert decoder.next_message(now=100.0) is None
        assert decoder.pending_bytes == cut
        assert decoder.deadline() == 100.0 + timeout
        decoder.check_deadline(100.0 + timeout)  # not late yet
        decoder.feed(frame[cut:], now=101.0)
        assert decoder.next_message(now=101.0) == message
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(frame[: len(frame) // 2], now=100.0)
    with pytest.raises(RemoteProtocolError, match="partial frame"):
        decoder.check_deadline(100.0 + timeout + 0.5)


@FUZZ
@given(MESSAGES, STREAMS.filter(bool))
def test_a_valid_frame_then_garbage_yields_the_message_then_what_the_garbage_is(
    message: Message, garbage: bytes
) -> None:
    accept, peer = direction_of(type(message))
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(encode(message) + garbage, now=0.0)
    assert decoder.next_message(now=0.0) == message
    assert run(decoder, []) == run(FrameDecoder(peer=peer, accept=accept), [garbage])


# --------------------------------------------------------------------------- huge lengths

#: (type byte, bytes of its length field) of every msgpack type with a length
SIZED_TYPES = [
    (0xD9, 1),
    (0xDA, 2),
    (0xDB, 4),  # str8/16/32
    (0xC4, 1),
    (0xC5, 2),
    (0xC6, 4),  # bin8/16/32
    (0xDC, 2),
    (0xDD, 4),  # array16/32
    (0xDE, 2),
    (0xDF, 4),  # map16/32
    (0xC7, 1),
    (0xC8, 2),
    (0xC9, 4),  # ext8/16/32 (a type byte follows the length)
]


@st.composite
def sized_header(draw: st.DrawFn) -> bytes:
    byte, width = draw(st.sampled_from(SIZED_TYPES))
    top = 2 ** (8 * width) - 1
    # huge, anything, or about as long as a frame (for a container: accepted by the
    # per-container cap, so only the pre-scan stands between it and a preallocation)
    length = draw(st.integers(top // 2, top) | st.integers(0, top) | st.integers(0, min(top, 4096)))
    return (
        bytes([byte])
        + length.to_bytes(width, "big")
        + (b"\x01" if byte in (0xC7, 0xC8, 0xC9) else b"")
    )


@st.composite
def container_header(draw: st.DrawFn) -> bytes:
    byte, width = draw(st.sampled_from([(0xDC, 2), (0xDD, 4), (0xDE, 2), (0xDF, 4)]))
    return bytes([byte]) + draw(st.integers(0, 1200)).to_bytes(width, "big")


PREFIXES = st.sampled_from(
    [b"", b"\x93\x03\x01", b"\x94\x03\x01\xc0", b"\x92\x05", b"\x93\x03\x01\x81\xa1k"]
)
#: a body whose containers and strings declare far more than it holds, at any depth
HUGE_BODIES = st.one_of(
    st.tuples(
        PREFIXES,
        st.lists(
            sized_header() | st.sampled_from([b"\x9f", b"\x8f", b"\x91", b"\xc0"]),
            min_size=1,
            max_size=80,
        ).map(b"".join)
        | st.tuples(sized_header(), st.integers(1, 400)).map(lambda p: p[0] * p[1]),
        st.binary(max_size=64),
        st.integers(0, 3000),
    ).map(lambda p: p[0] + p[1] + p[2] + b"\xc0" * p[3]),
    # one container header nested many times, declaring about a frame's length: the
    # per-container cap lets each pass, so only the pre-scan stands between it and a
    # preallocation of that length at every level
    st.tuples(PREFIXES, container_header(), st.integers(1, 400), st.binary(max_size=16)).map(
        lambda p: p[0] + p[1] * p[2] + p[3]
    ),
)


@FUZZ
@given(HUGE_BODIES, st.sampled_from(DIRECTIONS))
@example(b"\xdc\x03\x00" * 341, (WORKER_TO_HOST, "worker"))  # was 2 MB from 1 KiB
@example(b"\x93\x03\x01" + b"\xdd\x80\x00\x00\x00" * 50, (WORKER_TO_HOST, "worker"))
def test_huge_declared_lengths_allocate_in_proportion_to_the_bytes_received(
    body: bytes, direction: tuple[frozenset[type[Message]], str]
) -> None:
    accept, peer = direction
    with peak_allocation() as peak:
        try:
            message = decode_body(body, peer=peer, accept=accept)
        except RemoteProtocolError:
            pass
        else:
            assert type(message) in accept
    assert peak() <= memory_bound(len(body)), (peak(), len(body))


@FUZZ
@given(
    st.integers(0, 2**32 - 1),
    st.binary(max_size=256),
    st.integers(16, 2**32 - 1) | st.just(DEFAULT_LIMITS.max_frame_bytes),
)
def test_a_huge_frame_header_is_refused_or_waited_for_without_allocating_for_it(
    declared: int, rest: bytes, cap: int
) -> None:
    decoder = FrameDecoder(
        peer="worker", accept=WORKER_TO_HOST, limits=FrameLimits(max_frame_bytes=cap)
    )
    fed = struct.pack(">I", declared) + rest
    outcome: str | None = None
    with peak_allocation() as peak:
        decoder.feed(fed, now=0.0)
        try:
            while decoder.next_message(now=0.0) is not None:
                pass
        except RemoteProtocolError as exc:
            outcome = exc.reason
    assert peak() <= memory_bound(len(fed))
    if declared > cap:
        assert outcome is not None and f"frame of {declared} bytes exceeds" in outcome
    elif declared == 0:
        assert outcome == "empty frame"
    elif declared > len(rest):
        assert outcome is None and decoder.pending_bytes == len(fed)


# --------------------------------------------------------------------------- nesting

#: one level of nesting, holding the next: array or map (nil key), each header width
LEVELS = {
    "fixarray": b"\x91",
    "array16": b"\xdc\x00\x01",
    "array32": b"\xdd\x00\x00\x00\x01",
    "fixmap": b"\x81\xc0",
    "map16": b"\xde\x00\x01\xc0",
    "map32": b"\xdf\x00\x00\x00\x01\xc0",
}
#: what the innermost level holds: an empty container or a scalar (each one more level)
LEAVES = [b"\x90", b"\x80", b"\xc0", b"\x01", b"\xa1x"]


@FUZZ
@given(
    st.lists(st.sampled_from(sorted(LEVELS)), max_size=120),
    st.sampled_from(LEAVES),
    st.integers(-2, 2) | st.integers(-100, 100),
    st.sampled_from([None, 0, 40, 1100]),
)
@example(["fixarray"] * 62, b"\x90", 0, 0)
@example(["fixarray"] * 63, b"\x90", 0, 0)
@example(["array16"] * 63, b"\x90", 0, 1100)
# found by this property: with exactly max_depth container headers, a scalar innermost
# took a small frame one level past max_depth unchecked (the large-frame scan refused it)
@example(["fixarray"] * 9, b"\x01", -1, None)
def test_nesting_is_refused_exactly_when_deeper_than_max_depth(
    levels: list[str], leaf: bytes, slack: int, pad: int | None
) -> None:
    # a Result whose value nests len(levels) levels around ``leaf``. ``changed`` is left
    # out (pad None), empty (0), or holds a str of ``pad`` bytes, which may take the
    # frame past the pre-scan threshold
    value = b"".join(LEVELS[name] for name in levels) + leaf
    if pad is None:
        body = b"\x93\x03\x01" + value
    elif pad == 0:
        body = b"\x94\x03\x01" + value + b"\x80"
    else:
        body = b"\x94\x03\x01" + value + b"\x81\xa3pad\xda" + struct.pack(">H", pad) + b"x" * pad
    # the message array, each level, then the leaf; a non-empty ``changed`` adds its str
    depth = max(1 + len(levels) + 1, 3 if pad else 2)
    max_depth = max(2, depth + slack)  # around the frame's depth, mostly
    limits = FrameLimits(max_depth=max_depth)
    if depth > max_depth:
        with pytest.raises(RemoteProtocolError, match=f"nests deeper than {max_depth}$"):
            decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=limits)
    else:
        message = decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=limits)
        assert isinstance(message, Result)


@FUZZ
@given(st.integers(65, 5000), st.sampled_from(sorted(LEVELS)))
def test_any_depth_past_the_default_cap_is_refused_within_the_memory_bound(
    depth: int, level: str
) -> None:
    body = b"\x93\x03\x01" + LEVELS[level] * depth + b"\x90"
    decoder = FrameDecoder(peer="worker", accept=WORKER_TO_HOST)
    fed = struct.pack(">I", len(body)) + body
    with peak_allocation() as peak:
        decoder.feed(fed, now=0.0)
        with pytest.raises(RemoteProtocolError):
            decoder.next_message(now=0.0)
    assert peak() <= memory_bound(len(fed))


# --------------------------------------------------------------------------- sending


def nested(depth: int, inner: Any = None) -> Any:
    """``inner`` inside ``depth - 1`` lists: a value ``depth`` levels deep."""
    for _ in range(depth - 1):
        inner = [inner]
    return inner


def nested_maps(depth: int) -> Any:
    """``None`` inside ``depth - 1`` maps: no array header anywhere."""
    value: Any = None
    for _ in range(depth - 1):
        value = {"k": value}
    return value


class Opaque:
    """An object msgpack has no encoding for."""


#: what a caller or a plugin might hand over: msgpack-able or not, nested at any depth
WILD: st.SearchStrategy[Any] = st.tuples(
    st.recursive(
        SCALARS
        | st.integers()
        | st.complex_numbers(max_magnitude=10)
        | st.frozensets(st.integers(0, 3), max_size=2)
        | st.datetimes()
        | st.builds(Opaque),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(KEYS | st.tuples(st.integers(0, 3)), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    st.integers(1, 80),
).map(lambda p: nested(p[1], p[0]))


@FUZZ
@given(WILD, st.sampled_from(["result", "changed", "config", "call"]))
@example(nested(63), "result")  # the frame: 64 levels, the most a peer accepts
@example(nested(64), "result")  # 65: was sent, and the host killed the worker for it
@example(nested_maps(63), "result")  # the same without arrays, which the check
@example(nested_maps(64), "result")  # does not decode when nothing looks suspect
@example(nested_maps(62), "call")
@example(nested_maps(63), "call")
def test_what_encode_verifies_the_peer_decodes(value: Any, where: str) -> None:
    message: Message
    if where == "result":
        message = Result(id=1, value=value)
    elif where == "changed":
        message = Result(id=1, value=None, changed={"arg": value})
    elif where == "config":
        message = Start(ref="m:P", config={"c": value})
    else:
        message = Call(id=1, hook="h", args={"arg": value})
    accept, peer = direction_of(type(message))
    try:
        frame = encode(message, side="test", verify=True)
    except LocalProtocolError as exc:
        assert exc.side == "test"
        return
    decoder = FrameDecoder(peer=peer, accept=accept)
    decoder.feed(frame, now=0.0)
    assert type(decoder.next_message(now=0.0)) is type(message)


@FUZZ
@given(WILD)
@example(nested(MAX_VALUE_DEPTH))
@example(nested(MAX_VALUE_DEPTH + 1))  # was passed, and the worker died of the Call
@example(nested(MAX_VALUE_DEPTH, {"k": 1}))
def test_an_argument_check_crossable_passes_makes_a_call_the_worker_decodes(value: Any) -> None:
    try:
        packed = check_crossable(value)
    except TypeError:
        return
    decoder = FrameDecoder(peer="host", accept=HOST_TO_WORKER)
    decoder.feed(encode_call(7, "hook", {"arg": packed}), now=0.0)
    call = decoder.next_message(now=0.0)
    assert isinstance(call, Call) and pack(call.args["arg"]) == packed  # (NaN != NaN)


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 200, 600])
def test_check_crossable_refuses_a_value_the_peer_would_refuse_as_too_deep(depth: int) -> None:
    with pytest.raises(TypeError, match=f"nests deeper than {MAX_VALUE_DEPTH} levels"):
        check_crossable(nested(depth))


#: WILD, and extension values (msgpack packs them; no peer accepts them) at any depth
EXTENSIONS = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)) | st.builds(
    msgpack.Timestamp, st.integers(0, 2**32 - 1)
)
WILDER: st.SearchStrategy[Any] = WILD | st.tuples(EXTENSIONS, st.integers(1, 6)).map(
    lambda p: nested(p[1], {"k": p[0]})
)


def outcome(fn: Callable[[], bytes]) -> bytes | tuple[str, str]:
    try:
        return fn()
    except (LocalProtocolError, TypeError) as exc:
        return (type(exc).__name__, getattr(exc, "reason", str(exc)))


def result_by_decoding(value: Any, changed: dict[str, Any], max_depth: int) -> bytes:
    """A checked Result frame as the peer sees it: packed, decoded whole, walked."""
    frame = encode(Result(id=9, value=value, changed=changed), side="w")
    try:
        decoded = unpack_as_peer(frame[4:])
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode Result: {exc}", side="w") from None
    if depth_exceeds(decoded, max_depth):
        raise LocalProtocolError(
            f"cannot encode Result: it nests deeper than {max_depth} levels (the protocol's cap)",
            side="w",
        )
    return frame


@FUZZ
@given(WILDER, st.booleans())
@example(nested(MAX_VALUE_DEPTH), False)  # the deepest a result may be
@example(nested(MAX_VALUE_DEPTH + 1), False)
@example(nested_maps(MAX_VALUE_DEPTH), False)
@example(nested_maps(MAX_VALUE_DEPTH + 1), False)
@example(nested(MAX_VALUE_DEPTH - 1), True)  # the deepest a changed argument may be
@example(nested(MAX_VALUE_DEPTH), True)
@example(nested_maps(MAX_VALUE_DEPTH - 1), True)
@example(nested_maps(MAX_VALUE_DEPTH), True)
@example({(1, 2): "tuple key"}, False)
@example([msgpack.ExtType(1, b"")], True)
def test_encode_result_sends_exactly_what_the_peer_decodes(value: Any, as_changed: bool) -> None:
    # the worker's fast Result encoding skips the decode-to-check where the bytes show
    # nothing a peer could refuse; it must agree with packing, decoding and walking
    result, changed = (None, {"arg": value}) if as_changed else (value, {})
    depth = MAX_VALUE_DEPTH + 1  # what the worker uses
    fast = outcome(lambda: encode_result(9, result, changed, side="w", max_depth=depth))
    assert fast == outcome(lambda: result_by_decoding(result, changed, depth))


def crossable_by_decoding(value: Any) -> bytes:
    """check_crossable as it was: always decode what was packed, then walk it."""
    try:
        packed = pack(value)
        decoded = unpack_as_peer(packed)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(str(exc) or type(exc).__name__) from None
    if depth_exceeds(decoded, MAX_VALUE_DEPTH):
        raise TypeError(
            f"the value nests deeper than {MAX_VALUE_DEPTH} levels (the protocol's cap)"
        )
    return packed


@FUZZ
@given(WILDER)
@example(nested(MAX_VALUE_DEPTH))
@example(nested(MAX_VALUE_DEPTH + 1))
@example(nested_maps(MAX_VALUE_DEPTH))
@example(nested_maps(MAX_VALUE_DEPTH + 1))
@example({"a": {"b": {(1,): 2}}})
@example({"k": msgpack.Timestamp(0)})
def test_check_crossable_skips_the_decode_only_where_it_cannot_refuse(value: Any) -> None:
    assert outcome(lambda: check_crossable(value)) == outcome(lambda: crossable_by_decoding(value))


@FUZZ
@given(
    st.integers(1, 2**64 - 1),
    st.text(min_size=1, max_size=12),
    st.dictionaries(st.text(max_size=8), PLAIN, max_size=3),
)
@example(127, "h", {})
@example(128, "h", {})
@example(255, "h", {})
@example(256, "h", {})
@example(2**16, "h", {})
@example(2**32, "h", {})
def test_encode_call_makes_the_frame_encode_makes(
    call_id: int, hook: str, args: dict[str, Any]
) -> None:
    # encode_call packs ids and names its own way, for speed: byte for byte the same
    packed = {name: pack(value) for name, value in args.items()}
    assert encode_call(call_id, hook, packed) == encode(Call(id=call_id, hook=hook, args=args))
