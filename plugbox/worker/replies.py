"""What the worker sends besides results: the Error for an exception a plugin raised,
and a Log for each of the plugin's log records."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from ..protocol import Error, Log, encode
from .refusals import refusal_of


def exception_chain(exc: BaseException) -> list[str]:
    """Type names along ``__cause__`` / ``__context__`` (outermost excluded)."""
    names: list[str] = []
    seen = {id(exc)}
    cur = exc.__cause__ or exc.__context__
    while cur is not None and id(cur) not in seen and len(names) < 16:
        seen.add(id(cur))
        names.append(type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return names


def error_reply(call_id: int, exc: BaseException) -> Error:
    """The Error message for an exception the plugin raised. If a refusal of the
    sandbox or a limit made it (``refusals.refusal_of``), ``details`` name the setting
    that allows it (``refused``) and say so in words (``refusal``)."""
    tb = "".join(traceback.format_exception(exc))
    chain = exception_chain(exc)
    if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM from mmap and friends
        chain.append("MemoryError")
    elif isinstance(exc, MemoryError) and type(exc) is not MemoryError:
        chain.append("MemoryError")  # a library's own kind (numpy's _ArrayMemoryError)
    elif isinstance(exc, ImportError) and "failed to map segment" in str(exc):
        chain.append("MemoryError")  # the loader could not map a library: no room left
    refusal = refusal_of(exc)
    return Error(
        id=call_id,
        exc_type=type(exc).__qualname__,
        message=str(exc)[:4000],
        traceback=tb[-16000:],
        chain=chain,
        details={"refused": refusal[0], "refusal": refusal[1]} if refusal else {},
    )


class ChannelLogHandler(logging.Handler):
    """Sends the plugin's stdlib log records to the host as Log messages."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = Log(level=record.levelno, logger=record.name, message=self.format(record))
            self._send(encode(msg, side="worker"))
        except Exception:
            self.handleError(record)
