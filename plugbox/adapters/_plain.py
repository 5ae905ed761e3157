"""Framework objects as plain, msgpack-able data: what the adapters hand to plugins."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: how deep ``plain`` follows a value before showing the rest as text: below the
#: protocol's cap (``plugbox.protocol.MAX_VALUE_DEPTH``), with room for the hook
#: arguments the value is put into (a request's messages, a message's content...)
MAX_DEPTH = 48
_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack can carry


def plain(value: Any, _depth: int = 0) -> Any:
    """``value`` as msgpack-able data: pydantic models dumped (JSON mode, without
    None fields), dataclasses as dicts, tuples and sets as lists, dict keys as str;
    an int msgpack cannot carry, and anything else, as its ``str()``."""
    if value is None or isinstance(value, (bool, float, str, bytes)):
        return value
    if isinstance(value, int):
        return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else str(value)
    if _depth > MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, _depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return plain(dump(mode="json", exclude_none=True), _depth + 1)
        except Exception:  # a model that cannot dump itself is shown as text
            return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)
        }
    return str(value)
