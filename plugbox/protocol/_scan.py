"""A structural pre-scan of msgpack bytes, run before a large frame (or a small one that
may hold an array16/array32 header) is unpacked: it bounds the elements containers
declare, the nesting depth, and what the frame decodes to (``decoded_size``)."""

# msgpack's unpacker allocates a list of the declared length when it meets an array
# header, before reading the elements, and every object costs far more decoded than its
# bytes (an empty map: 1 byte, a 64-byte dict). A valid frame's containers declare at
# most one element per byte of it.

from __future__ import annotations

import struct

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from

# What each msgpack object costs once decoded, in bytes of CPython (64-bit, 3.11)
# memory rounded up to the allocator's 16-byte granule: an upper bound whatever the
# bytes are (tests/protocol/test_decoded_size.py checks it against tracemalloc). Ints
# -5..256, None, True, False, '', one-character strs, b'' and one-byte bytes are
# cached by the interpreter and cost only the slot that holds them; str map keys are
# interned, so the scan counts each distinct key once.
_LIST = 64  # a list object with its GC header; then 8-byte slots, over-allocated as it grows
_SLOT = 10
_DICT_EMPTY = 64
_DICT_SMALL = 184  # 1..5 entries, str keys: the smallest keys table
_DICT_KEY = 40  # more for that table when a key is not a str
_DICT_BASE, _DICT_ENTRY = 168, 56  # 6 and more entries: the table grows by doubling
_STR = 80 + 15  # a str: the largest header, then up to 4 bytes a character ...
_STR_PER_BYTE = 4  # ... and one UTF-8 byte may be a whole (UCS-4) character
_BIN = 33 + 15
_INT, _BIG_INT, _FLOAT = 32, 48, 32
_UNPACKER = 1024  # what unpacking anything costs (msgpack's own, the first time)

# the kinds of type byte, and for fixed-size scalars their payload size and cost
_SCALAR, _FIXSTR, _SIZED, _EXT, _FIXMAP, _FIXARRAY, _ARRAY, _MAP, _INVALID = range(9)
_KIND = [_SCALAR] * 256
_SKIP = [0] * 256
_COST = [0] * 256
for _b in range(0xE0, 0xFB):  # negative fixints below -5: new int objects
    _COST[_b] = _INT
for _b, (_skip, _cost) in {
    0xCA: (4, _FLOAT),
    0xCB: (8, _FLOAT),
    0xCC: (1, 0),  # uint8: 0..255, all cached
    0xCD: (2, _INT),
    0xCE: (4, _INT),
    0xCF: (8, _BIG_INT),
    0xD0: (1, _INT),
    0xD1: (2, _INT),
    0xD2: (4, _INT),
    0xD3: (8, _BIG_INT),
    # fixext: refused when unpacked
    0xD4: (2, _BIN),
    0xD5: (3, _BIN),
    0xD6: (5, _BIN),
    0xD7: (9, _BIN),
    0xD8: (17, _BIN),
}.items():
    _SKIP[_b], _COST[_b] = _skip, _cost
for _b in range(0x80, 0x90):
    _KIND[_b] = _FIXMAP
for _b in range(0x90, 0xA0):
    _KIND[_b] = _FIXARRAY
for _b in range(0xA0, 0xC0):
    _KIND[_b] = _FIXSTR
for _b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
    _KIND[_b] = _SIZED
for _b in (0xC7, 0xC8, 0xC9):
    _KIND[_b] = _EXT
_KIND[0xDC] = _KIND[0xDD] = _ARRAY
_KIND[0xDE] = _KIND[0xDF] = _MAP
_KIND[0xC1] = _INVALID
# the length field's size of a sized type, and whether it is a str
_WIDTH = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}
_WIDTH.update({0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4})
_IS_STR = {0xD9, 0xDA, 0xDB}


def _dict_cost(n: int) -> int:
    if n == 0:
        return _DICT_EMPTY
    return _DICT_SMALL if n <= 5 else _DICT_BASE + _DICT_ENTRY * n


_FIXMAP_COST = [_dict_cost(n) for n in range(16)]


def _length(data: bytes | bytearray, pos: int, size: int) -> int:
    if size == 1:
        return data[pos]
    if size == 2:
        return int(_U16(data, pos)[0])
    return int(_U32(data, pos)[0])


def _str_cost(n: int) -> int:
    """A str of ``n`` UTF-8 bytes; '' and one-character strs are cached."""
    return 0 if n <= 1 else (_STR + _STR_PER_BYTE * n) & ~15


def _bin_cost(n: int) -> int:
    return 0 if n <= 1 else (_BIN + n) & ~15


def decoded_size(data: bytes | bytearray) -> int:
    """An upper bound of the bytes msgpack allocates to decode ``data``, a structurally
    valid msgpack value; -1 if it is not one (``scan`` says why)."""
    problem, cost = _walk(data, 1 << 30, -1)
    return -1 if problem is not None else cost


