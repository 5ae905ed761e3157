"""Fault plugins that raise, crash the worker or break the wire: each fails its call
with cause ``raised``, ``crashed`` or ``protocol``. Imported inside workers: stdlib only.
"""

from __future__ import annotations

import builtins
import ctypes
import os
import struct
import sys
import time
from typing import Any

from ..protocol import CHANNEL_FD
from .fault_plugin import FOREVER, FaultPlugin


class FaultError(Exception):
    """What ``RaisePlugin`` raises by default."""


class RaisePlugin(FaultPlugin):
    """Raises an exception: ``exception`` (a builtin exception's name, default
    ``FaultError``), ``message``. Cause ``raised``; the worker lives on."""

    kind = "raise"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        message = str(self._amount("message", f"fault injected in {hook}"))
        exc_name = self._amount("exception", None)
        exc_type = getattr(builtins, exc_name, None) if exc_name else FaultError
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            exc_type = FaultError
        raise exc_type(message)


class SegfaultPlugin(FaultPlugin):
    """Reads address 0 through ctypes: SIGSEGV. Cause ``crashed``."""

    kind = "segfault"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        ctypes.string_at(0)


class AbortPlugin(FaultPlugin):
    """``os.abort()``: SIGABRT. Cause ``crashed``."""

    kind = "abort"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        os.abort()


class ExitPlugin(FaultPlugin):
    """``os._exit(code)`` (``code``, default 3), skipping every cleanup. Cause
    ``crashed`` with that exit status."""

    kind = "exit"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        sys.stdout.flush()
        os._exit(int(self._amount("code", 3)))


class RecursionPlugin(FaultPlugin):
    """Recurses without end. ``through_c=False`` (default): Python's recursion limit
    raises RecursionError, cause ``raised``. ``through_c=True``: the recursion limit is
    lifted and each level goes through C (``sorted(key=...)``), so the C stack
    overflows its small RLIMIT_STACK: SIGSEGV, cause ``crashed``."""

    kind = "recursion"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        if self._amount("through_c", False):
            sys.setrecursionlimit(10**8)

            def down(n: int) -> Any:
                return sorted([n + 1], key=down)

            return down(0)

        def deeper(n: int) -> int:
            return deeper(n + 1) + 1

        return deeper(0)


class UnserializablePlugin(FaultPlugin):
    """Returns a value msgpack cannot carry (an ``object()``). Cause ``raised``
    (TypeError naming the hook), reported by the worker; it lives on."""

    kind = "unserializable"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        return object()


class OversizePlugin(FaultPlugin):
    """Returns ``mb`` megabytes (default 17: over the default ``max_message_mb`` of 16).
    Cause ``raised``: the worker refuses to send a frame over the limit and replies
    with a TypeError instead; it lives on."""

    kind = "oversize"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        return b"x" * int(float(self._amount("mb", 17)) * (1 << 20))


class ChannelPlugin(FaultPlugin):
    """Breaks the channel (fd 3) under the worker, then sleeps. ``how``: ``"close"``
    (default), ``"garbage"`` (an undecodable frame), ``"oversize"`` (a frame header
    announcing 1 GiB) or ``"unknown_id"`` (a well-formed reply to a call never made).
    Cause ``protocol``; the host kills the worker."""

    kind = "channel"

    def _strike(self, hook: str, args: dict[str, Any]) -> Any:
        how = self._amount("how", "close")
        if how == "close":
            os.close(CHANNEL_FD)
        elif how == "garbage":
            os.write(CHANNEL_FD, b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
        elif how == "oversize":
            os.write(CHANNEL_FD, struct.pack(">I", 1 << 30) + b"\x00" * 64)
        elif how == "unknown_id":
            from ..protocol import Result, encode

            os.write(CHANNEL_FD, encode(Result(id=999_999, value=None, changed={}), side="worker"))
        else:
            raise ValueError(f"unknown channel fault {how!r}")
        time.sleep(FOREVER)
