"""Inline plugins: a class handed to ``host.add`` as an object, sent to the worker by
value through multiprocess's pickler (dill's, ``recurse=True``: the class, its methods,
closure cells and the globals they use). Only host-to-worker bytes are unpickled."""

from __future__ import annotations

from typing import Any

from ..errors import PluginLoadError


def inline_ref(cls: type) -> str:
    """How an inline class is named in reports and errors."""
    return f"<inline {cls.__module__}.{cls.__qualname__}>"


def inline_source(ref: Any) -> tuple[Any, bytes | None]:
    """``(ref, None)`` for a reference; ``(display name, pickled class)`` for a class.
    A class defined in a function or in ``__main__`` travels by value; one at the top
    level of an importable module by reference, and the worker imports its module."""
    if not isinstance(ref, type):
        return ref, None
    name = inline_ref(ref)
    from multiprocess.reduction import ForkingPickler  # only for inline plugins

    try:
        data = bytes(ForkingPickler.dumps(ref, recurse=True))
    except Exception as exc:
        raise PluginLoadError(
            name, f"cannot serialize the class by value: {type(exc).__name__}: {exc}"
        ) from None
    return name, data


__all__ = ["inline_ref", "inline_source"]
