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


#: how deep a value may nest where it is sent as a hook argument (or as a plugin's
#: config): the frame's message array and the argument map hold it, and a peer refuses
#: a frame nested deeper than ``DEFAULT_LIMITS.max_depth``.
MAX_VALUE_DEPTH: Final = DEFAULT_LIMITS.max_depth - 2
