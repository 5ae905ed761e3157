"""Framing: a 4-byte big-endian length, then one msgpack-encoded message.

``encode`` turns a message into a frame. ``FrameDecoder`` is fed bytes and yields
messages; it checks every size before allocating for it (the frame length against
``max_frame_bytes`` before buffering the body; msgpack's string/array/map lengths
against what the frame can hold; nesting against ``max_depth``) and gives a partial
frame ``frame_timeout`` seconds to complete. It does no I/O and reads no clock: the
caller passes ``now``.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ._errors import LocalProtocolError, RemoteProtocolError
from ._messages import FIELD_NAMES, MESSAGE_TYPES, Call, Message, Result
from ._scan import scan

#: frames up to this size are unpacked without a pre-scan unless they hold a byte that
#: may be an array16/array32 header (see ``decode_body``).
SCAN_ABOVE = 1024

HEADER: Final = struct.Struct(">I")
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
HEADER_SIZE: Final = HEADER.size


@dataclass(frozen=True, kw_only=True, slots=True)
class FrameLimits:
    """Caps a decoder enforces on what its peer sends."""

    max_frame_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_container_len: int = 1_000_000
    frame_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 16:
            raise ValueError("max_frame_bytes must be at least 16")
        if self.max_depth < 2:
            raise ValueError("max_depth must be at least 2")
        if self.max_container_len < 1:
            raise ValueError("max_container_len must be positive")
        if not self.frame_timeout > 0:
            raise ValueError("frame_timeout must be positive")


DEFAULT_LIMITS: Final = FrameLimits()


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def pack(value: Any) -> bytes:
    """msgpack-encode ``value`` the way frames do (raises TypeError for other types)."""
    packed = _pack_exact(value)
    return _pack_any(value) if packed is None else packed


def _pack_any(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack_as_peer(body: bytes) -> Any:
    try:
        return msgpack.unpackb(
            body, raw=False, strict_map_key=False, ext_hook=_refuse_ext, timestamp=0
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
_NOT_CONTAINER_HEADER = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def _depth_exceeds(value: Any, max_depth: int) -> bool:
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


#: how deep a value may nest where it is sent as a hook argument (or as a plugin's
#: config): the frame's message array and the argument map hold it, and a peer refuses
#: a frame nested deeper than ``DEFAULT_LIMITS.max_depth``.
MAX_VALUE_DEPTH: Final = DEFAULT_LIMITS.max_depth - 2


def _nests_deeper(packed: bytes, decoded: Any, max_depth: int) -> bool:
    """Whether ``decoded`` (the value ``packed`` decodes to) nests deeper than
    ``max_depth``. Nesting ``max_depth + 1`` deep takes at least ``max_depth``
    containers, so data with fewer header-like bytes is cleared without a walk."""
    return len(packed.translate(None, _NOT_CONTAINER_HEADER)) >= max_depth and _depth_exceeds(
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


def _peer_may_refuse(packed: bytes, max_depth: int) -> bool:
    """False when ``packed`` (msgpack of a Python value) certainly decodes at the peer:
    no array or extension header byte, and too few container headers to nest past
    ``max_depth``. True means: decode it to know."""
    return bool(packed.translate(None, _NOT_SUSPECT)) or (
        len(packed.translate(None, _NOT_CONTAINER_HEADER)) >= max_depth
    )


#: every byte value that is neither a container header nor an extension header
_NOT_MARK = bytes(
    b
    for b in range(256)
    if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF or 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8)
)
#: what those headers become in ``_pack_for_peer``'s marks: b"e" for an extension's
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


def _pack_for_peer(value: Any, max_depth: int) -> bytes | None:
    """``pack(value)`` checked to decode at the peer; None when it nests deeper than
    ``max_depth``. Raises msgpack's TypeError, ValueError or OverflowError for a value
    that does not pack, or packs into something the peer refuses (a tuple as a dict key,
    an extension type).

    A value of exact msgpack types is cleared without decoding it when its bytes hold no
    extension header and too few container headers to nest past ``max_depth``; any
    other value is decoded as the peer will decode it when ``_peer_may_refuse`` says so.
    """
    packed = _pack_exact(value)
    if packed is not None:
        marks = packed.translate(_MARKS, _NOT_MARK)  # b"c" per container, b"e" per ext
        if len(marks) < max_depth and b"e" not in marks:
            return packed
    else:
        packed = _pack_any(value)
        if not _peer_may_refuse(packed, max_depth):
            return packed
    decoded = _unpack_as_peer(packed)
    return None if _nests_deeper(packed, decoded, max_depth) else packed


def check_crossable(value: Any) -> bytes:
    """Pack ``value`` and check the other side can decode it; TypeError if not.

    msgpack packs some things no peer can decode (a tuple used as a dict key becomes an
    unhashable list; extension types are refused; a value nested deeper than
    ``MAX_VALUE_DEPTH`` makes a frame the peer refuses), so packing alone is not the
    test.
    """
    try:
        packed = _pack_for_peer(value, MAX_VALUE_DEPTH)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(str(exc) or type(exc).__name__) from None
    if packed is None:
        raise TypeError(
            f"the value nests deeper than {MAX_VALUE_DEPTH} levels (the protocol's cap)"
        )
    return packed


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
        verify = verify and _peer_may_refuse(body[1:], max_depth - 1)
        decoded = _unpack_as_peer(body) if verify else None
    except (TypeError, ValueError, OverflowError) as exc:
        reason = str(exc) or type(exc).__name__
        raise LocalProtocolError(
            f"cannot encode {type(message).__name__}: {reason}", side=side
        ) from exc
    if verify and _nests_deeper(body, decoded, max_depth):
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
    (see ``_pack_for_peer``)."""
    try:
        # inside the frame's array: one level less to spare
        packed = _pack_for_peer(value, max_depth - 1)
        changes = _pack_for_peer(changed, max_depth - 1) if changed else _EMPTY_MAP
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


