"""Plugin failures as the OpenAI Agents SDK lets them through: each ``PluginFailure``
class mixed with the SDK's ``AgentsException``."""

from __future__ import annotations

from agents.exceptions import AgentsException

from ..errors import FAILURE_TYPES, PluginFailure


class AgentsPluginFailure(AgentsException):
    """Mixed into every ``PluginFailure`` the adapter raises, so that the SDK, which
    lets its own ``AgentsException`` through and wraps anything else raised in a tool
    in a ``UserError``, hands the plugbox error to the caller of ``Runner.run`` as it
    is. Catch ``plugbox.errors.PluginFailure`` (or ``PluginCrashed``...) as usual."""


def _sdk_type(cls: type[PluginFailure]) -> type[PluginFailure]:
    return type(
        cls.__name__,
        (cls, AgentsPluginFailure),
        {
            "__module__": "plugbox.adapters.openai_agents",
            "__doc__": cls.__doc__,
            "__qualname__": cls.__name__,
        },
    )


_FAILURE_CLASSES: list[type[PluginFailure]] = [PluginFailure, *FAILURE_TYPES.values()]
_SDK_TYPES: dict[type[PluginFailure], type[PluginFailure]] = {
    cls: _sdk_type(cls) for cls in _FAILURE_CLASSES
}


def agents_failure(failure: PluginFailure) -> PluginFailure:
    """``failure`` as an instance of its class mixed with ``AgentsPluginFailure``
    (the same report); one that already is, as it is."""
    if isinstance(failure, AgentsPluginFailure):
        return failure
    cls = _SDK_TYPES.get(type(failure)) or _SDK_TYPES[PluginFailure]
    converted = cls(failure.report)
    return converted.with_traceback(failure.__traceback__)
