"""A structural pre-scan of msgpack bytes, run before a large frame (or a small one that
may hold an array16/array32 header) is unpacked.

msgpack's unpacker allocates a list of the declared length when it meets an array
header, before reading the elements. A hostile frame can nest headers that
each declare many elements and so make the unpacker allocate far more than the frame's
size. A valid frame can do neither: every declared element takes at least one byte, so
the declared element counts of all containers together cannot exceed the frame's
length. ``scan`` checks that, and the nesting depth, reading only headers.
"""

from __future__ import annotations

import struct

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from

# bytes of payload that follow a fixed-size scalar's type byte
_FIXED = {
    0xC0: 0,
    0xC2: 0,
    0xC3: 0,
    0xCA: 4,
    0xCB: 8,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
    0xD4: 2,
    0xD5: 3,
    0xD6: 5,
    0xD7: 9,
    0xD8: 17,
}
# type byte -> (length field size) for str/bin/ext with an explicit length
_SIZED = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}


def _length(data: bytes | bytearray, pos: int, size: int) -> int:
    if size == 1:
        return data[pos]
    if size == 2:
        return int(_U16(data, pos)[0])
    return int(_U32(data, pos)[0])


def scan(data: bytes | bytearray, max_depth: int) -> str | None:
    """None if ``data`` may be unpacked safely, else why not."""
    end = len(data)
    pos = 0
    declared = 0
    # remaining element counts of the open containers, innermost last
    stack: list[int] = [1]
    try:
        while stack:
            if stack[-1] == 0:
                stack.pop()
                continue
            stack[-1] -= 1
            if pos >= end:
                return "undecodable frame: incomplete msgpack value"
            b = data[pos]
            pos += 1
            count = -1
            if b <= 0x7F or b >= 0xE0:
                continue
            if 0x80 <= b <= 0x8F:
                count = 2 * (b & 0x0F)
            elif 0x90 <= b <= 0x9F:
                count = b & 0x0F
            elif 0xA0 <= b <= 0xBF:
                pos += b & 0x1F
                continue
            elif b in _FIXED:
                pos += _FIXED[b]
                continue
            elif b in _SIZED:
                size = _SIZED[b]
                pos += size + _length(data, pos, size)
                continue
            elif b in _EXT:
                size = _EXT[b]
                pos += size + 1 + _length(data, pos, size)
                continue
            elif b in (0xDC, 0xDD):
                size = 2 if b == 0xDC else 4
                count = _length(data, pos, size)
                pos += size
            elif b in (0xDE, 0xDF):
                size = 2 if b == 0xDE else 4
                count = 2 * _length(data, pos, size)
                pos += size
            else:
                return f"undecodable frame: invalid msgpack type byte 0x{b:02x}"
            declared += count
            if declared > end:
                return (
                    f"undecodable frame: containers declare {declared} elements in a frame "
                    f"of {end} bytes"
                )
            if count:
                if len(stack) >= max_depth:
                    return f"frame nests deeper than {max_depth}"
                stack.append(count)
    except (IndexError, struct.error):
        return "undecodable frame: incomplete msgpack value"
    return None