# Calls and Results (one per call each way) are built straight from their wire arrays,
# without the checked constructor, whose keyword arguments and frozen set-up cost more
# than decoding the frame: each field is set through its slot's descriptor once the
# message's own ``__post_init__`` checks, narrowed to the exact types msgpack decodes
# to, clear it. Anything else goes through the constructor and fails as it always does.
_new = object.__new__
_CALL_ID, _CALL_HOOK, _CALL_ARGS = (vars(Call)[name].__set__ for name in FIELD_NAMES[Call])
_RESULT_ID, _RESULT_VALUE, _RESULT_CHANGED = (
    vars(Result)[name].__set__ for name in FIELD_NAMES[Result]
)
_is_str = str.__instancecheck__


def _build_call(wire: list[Any]) -> Message:
    _, call_id, hook, args = wire
    if not (
        type(call_id) is int
        and call_id > 0
        and type(hook) is str
        and hook != ""
        and type(args) is dict
        and all(map(_is_str, args))
    ):
        return Call(id=call_id, hook=hook, args=args)
    call = _new(Call)
    _CALL_ID(call, call_id)
    _CALL_HOOK(call, hook)
    _CALL_ARGS(call, args)
    return call


def _build_result(wire: list[Any]) -> Message:
    _, call_id, value, changed = wire
    if not (
        type(call_id) is int
        and call_id > 0
        and type(changed) is dict
        and all(map(_is_str, changed))
    ):
        return Result(id=call_id, value=value, changed=changed)
    result = _new(Result)
    _RESULT_ID(result, call_id)
    _RESULT_VALUE(result, value)
    _RESULT_CHANGED(result, changed)
    return result


#: the builders above, by tag
_BUILD_FULL: dict[int, Callable[[list[Any]], Message]] = {
    Call.TAG: _build_call,
    Result.TAG: _build_result,
}


def decode_body(
    body: bytes,
    *,
    peer: str,
    accept: frozenset[type[Message]],
    limits: FrameLimits = DEFAULT_LIMITS,
) -> Message:
    """Decode one frame body (without its header) into a message from ``peer``."""
    return _decode_body(body, peer, accept, limits)


