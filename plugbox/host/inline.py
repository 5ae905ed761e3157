"""Inline plugins: a class handed to ``host.add`` as an object, sent by value.

A plugin class defined inside a test function or in a notebook (``__main__``) has no
reference a worker could import. ``host.add(SomeClass)`` serializes it with dill
(``recurse=True``: the class, its methods, the closure cells and the globals they use)
and sends the bytes in ``Start.inline``; the worker unpickles them after its sandbox is
on. A class at the top level of an importable module travels by reference (dill's
rule) and is imported by the worker like ``"package.module:ClassName"``.

Only host-to-worker bytes are ever unpickled: nothing a worker sends back is.
"""

from __future__ import annotations

from typing import Any

from ..errors import PluginLoadError


def inline_ref(cls: type) -> str:
    """How an inline class is named in reports and errors."""
    return f"<inline {cls.__module__}.{cls.__qualname__}>"


def inline_source(ref: Any) -> tuple[Any, bytes | None]:
    """``(ref, None)`` for a reference; ``(display name, dill bytes)`` for a class."""
    if not isinstance(ref, type):
        return ref, None
    name = inline_ref(ref)
    import dill  # comes with multiprocess; only needed for inline plugins

    try:
        data: bytes = dill.dumps(ref, recurse=True)
    except Exception as exc:
        raise PluginLoadError(
            name, f"cannot serialize the class by value: {type(exc).__name__}: {exc}"
        ) from None
    return name, data


__all__ = ["inline_ref", "inline_source"]
