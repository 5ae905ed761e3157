"""Packing values as frames carry them, and checking that the peer can decode them.

msgpack packs some values no peer decodes (a tuple as a dict key, an extension type,
nesting past the depth cap); these functions find them cheaply, from the packed bytes
where they can, by decoding as the peer will where they must.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from ._limits import MAX_VALUE_DEPTH


def refuse_ext(code: int, data: bytes) -> Any:
    """msgpack's ``ext_hook`` for what a peer sent: every extension type is refused."""
    raise ValueError(f"msgpack extension type {code} is not allowed")


def pack(value: Any) -> bytes:
    """msgpack-encode ``value`` the way frames do (raises TypeError for other types)."""
    packed = _pack_exact(value)
    return _pack_any(value) if packed is None else packed


def _pack_any(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack_as_peer(body: bytes) -> Any:
    """Decode packed data as the peer decodes a frame's body; a TypeError names a dict
    key it could not hash (a tuple key, packed as an array)."""
    try:
        return msgpack.unpackb(
            body, raw=False, strict_map_key=False, ext_hook=refuse_ext, timestamp=0
        )
    except TypeError as exc:
        if "unhashable" in str(exc):
            raise TypeError(
                "a dict key must be None, bool, int, float, str or bytes "
                "(a tuple key cannot cross the process boundary)"
            ) from None
        raise


#: every byte value that is not a msgpack array or map header. A value nests at most
#: one level deeper than the number of header-like bytes it holds (its containers, then
#: a scalar), so most frames are cleared by one ``bytes.translate`` without walking the
#: decoded value.
NOT_CONTAINER_HEADER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def depth_exceeds(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        if isinstance(item, list):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for x in item.values())
            stack.extend((k, depth + 1) for k in item if isinstance(k, (list, dict)))
    return False


def nests_deeper(packed: bytes, decoded: Any, max_depth: int) -> bool:
    """Whether ``decoded`` (the value ``packed`` decodes to) nests deeper than
    ``max_depth``. Nesting ``max_depth + 1`` deep takes at least ``max_depth``
    containers, so data with fewer header-like bytes is cleared without a walk."""
    return len(packed.translate(None, NOT_CONTAINER_HEADER)) >= max_depth and depth_exceeds(
        decoded, max_depth
    )


#: every byte value that is neither a msgpack array header nor an extension header.
#: Packed data without such bytes decodes back as it was packed: no extension type, and
#: no array (the only way a packed map key can be unhashable for the peer: a tuple key
#: packs as an array). Bytes inside strings may look like headers; such data merely
#: takes the slow path (decode and see).
_NOT_SUSPECT = bytes(
    b
    for b in range(256)
    if not (0x90 <= b <= 0x9F or b in (0xDC, 0xDD) or 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8)
)


def peer_may_refuse(packed: bytes, max_depth: int) -> bool:
    """False when ``packed`` (msgpack of a Python value) certainly decodes at the peer:
    no array or extension header byte, and too few container headers to nest past
    ``max_depth``. True means: decode it to know."""
    return bool(packed.translate(None, _NOT_SUSPECT)) or (
        len(packed.translate(None, NOT_CONTAINER_HEADER)) >= max_depth
    )


#: every byte value that is neither a container header nor an extension header
_NOT_MARK = bytes(
    b
    for b in range(256)
    if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF or 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8)
)
#: what those headers become in ``pack_for_peer``'s marks: b"e" for an extension's
_MARKS = bytes(b"e"[0] if 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8 else b"c"[0] for b in range(256))


#: each thread's packer for exact types, kept between calls: making one per value (as
#: ``msgpack.packb`` does) costs more than packing a small value. Nothing of Python runs
#: while it packs exact types, so no one re-enters it on its thread.
_exact = threading.local()
#: a packer whose buffer grew past this is dropped after use, not kept
_EXACT_KEPT_BYTES = 64 * 1024


def _pack_exact(value: Any) -> bytes | None:
    """``pack(value)`` when ``value`` holds only the exact msgpack types (no tuple, no
    subclass of dict, int or str...), else None. No dict key in such a value can be a
    list (lists are unhashable), so its arrays cannot decode as unhashable keys."""
    try:
        packer = _exact.packer
    except AttributeError:
        packer = _exact.packer = msgpack.Packer(use_bin_type=True, strict_types=True)
    try:
        packed: bytes = packer.pack(value)
    except (TypeError, ValueError, OverflowError):
        return None  # (the packer drops what it had packed of the value)
    if len(packed) > _EXACT_KEPT_BYTES:
        del _exact.packer
    return packed


def pack_for_peer(value: Any, max_depth: int) -> bytes | None:
    """``pack(value)`` checked to decode at the peer; None when it nests deeper than
    ``max_depth``. Raises msgpack's TypeError, ValueError or OverflowError for a value
    that does not pack, or packs into something the peer refuses (a tuple as a dict key,
    an extension type).

    A value of exact msgpack types is cleared without decoding it when its bytes hold no
    extension header and too few container headers to nest past ``max_depth``; any
    other value is decoded as the peer will decode it when ``peer_may_refuse`` says so.
    """
    packed = _pack_exact(value)
    if packed is not None:
        marks = packed.translate(_MARKS, _NOT_MARK)  # b"c" per container, b"e" per ext
        if len(marks) < max_depth and b"e" not in marks:
            return packed
    else:
        packed = _pack_any(value)
        if not peer_may_refuse(packed, max_depth):
            return packed
    decoded = unpack_as_peer(packed)
    return None if nests_deeper(packed, decoded, max_depth) else packed


def pack_decoded(value: Any, max_depth: int) -> bytes:
    """``pack(value)`` for a value decoded from a peer's frame, to be sent on in another
    frame; ValueError when it nests deeper than ``max_depth``. It was decoded under a
    depth cap, holds only the exact msgpack types and is at hand decoded: no second
    decode, and a walk only when its bytes hold ``max_depth`` container headers."""
    packed = pack(value)
    if len(packed) >= max_depth and nests_deeper(packed, value, max_depth):
        raise ValueError(f"it nests deeper than {max_depth} levels (the protocol's cap)")
    return packed


def check_crossable(value: Any) -> bytes:
    """Pack ``value`` and check the other side can decode it; TypeError if not.

    msgpack packs some things no peer can decode (a tuple used as a dict key becomes an
    unhashable list; extension types are refused; a value nested deeper than
    ``MAX_VALUE_DEPTH`` makes a frame the peer refuses), so packing alone is not the
    test.
    """
    try:
        packed = pack_for_peer(value, MAX_VALUE_DEPTH)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(str(exc) or type(exc).__name__) from None
    if packed is None:
        raise TypeError(
            f"the value nests deeper than {MAX_VALUE_DEPTH} levels (the protocol's cap)"
        )
    return packed