# Whether a frame's body must be pre-scanned (``_scan.scan``) before msgpack unpacks
# it: msgpack preallocates a list of the length an array header declares. A fixarray
# declares at most 15 elements, so a small frame of them costs at most a small constant
# per byte; an array16/array32 header may declare up to the frame's length
# (``max_array_len``), and nested ones would each preallocate that much: a 1 KiB frame
# of nested ``dc 03 00`` headers made msgpack allocate 2 MB. Maps are not preallocated.
# So a frame over SCAN_ABOVE is scanned, and a smaller one when it holds a 0xdc or 0xdd
# byte (possibly inside a string: the scan then merely finds nothing wrong).
def _decode_body(
    body: bytes | bytearray, peer: str, accept: frozenset[type[Message]], limits: FrameLimits
) -> Message:
    size = len(body)
    n = min(size, limits.max_container_len)
    headers = body.translate(None, _NOT_CONTAINER_HEADER)  # one pass for both checks
    scanned = size > SCAN_ABOVE or b"\xdc" in headers or b"\xdd" in headers
    if scanned:
        problem = scan(body, limits.max_depth)
        if problem is not None:
            raise RemoteProtocolError(problem, side=peer)
    try:
        wire = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_refuse_ext,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=0,
            timestamp=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        RecursionError,
    ) as exc:
        reason = str(exc) or type(exc).__name__
        raise RemoteProtocolError(f"undecodable frame: {reason}", side=peer) from None
    if (
        not scanned
        and len(headers) >= limits.max_depth  # the scan checked the depth
        and _depth_exceeds(wire, limits.max_depth)
    ):
        raise RemoteProtocolError(f"frame nests deeper than {limits.max_depth}", side=peer)
    if type(wire) is list and len(wire) == 4 and type(wire[0]) is int:  # a Call, a Result
        build = _BUILD_FULL.get(wire[0])
        if build is not None and MESSAGE_TYPES[wire[0]] in accept:
            try:
                return build(wire)
            except TypeError as exc:
                raise RemoteProtocolError(
                    f"malformed {MESSAGE_TYPES[wire[0]].__name__}: {exc}", side=peer
                ) from None
    if (
        not isinstance(wire, list)
        or not wire
        or not isinstance(wire[0], int)
        or isinstance(wire[0], bool)
    ):
        raise RemoteProtocolError("a frame must be an array starting with a message tag", side=peer)
    cls = MESSAGE_TYPES.get(wire[0])
    if cls is None or cls not in accept:
        what = cls.__name__ if cls is not None else f"unknown message tag {wire[0]}"
        raise RemoteProtocolError(f"{what} is not a message the {peer} may send", side=peer)
    try:
        names = FIELD_NAMES[cls]
        values = wire[1:]
        if len(values) > len(names):
            raise RemoteProtocolError(
                f"{cls.__name__} has {len(values)} fields, at most {len(names)} allowed", side=peer
            )
        return cls(**dict(zip(names, values, strict=False)))
    except TypeError as exc:
        raise RemoteProtocolError(f"malformed {cls.__name__}: {exc}", side=peer) from None


class FrameDecoder:
    """Turns a byte stream from ``peer`` into messages.

    Feed it bytes with ``feed``; take messages with ``next_message`` until it returns
    None (more bytes needed). After any error the decoder is broken and every later
    call raises the same error again.
    """

    __slots__ = ("_accept", "_buf", "_error", "_limits", "_need", "_partial_since", "peer")

    def __init__(
        self, *, peer: str, accept: frozenset[type[Message]], limits: FrameLimits = DEFAULT_LIMITS
    ) -> None:
        self.peer = peer
        self._accept = accept
        self._limits = limits
        self._buf = bytearray()
        self._need = HEADER_SIZE
        self._partial_since: float | None = None
        self._error: RemoteProtocolError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes, now: float) -> None:
        """Add bytes received at time ``now`` (any monotonic clock, in seconds)."""
        if self._error is not None:
            raise self._error
        if data:
            if not self._buf:
                self._partial_since = now
            self._buf += data

    def deadline(self) -> float | None:
        """When the partial frame now buffered must be complete, or None if none is."""
        buf = self._buf
        if not buf or self._partial_since is None:
            return None
        if len(buf) >= HEADER_SIZE and len(buf) >= HEADER_SIZE + _unpack_header(buf)[0]:
            return None  # a whole frame waits to be taken
        return self._partial_since + self._limits.frame_timeout

    def check_deadline(self, now: float) -> None:
        """Raise if a partial frame has been incomplete for longer than the timeout."""
        if self._error is not None:
            raise self._error
        deadline = self.deadline()
        if deadline is not None and now > deadline:
            self._fail(
                f"a partial frame ({len(self._buf)} bytes) was not completed "
                f"within {self._limits.frame_timeout:g} s"
            )

    def next_message(self, now: float | None = None) -> Message | None:
        """The next whole message, or None when more bytes are needed."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        (size,) = _unpack_header(buf)
        if size > self._limits.max_frame_bytes:
            self._fail(f"frame of {size} bytes exceeds the {self._limits.max_frame_bytes}-byte cap")
        if size == 0:
            self._fail("empty frame")
        end = HEADER_SIZE + size
        if len(buf) < end:
            return None
        body = buf[HEADER_SIZE:end]  # (a bytearray: msgpack, translate and scan take it)
        del buf[:end]
        if buf:
            # the rest starts a new frame: its clock starts now (or stays if unknown)
            if now is not None:
                self._partial_since = now
        else:
            self._partial_since = None
        try:
            return _decode_body(body, self.peer, self._accept, self._limits)
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _fail(self, reason: str) -> None:
        self._error = RemoteProtocolError(reason, side=self.peer)
        self._buf.clear()
        raise self._error