def scan(data: bytes | bytearray, max_depth: int, max_decoded: int = -1) -> str | None:
    """None if ``data`` may be unpacked safely, else why not. ``max_decoded``, if not
    negative, is the most it may decode to, in bytes (``decoded_size``)."""
    return _walk(data, max_depth, max_decoded)[0]


def _walk(data: bytes | bytearray, max_depth: int, budget: int) -> tuple[str | None, int]:
    """(why ``data`` may not be unpacked or None, its decoded cost so far)."""
    kinds, skips, costs = _KIND, _SKIP, _COST
    end = len(data)
    pos = 0
    declared = 0
    cost = _UNPACKER
    longest = 0  # the longest str: decoding it passes through a UCS-4 copy
    keys: set[bytes] = set()
    # remaining element counts of the open containers, innermost last; a map's count
    # is negative (2n keys and values, counting up to 0), so an even one is at a key.
    # Runs of scalars and short strs are read in the inner loops, without the stack.
    stack: list[int] = [1]
    try:
        while stack:
            left = stack[-1]
            if left > 0:
                while True:
                    b = data[pos]
                    kind = kinds[b]
                    if kind == _SCALAR:
                        pos += 1 + skips[b]
                        cost += costs[b]
                    elif kind == _FIXSTR:
                        n = b & 0x1F
                        pos += 1 + n
                        if n > 1:
                            cost += (_STR + _STR_PER_BYTE * n) & ~15
                    else:
                        break
                    left -= 1
                    if not left:
                        break
                if not left:
                    stack.pop()
                    continue
                stack[-1] = left - 1
                key = False
            elif left < 0:
                while True:
                    b = data[pos]
                    kind = kinds[b]
                    if left & 1:  # a value
                        if kind == _SCALAR:
                            pos += 1 + skips[b]
                            cost += costs[b]
                        elif kind == _FIXSTR:
                            n = b & 0x1F
                            pos += 1 + n
                            if n > 1:
                                cost += (_STR + _STR_PER_BYTE * n) & ~15
                        else:
                            break
                    elif kind == _FIXSTR:  # a str key: interned
                        n = b & 0x1F
                        pos += 1
                        if n > 1 and (name := bytes(data[pos : pos + n])) not in keys:
                            keys.add(name)
                            cost += (_STR + _STR_PER_BYTE * n) & ~15
                        pos += n
                    elif kind == _SCALAR:  # not a str: a bigger keys table
                        pos += 1 + skips[b]
                        cost += costs[b] + _DICT_KEY
                    else:
                        break
                    left += 1
                    if not left:
                        break
                if not left:
                    stack.pop()
                    continue
                stack[-1] = left + 1
                key = not left & 1
            else:
                stack.pop()
                continue
            # a container, a str or bin with a length field, an ext or an invalid byte
            b = data[pos]
            pos += 1
            kind = kinds[b]
            if kind == _FIXMAP:
                n = b & 0x0F
                count = -2 * n
                cost += _FIXMAP_COST[n]
            elif kind == _FIXARRAY:
                n = count = b & 0x0F
                cost += _LIST + _SLOT * n
            else:
                width = _WIDTH.get(b, 0)
                n = _length(data, pos, width) if width else 0
                pos += width
                if kind == _SIZED:
                    pos += n
                    if b in _IS_STR:
                        cost += _str_cost(n)
                        longest = max(longest, n)
                    else:
                        cost += _bin_cost(n) + (_DICT_KEY if key else 0)
                    if 0 <= budget < cost:
                        return _over(budget, end), cost
                    continue
                if kind == _EXT:
                    pos += 1 + n
                    continue
                if kind == _MAP:
                    count = -2 * n
                    cost += _dict_cost(n)
                elif kind == _ARRAY:
                    count = n
                    cost += _LIST + _SLOT * n
                else:
                    return f"undecodable frame: invalid msgpack type byte 0x{b:02x}", cost
            declared += abs(count)
            if declared > end:
                return (
                    f"undecodable frame: containers declare {declared} elements in a frame "
                    f"of {end} bytes"
                ), cost
            if 0 <= budget < cost:
                return _over(budget, end), cost
            if count:
                if len(stack) >= max_depth:
                    return f"frame nests deeper than {max_depth}", cost
                stack.append(count)
    except (IndexError, struct.error):
        return "undecodable frame: incomplete msgpack value", cost
    cost += longest
    if 0 <= budget < cost:
        return _over(budget, end), cost
    return None, cost


def _over(budget: int, size: int) -> str:
    return (
        f"a frame of {size} bytes would decode to more than {budget} bytes of objects "
        f"(its decoded-size cap)"
    )
