"""The frame header and the caps a decoder enforces on what its peer sends."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

#: a frame: this 4-byte big-endian length, then one msgpack-encoded message
HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size


@dataclass(frozen=True, kw_only=True, slots=True)
class FrameLimits:
    """Caps a decoder enforces on what its peer sends.

    ``max_expansion``, if set, caps what a frame decodes to: at most that many times
    its size in bytes of Python objects (or ``DECODED_FLOOR``, if more), estimated from
    its bytes before anything is unpacked. The host sets it (``MAX_EXPANSION``) for
    what workers send; a worker trusts its host's frames.
    """

    max_frame_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    max_container_len: int = 1_000_000
    frame_timeout: float = 10.0
    max_expansion: int | None = None

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 16:
            raise ValueError("max_frame_bytes must be at least 16")
        if self.max_depth < 2:
            raise ValueError("max_depth must be at least 2")
        if self.max_container_len < 1:
            raise ValueError("max_container_len must be positive")
        if not self.frame_timeout > 0:
            raise ValueError("frame_timeout must be positive")
        if self.max_expansion is not None and self.max_expansion < 1:
            raise ValueError("max_expansion must be at least 1")

    def max_decoded(self, size: int) -> int:
        """The most a frame of ``size`` bytes may decode to, in bytes; -1: no cap."""
        if self.max_expansion is None:
            return -1
        return max(self.max_expansion * size, DECODED_FLOOR)


#: What the host lets a worker's frame decode to, per byte of the frame (or
#: ``DECODED_FLOOR``, if more). Measured with tracemalloc (``test_the_table`` in
#: tests/protocol/test_decoded_size.py prints it): replies of realistic shapes decode
#: to 1x their size (a long str or bytes), 3-14x (floats, ints, rows, records, chat
#: messages), 12x (nested JSON-like data), 22x (a list of dicts of two str keys), the
#: scan's bound 1-25x; dense ones (lists of one-entry dicts or of empty lists) to
#: 32-65x, hostile ones to 41-120x. 32 holds a 16 MiB frame to 512 MiB decoded instead
#: of about 2 GiB.
MAX_EXPANSION: Final = 32
#: What any frame may decode to: 64 MiB, so that a small but dense reply (a list of
#: empty lists, of one-entry dicts: 32-74x) passes, and far above what a frame of up
#: to ``SCAN_ABOVE`` bytes, unpacked without the scan, decodes to (one byte costs at
#: most 176 bytes: a fixarray header, for which msgpack preallocates 15 slots).
DECODED_FLOOR: Final = 64 << 20

DEFAULT_LIMITS: Final = FrameLimits()


#: how deep a value may nest where it is sent as a hook argument (or as a plugin's
#: config): the frame's message array and the argument map hold it, and a peer refuses
#: a frame nested deeper than ``DEFAULT_LIMITS.max_depth``.
MAX_VALUE_DEPTH: Final = DEFAULT_LIMITS.max_depth - 2
