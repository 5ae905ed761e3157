"""Reading a hook method: its parameters as it is called, whether it is async, and
which declared hook a misspelt name was meant to be."""

from __future__ import annotations

import inspect
import types
from typing import Any


def is_async(method: Any) -> bool:
    """Whether calling ``method`` gives a coroutine (``async def``, also behind a
    ``functools.partial`` or an object with an ``async def __call__``)."""
    return inspect.iscoroutinefunction(method) or inspect.iscoroutinefunction(
        inspect.getattr_static(type(method), "__call__", None)
    )


def near_hook(attr: str, declared: list[str]) -> str | None:
    """The declared hook ``attr`` is probably meant to be (``BeforeModel``,
    ``before_modle``), or None."""
    squashed = attr.replace("_", "").lower()
    for hook in declared:
        if hook.replace("_", "").lower() == squashed:
            return hook
    import difflib  # (only for a plugin that misspells a hook: not kept in every worker)

    close = difflib.get_close_matches(attr.lower(), declared, n=1, cutoff=0.8)
    return close[0] if close else None


POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD
VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
CO_VARARGS, CO_VARKEYWORDS = inspect.CO_VARARGS, inspect.CO_VARKEYWORDS


def parameters(method: Any) -> list[tuple[str, inspect._ParameterKind]]:
    """(name, kind) of each parameter of ``method`` as it is called, in order: what
    ``inspect.signature(method).parameters`` gives, read straight from the code object
    for the usual hook (a plain method, not wrapped) and from ``inspect`` otherwise."""
    func = getattr(method, "__func__", None)
    if (
        type(method) is not types.MethodType
        or type(func) is not types.FunctionType
        or hasattr(func, "__wrapped__")
        or hasattr(func, "__signature__")
        or func.__code__.co_argcount == 0
    ):
        return [(p.name, p.kind) for p in inspect.signature(method).parameters.values()]
    code = func.__code__
    names, flags = code.co_varnames, code.co_flags
    positional, keyword_only = code.co_argcount, code.co_kwonlyargcount
    posonly = code.co_posonlyargcount
    params: list[tuple[str, inspect._ParameterKind]] = [
        (names[i], POSITIONAL_ONLY if i < posonly else KEYWORD) for i in range(1, positional)
    ]  # self is bound
    index = positional + keyword_only
    if flags & CO_VARARGS:
        params.append((names[index], VAR_POSITIONAL))
        index += 1
    params.extend((name, KEYWORD_ONLY) for name in names[positional : positional + keyword_only])
    if flags & CO_VARKEYWORDS:
        params.append((names[index], VAR_KEYWORD))
    return params
