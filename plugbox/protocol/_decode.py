"""Decoding frames: ``FrameDecoder`` is fed bytes and yields messages.

It checks every size before allocating for it (the frame length against
``max_frame_bytes`` before buffering the body; msgpack's string/array/map lengths
against what the frame can hold; nesting against ``max_depth``; what the frame decodes
to against ``max_expansion``) and gives a partial
frame ``frame_timeout`` seconds to complete. It does no I/O and reads no clock: the
caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from ._errors import RemoteProtocolError
from ._limits import DEFAULT_LIMITS, HEADER, HEADER_SIZE, FrameLimits
from ._messages import FIELD_NAMES, MESSAGE_TYPES, Call, Log, Message, Result
from ._scan import scan
from ._values import NOT_CONTAINER_HEADER, depth_exceeds, refuse_ext

#: frames up to this size are unpacked without a pre-scan unless they hold a byte that
#: may be an array16/array32 header (see ``decode_body``).
SCAN_ABOVE = 1024

_unpack_header = HEADER.unpack_from


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
_LOG_LEVEL, _LOG_LOGGER, _LOG_MESSAGE = (vars(Log)[name].__set__ for name in FIELD_NAMES[Log])
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


def _build_log(wire: list[Any]) -> Message:
    # (a worker may send many: built as cheaply as a Result)
    _, level, logger, message = wire
    if not (type(level) is int and type(logger) is str and type(message) is str):
        return Log(level=level, logger=logger, message=message)
    log = _new(Log)
    _LOG_LEVEL(log, level)
    _LOG_LOGGER(log, logger)
    _LOG_MESSAGE(log, message)
    return log


#: the builders above, by tag
_BUILD_FULL: dict[int, Callable[[list[Any]], Message]] = {
    Call.TAG: _build_call,
    Result.TAG: _build_result,
    Log.TAG: _build_log,
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
# byte (possibly inside a string: the scan then merely finds nothing wrong). The scan
# also bounds what the frame decodes to (``FrameLimits.max_decoded``); a frame that is
# not scanned is held to it by its size: it decodes to at most DECODED_FLOOR.
def _decode_body(
    body: bytes | bytearray, peer: str, accept: frozenset[type[Message]], limits: FrameLimits
) -> Message:
    size = len(body)
    n = min(size, limits.max_container_len)
    headers = body.translate(None, NOT_CONTAINER_HEADER)  # one pass for both checks
    scanned = size > SCAN_ABOVE or b"\xdc" in headers or b"\xdd" in headers
    if scanned:
        problem = scan(body, limits.max_depth, limits.max_decoded(size))
        if problem is not None:
            raise RemoteProtocolError(problem, side=peer)
    try:
        wire = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=refuse_ext,
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
        and depth_exceeds(wire, limits.max_depth)
    ):
        raise RemoteProtocolError(f"frame nests deeper than {limits.max_depth}", side=peer)
    if type(wire) is list and len(wire) == 4 and type(wire[0]) is int:  # a Call, Result, Log
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

    def drop_logs(self) -> tuple[int, int]:
        """Drop the whole Log frames at the head of what was received, unread: for a
        peer whose Log records are being dropped anyway (a flood), at a fraction of the
        cost of decoding them. (How many, and their bytes.) A frame is taken for a Log by
        its first bytes, a 4-element array and the Log tag; its fields are not read."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        end, cap, pos, count = len(buf), self._limits.max_frame_bytes, 0, 0
        while end - pos > HEADER_SIZE + 1:
            (size,) = _unpack_header(buf, pos)
            start = pos + HEADER_SIZE
            if not (2 <= size <= cap and start + size <= end and buf[start] == 0x94):
                break
            if buf[start + 1] != Log.TAG:
                break
            pos = start + size
            count += 1
        if pos:
            del buf[:pos]
            if not buf:
                self._partial_since = None
        return count, pos

    def _fail(self, reason: str) -> None:
        self._error = RemoteProtocolError(reason, side=self.peer)
        self._buf.clear()
        raise self._error
