"""What a frame decodes to, bounded before it is unpacked (bytes alone, no I/O).

A frame's byte cap does not bound what it decodes to: an empty map is 1 byte on the
wire and a 64-byte dict in the host, a one-entry map with an int key a 224-byte dict
and a 32-byte int from 3 bytes. The pre-scan adds up an upper bound of the decoded
size (``decoded_size``) and the host's decoder refuses a frame whose bound passes
``MAX_EXPANSION`` times its size (or ``DECODED_FLOOR``). These tests check that the
bound is an upper bound (against tracemalloc), that realistic replies pass and hostile
ones are refused before any allocation, and that the small frames the fast path
unpacks unscanned cost at most ``SMALL_PER_BYTE`` bytes per byte. Run this file with
``-s`` to see the table the cap was chosen from (``test_the_table``).
"""

from __future__ import annotations

import random
import string
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugbox.protocol import (
    MAX_EXPANSION,
    WORKER_TO_HOST,
    FrameDecoder,
    FrameLimits,
    RemoteProtocolError,
    Result,
    _decode,
    decode_body,
    encode,
)
from plugbox.protocol._decode import SCAN_ABOVE
from plugbox.protocol._limits import DECODED_FLOOR
from plugbox.protocol._scan import decoded_size, scan

#: the host's limits for a worker's frames, with room for the tables' frames
HOST = FrameLimits(max_frame_bytes=64 << 20, max_expansion=MAX_EXPANSION)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """The peak of Python allocations (bytes) made inside the block."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = [0]
    try:
        yield lambda: result[0]
    finally:
        result[0] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()


def unpacked_peak(body: bytes) -> int:
    """What msgpack allocates to unpack ``body`` (as the decoder calls it), at peak."""
    with peak_allocation() as peak:
        value = msgpack.unpackb(body, raw=False, strict_map_key=False, timestamp=0)
        del value
    return peak()


def result_body(value: Any) -> bytes:
    """The body of a Result frame carrying ``value``, as a worker sends it."""
    return encode(Result(id=1, value=value), side="worker", max_frame_bytes=1 << 30)[4:]


def array32(item: bytes, n: int) -> bytes:
    """A Result body whose value is an array of ``n`` copies of the msgpack ``item``."""
    return b"\x94\x03\x01\xdd" + n.to_bytes(4, "big") + item * n + b"\x80"


_rnd = random.Random(1)


def word(n: int) -> str:
    return "".join(_rnd.choice(string.ascii_lowercase) for _ in range(n))


def tree(depth: int) -> Any:
    if depth == 0:
        return {"text": word(12), "n": _rnd.randrange(1000), "tags": [word(4) for _ in range(3)]}
    return {
        "kind": word(5),
        "children": [tree(depth - 1) for _ in range(4)],
        "meta": {"a": 1, "b": None},
    }


#: replies of realistic shapes: each decodes to at most MAX_EXPANSION times its size
REALISTIC: dict[str, Callable[[], bytes]] = {
    "a 10 MB str": lambda: result_body("x" * 10_000_000),
    "a 3 MB str of 3-byte characters": lambda: result_body("€" * 1_000_000),
    "10 MB of bytes": lambda: result_body(b"x" * 10_000_000),
    "100k small dicts, str keys": lambda: result_body(
        [{"id": i, "name": word(8), "score": i / 7, "ok": True} for i in range(100_000)]
    ),
    "100k dicts {'id': i, 'n': 'ab'}": lambda: result_body(
        [{"id": i, "n": "ab"} for i in range(100_000)]
    ),
    "100k rows [int, str, float]": lambda: result_body(
        [[i, word(6), i / 3] for i in range(100_000)]
    ),
    "500k small ints": lambda: result_body([_rnd.randrange(128) for _ in range(500_000)]),
    "500k ints < 50k": lambda: result_body([_rnd.randrange(50_000) for _ in range(500_000)]),
    "500k floats": lambda: result_body([_rnd.random() for _ in range(500_000)]),
    "300k short words": lambda: result_body([word(_rnd.randrange(2, 10)) for _ in range(300_000)]),
    "nested JSON-like data (depth 7, fan 4)": lambda: result_body(tree(7)),
    "20k chat messages": lambda: result_body(
        {
            "messages": [
                {"role": "user", "content": word(200), "meta": {"ts": i, "tokens": [1, 2, 3]}}
                for i in range(20_000)
            ]
        }
    ),
    "20k records of 12 fields": lambda: result_body(
        [{f"field{j}": (i * j if j % 3 else word(5)) for j in range(12)} for i in range(20_000)]
    ),
}

#: realistic but dense: over MAX_EXPANSION, they pass in a frame of up to
#: DECODED_FLOOR / MAX_EXPANSION bytes (2 MiB)
DENSE: dict[str, Callable[[], bytes]] = {
    "100k dicts {'id': i}, i of 16 bits": lambda: result_body(
        [{"id": 1000 + i % 60_000} for i in range(100_000)]
    ),
    "100k dicts {'ok': True}": lambda: result_body([{"ok": True}] * 100_000),
    "100k empty lists": lambda: result_body([[] for _ in range(100_000)]),
}


def hostile(item: bytes) -> Callable[[int], bytes]:
    return lambda n: array32(item, n)


#: what an attacker packs densely: each over MAX_EXPANSION
HOSTILE: dict[str, Callable[[int], bytes]] = {
    "empty maps": hostile(b"\x80"),
    "empty lists": hostile(b"\x90"),
    "[[]]": hostile(b"\x91\x90"),
    "negative fixints (-32)": hostile(b"\xe0"),
    "2-byte strs": hostile(b"\xa2xy"),
    "maps {-32: nil}": hostile(b"\x81\xe0\xc0"),
    "maps {-32: {}}": hostile(b"\x81\xe0\x80"),
    "maps {-32: {-31: {-30: {}}}}": hostile(b"\x81\xe0\x81\xe1\x81\xe2\x80"),
    "fixarrays of 15 empty lists": hostile(b"\x9f" + b"\x90" * 15),
}


def test_the_table() -> None:
    """The bound against tracemalloc, per byte of frame, for realistic, dense and
    hostile replies; printed (run with ``-s``): what MAX_EXPANSION was chosen from."""
    lines = [f"{'reply':42s} {'MiB':>5s} {'measured':>9s} {'bound':>7s}"]
    tables = [
        ("realistic", {name: make() for name, make in REALISTIC.items()}),
        ("dense", {name: make() for name, make in DENSE.items()}),
        ("hostile", {f"200k {name}": make(200_000) for name, make in HOSTILE.items()}),
    ]
    for kind, bodies in tables:
        lines.append(kind)
        for name, body in bodies.items():
            size = len(body)
            measured, bound = unpacked_peak(body), decoded_size(body)
            lines.append(
                f"{name:42s} {size / 2**20:5.2f} {measured / size:8.1f}x {bound / size:6.1f}x"
            )
            assert bound >= measured, name  # an upper bound
            assert (bound <= MAX_EXPANSION * size) == (kind == "realistic"), name
            if kind != "hostile" and size <= DECODED_FLOOR // MAX_EXPANSION:
                decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=HOST)
    print("\n" + "\n".join(lines))  # (shown with -s)


def hostile_frame(item: bytes, size: int = 4 << 20) -> bytes:
    """A Result body of about ``size`` bytes whose value holds copies of ``item`` (in
    arrays of up to a million: the host's cap on one container's length)."""
    per = min(1_000_000, size // len(item))
    chunks = max(1, size // (per * len(item)))
    chunk = b"\xdd" + per.to_bytes(4, "big") + item * per
    return b"\x94\x03\x01" + bytes([0x90 + chunks]) + chunk * chunks + b"\x80"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_reply_is_refused_naming_the_cap(name: str) -> None:
    item = HOSTILE[name](1)[8:-1]
    body = hostile_frame(item)
    cap = HOST.max_decoded(len(body))
    assert cap == MAX_EXPANSION * len(body)
    with pytest.raises(RemoteProtocolError) as refused:
        decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=HOST)
    assert refused.value.side == "worker"
    assert refused.value.reason == (
        f"a frame of {len(body)} bytes would decode to more than {cap} bytes of objects "
        f"(its decoded-size cap)"
    )


def test_a_hostile_reply_is_refused_before_it_is_unpacked() -> None:
    body = hostile_frame(b"\x81\xe0\x80", 3 << 20)  # would be 109 bytes a byte
    with peak_allocation() as peak, pytest.raises(RemoteProtocolError, match="decoded-size cap"):
        decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=HOST)
    # refused from its bytes: nothing of what it decodes to was allocated (the decoder
    # copies the frame's container headers once, at most a byte per byte)
    assert peak() < len(body) + (64 << 10), peak()


# --------------------------------------------------------------------------- the bound

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
)
KEYS = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(KEYS, inner, max_size=12),
    max_leaves=200,
)


@FUZZ
@given(VALUES)
def test_the_bound_is_never_below_what_msgpack_allocates(value: Any) -> None:
    body = msgpack.packb(value, use_bin_type=True)
    assert decoded_size(body) >= unpacked_peak(body)


def test_the_cap_is_max_expansion_times_the_size_or_the_floor() -> None:
    limits = FrameLimits(max_expansion=8)
    assert limits.max_decoded(16 << 20) == 128 << 20
    assert limits.max_decoded(10) == DECODED_FLOOR
    assert FrameLimits().max_decoded(1 << 20) == -1  # no cap unless asked for
    with pytest.raises(ValueError, match="max_expansion"):
        FrameLimits(max_expansion=0)


def test_a_frame_at_the_cap_passes_and_one_byte_of_cost_more_is_refused() -> None:
    body = HOSTILE["empty maps"](50_000)
    bound = decoded_size(body)
    assert scan(body, 64, bound) is None
    assert scan(body, 64, bound - 1) is not None


def test_a_refused_frame_breaks_the_host_decoder() -> None:
    frame = len(body := hostile_frame(b"\x80")).to_bytes(4, "big") + body
    decoder = FrameDecoder(peer="worker", accept=WORKER_TO_HOST, limits=HOST)
    decoder.feed(frame, now=0.0)
    with pytest.raises(RemoteProtocolError, match="decoded-size cap"):
        decoder.next_message(now=0.0)
    with pytest.raises(RemoteProtocolError, match="decoded-size cap"):
        decoder.next_message(now=0.0)


def test_a_worker_decodes_its_hosts_frames_without_the_cap() -> None:
    # the host trusts nothing from a worker; a worker takes its host's values as sent
    body = hostile_frame(b"\x80")
    assert isinstance(decode_body(body, peer="worker", accept=WORKER_TO_HOST), Result)


# --------------------------------------------------------------------------- small frames

#: what a frame unpacked without the scan may cost per byte: a fixarray header, for
#: which msgpack preallocates 15 slots (176 bytes), is the costliest byte
SMALL_PER_BYTE = 176
#: what decoding anything costs beyond that (an exception and its message)
SMALL_FIXED = 8 << 10
#: the costliest bytes: a fixarray header msgpack preallocates 15 slots for, empty
#: containers, one-entry maps with int keys nested (each level a dict and an int)
WORST_ATOMS = [b"\x9f", b"\x8f", b"\x80", b"\x90", b"\x81\xe0", b"\x81\xe0\x80", b"\xe0", b"\xa2xy"]


def small_frames() -> list[bytes]:
    """The worst small frames: the largest a frame is unpacked unscanned, each of them
    filled with one costly pattern (valid where the pattern allows)."""
    room = SCAN_ABOVE - 6
    frames = [
        # incomplete: 1018 fixarray(15) headers, each preallocated, then unpacking fails
        b"\x94\x03\x01" + b"\x9f" * (SCAN_ABOVE - 3),
        # as many empty maps / lists as fit, in nested fixarrays of 15
        b"\x94\x03\x01" + (b"\x9f" + b"\x80" * 15) * (room // 16) + b"\x80",
        b"\x94\x03\x01" + (b"\x9f" + b"\x90" * 15) * (room // 16) + b"\x80",
    ]
    # one-entry maps with int keys, 60 deep (the depth cap is 64), in fixarrays of 15
    chain = b"\x81\xe0" * 60 + b"\x80"
    frames.append(b"\x94\x03\x01\x9f" + chain * 8)
    return [f[:SCAN_ABOVE] for f in frames]


@pytest.mark.parametrize("body", small_frames(), ids=lambda b: b[3:6].hex())
def test_the_worst_small_frame_costs_at_most_176_bytes_a_byte_without_a_scan(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(body) <= SCAN_ABOVE and b"\xdc" not in body and b"\xdd" not in body

    def no_scan(*args: Any) -> None:
        raise AssertionError("a small frame was scanned")

    monkeypatch.setattr(_decode, "scan", no_scan)
    with peak_allocation() as peak:
        try:
            decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=HOST)
        except RemoteProtocolError:
            pass
    assert peak() <= SMALL_PER_BYTE * len(body) + SMALL_FIXED, peak()
    assert SMALL_PER_BYTE * SCAN_ABOVE + SMALL_FIXED <= DECODED_FLOOR


@FUZZ
@given(st.lists(st.sampled_from(WORST_ATOMS), min_size=1, max_size=SCAN_ABOVE))
def test_any_small_frame_of_costly_bytes_costs_at_most_176_bytes_a_byte(atoms: list[bytes]) -> None:
    body = (b"\x94\x03\x01" + b"".join(atoms))[:SCAN_ABOVE]
    with peak_allocation() as peak:
        try:
            decode_body(body, peer="worker", accept=WORKER_TO_HOST, limits=HOST)
        except RemoteProtocolError:
            pass
    assert peak() <= SMALL_PER_BYTE * len(body) + SMALL_FIXED, peak()
    assert SMALL_PER_BYTE * SCAN_ABOVE + SMALL_FIXED <= DECODED_FLOOR
