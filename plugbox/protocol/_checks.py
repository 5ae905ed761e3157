"""The value checks message constructors make: a bad field raises TypeError naming it."""

from __future__ import annotations

from itertools import repeat
from typing import Any


def check(cond: bool, what: str) -> None:
    if not cond:
        raise TypeError(what)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(map(isinstance, v, repeat(str)))


def is_str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(map(isinstance, v, repeat(str)))


#: the limit values a worker applies to itself (``plugbox.limits.Limits.to_worker``),
#: each a positive number; True for those that may also be None (no cap)
WORKER_LIMITS: dict[str, bool] = dict.fromkeys(
    ("memory_mb", "cpu_seconds", "idle_cpu_share", "threads"), True
) | dict.fromkeys(
    ("open_files", "file_size_mb", "stack_kb", "thread_stack_kb", "max_message_mb"), False
)
HEX = frozenset("0123456789abcdefABCDEF")


def is_worker_limits(v: Any) -> bool:
    return isinstance(v, dict) and all(
        (x is None and WORKER_LIMITS.get(k)) or (k in WORKER_LIMITS and is_number(x) and x > 0)
        for k, x in v.items()
    )


def is_sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and HEX.issuperset(v)
