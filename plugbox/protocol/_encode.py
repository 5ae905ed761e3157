"""Encoding messages as frames: a 4-byte big-endian length, then the msgpack body.

``encode`` takes any message; ``encode_call`` and ``encode_result`` build the two
frames of every call from parts already packed, so a value sent to many plugins is
packed once. A value that cannot cross, or a frame over the cap, is a
``LocalProtocolError`` at the side that produced it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack

from ._errors import LocalProtocolError
from ._limits import DEFAULT_LIMITS, HEADER
from ._messages import Message
from ._values import nests_deeper, pack, pack_for_peer, peer_may_refuse, unpack_as_peer

_pack_header = HEADER.pack


def encode(
    message: Message,
    *,
    side: str = "local",
    max_frame_bytes: int = DEFAULT_LIMITS.max_frame_bytes,
    verify: bool = False,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> bytes:
    """Encode ``message`` as one frame.

    A value msgpack cannot carry, or a frame over ``max_frame_bytes``, is a
    ``LocalProtocolError`` naming ``side``. With ``verify`` the body is also decoded
    as the peer will decode it, so a value the peer would refuse (a tuple as a dict
    key, an extension type, nesting deeper than ``max_depth``) fails here, at the side
    that produced it.
    """
    try:
        body: bytes = msgpack.packb(message.to_wire(), use_bin_type=True)
        # the message's own array header (its first byte) is not the peer's concern,
        # but it counts toward the depth
        verify = verify and peer_may_refuse(body[1:], max_depth - 1)
        decoded = unpack_as_peer(body) if verify else None
    except (TypeError, ValueError, OverflowError) as exc:
        reason = str(exc) or type(exc).__name__
        raise LocalProtocolError(
            f"cannot encode {type(message).__name__}: {reason}", side=side
        ) from exc
    if verify and nests_deeper(body, decoded, max_depth):
        raise LocalProtocolError(
            f"cannot encode {type(message).__name__}: it nests deeper "
            f"than {max_depth} levels (the protocol's cap)",
            side=side,
        )
    if len(body) > max_frame_bytes:
        raise LocalProtocolError(
            f"{type(message).__name__} of {len(body)} bytes exceeds the "
            f"{max_frame_bytes}-byte frame cap",
            side=side,
        )
    return _pack_header(len(body)) + body


_CALL_HEAD = b"\x94" + bytes([2])  # [Call.TAG, ...] as a 4-element msgpack array


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 0x10000:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


_UINT8, _UINT16, _UINT32 = (struct.Struct(f">B{c}").pack for c in "BHI")


def _pack_id(n: int) -> bytes:
    """``pack(n)`` for a call id, without going through msgpack's call."""
    if 0 <= n < 0x80:
        return bytes((n,))
    if 0 <= n < 0x100:
        return _UINT8(0xCC, n)
    if 0 <= n < 0x10000:
        return _UINT16(0xCD, n)
    if 0 <= n < 0x100000000:
        return _UINT32(0xCE, n)
    return pack(n)


#: hook and argument names, packed: a host sends the same few names in every call
_NAMES: dict[str, bytes] = {}
_NAMES_KEPT = 4096


def _pack_name(name: str) -> bytes:
    packed = _NAMES.get(name)
    if packed is None:
        packed = pack(name)
        if len(_NAMES) < _NAMES_KEPT:
            _NAMES[name] = packed
    return packed


def encode_call(
    call_id: int,
    hook: str,
    packed_args: Mapping[str, bytes],
    *,
    side: str = "host",
    max_frame_bytes: int = DEFAULT_LIMITS.max_frame_bytes,
) -> bytes:
    """A Call frame from arguments already msgpack-encoded (``pack``), so a value sent
    to many plugins is encoded once. The caller vouches for the packed values (see
    ``check_crossable``); the frame decodes to ``Call(id, hook, args)``."""
    parts = [_CALL_HEAD, _pack_id(call_id), _pack_name(hook), _map_header(len(packed_args))]
    for name, value in packed_args.items():
        parts.append(_pack_name(name))
        parts.append(value)
    body = b"".join(parts)
    if len(body) > max_frame_bytes:
        raise LocalProtocolError(
            f"Call of {len(body)} bytes exceeds the {max_frame_bytes}-byte frame cap", side=side
        )
    return _pack_header(len(body)) + body


_RESULT_HEAD = b"\x94" + bytes([3])  # [Result.TAG, ...] as a 4-element msgpack array
_EMPTY_MAP = b"\x80"  # no argument changed: the common case


def encode_result(
    call_id: int,
    value: Any,
    changed: Mapping[str, Any],
    *,
    side: str = "worker",
    max_frame_bytes: int = DEFAULT_LIMITS.max_frame_bytes,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> bytes:
    """The frame of ``Result(id=call_id, value=value, changed=changed)``, checked as
    ``encode(..., verify=True, max_depth=max_depth)`` checks it, with the same errors:
    each part is decoded as the peer will decode it only when it might refuse it
    (see ``pack_for_peer``)."""
    try:
        # inside the frame's array: one level less to spare
        packed = pack_for_peer(value, max_depth - 1)
        changes = pack_for_peer(changed, max_depth - 1) if changed else _EMPTY_MAP
    except (TypeError, ValueError, OverflowError) as exc:
        reason = str(exc) or type(exc).__name__
        raise LocalProtocolError(f"cannot encode Result: {reason}", side=side) from exc
    if packed is None or changes is None:
        raise LocalProtocolError(
            f"cannot encode Result: it nests deeper than {max_depth} levels (the protocol's cap)",
            side=side,
        )
    parts = [_RESULT_HEAD, _pack_id(call_id), packed, changes]
    body = b"".join(parts)
    if len(body) > max_frame_bytes:
        raise LocalProtocolError(
            f"Result of {len(body)} bytes exceeds the {max_frame_bytes}-byte frame cap", side=side
        )
    return _pack_header(len(body)) + body
