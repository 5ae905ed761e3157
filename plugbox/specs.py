"""Hook specifications: which hooks a host offers, their arguments and semantics.

A ``HookSpec`` names a hook, its arguments, which of them a plugin may change in place,
how the results of several plugins combine (``mode``) and what a plugin failure does by
default (``on_failure``). A ``HookSet`` is the set a ``PluginHost`` serves.

Modes:

- ``first_result``: plugins run in order; the first non-None return is the result and
  the rest are not called.
- ``chain``: plugins run in order; a non-None return replaces the first argument for
  the next plugin; the last value of that argument is the result.
- ``collect``: plugins run in order; the result is the list of non-None returns.
- ``observe``: plugins run concurrently; returns are ignored, failures are recorded.

``kind`` says whether implementations must be plain functions (``"sync"``), coroutine
functions (``"async"``) or may be either (``"either"``, the default); the worker refuses
a plugin whose hook breaks it, naming plugin, hook and kind.

Ready sets: ``AGENT`` (the agent lifecycle of trpc-agent-go and Google ADK) and
``PIPELINE`` (pre_process / process / post_process, a chain of text transforms).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["first_result", "chain", "collect", "observe"]
OnFailure = Literal["raise", "skip"]
Kind = Literal["sync", "async", "either"]
MODES: tuple[str, ...] = ("first_result", "chain", "collect", "observe")
KINDS: tuple[str, ...] = ("sync", "async", "either")

__all__ = [
    "AGENT",
    "KINDS",
    "MODES",
    "PIPELINE",
    "HookSet",
    "HookSpec",
    "Kind",
    "Mode",
    "OnFailure",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class HookSpec:
    """One hook: its name, arguments, mutable arguments, mode and failure default.

    ``mutable`` names the arguments a plugin may change in place (the next plugin and
    the caller see the change); ``on_failure`` is the default policy when a plugin
    fails (None: observe hooks skip, the others raise); ``kind`` whether
    implementations must be ``"sync"``, ``"async"`` or may be ``"either"``.
    """

    name: str
    args: tuple[str, ...]
    mode: Mode = "collect"
    mutable: frozenset[str] = field(default_factory=frozenset)
    on_failure: OnFailure | None = None
    kind: Kind = "either"
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise ValueError(f"hook name {self.name!r} must be a public identifier")
        if self.mode not in MODES:
            raise ValueError(f"hook {self.name}: mode {self.mode!r} is not one of {MODES}")
        if len(set(self.args)) != len(self.args):
            raise ValueError(f"hook {self.name}: duplicate argument names")
        for arg in self.args:
            if not arg.isidentifier():
                raise ValueError(f"hook {self.name}: argument {arg!r} is not an identifier")
        unknown = set(self.mutable) - set(self.args)
        if unknown:
            raise ValueError(f"hook {self.name}: mutable {sorted(unknown)} not among its args")
        if self.mode == "chain" and not self.args:
            raise ValueError(f"hook {self.name}: a chain hook needs a first argument")
        if self.mode == "observe" and self.mutable:
            raise ValueError(
                f"hook {self.name}: an observe hook's plugins run concurrently, "
                f"so its arguments cannot be mutable"
            )
        if self.on_failure not in (None, "raise", "skip"):
            raise ValueError(f"hook {self.name}: on_failure must be 'raise' or 'skip'")
        if self.kind not in KINDS:
            raise ValueError(f"hook {self.name}: kind {self.kind!r} is not one of {KINDS}")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "mutable", frozenset(self.mutable))

    @property
    def default_on_failure(self) -> OnFailure:
        """The spec's failure policy: explicit, else observe hooks skip, others raise."""
        if self.on_failure is not None:
            return self.on_failure
        return "skip" if self.mode == "observe" else "raise"

    def to_worker(self) -> dict[str, Any]:
        """What the worker needs to validate and dispatch this hook."""
        return {"args": list(self.args), "mutable": sorted(self.mutable), "kind": self.kind}


class HookSet(Mapping[str, HookSpec]):
    """An ordered, read-only set of hook specs, looked up by hook name."""

    __slots__ = ("_specs", "name")

    def __init__(self, name: str, specs: Iterable[HookSpec]) -> None:
        self.name = name
        self._specs: dict[str, HookSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"hook set {name}: hook {spec.name!r} declared twice")
            self._specs[spec.name] = spec

    def __getitem__(self, hook: str) -> HookSpec:
        return self._specs[hook]

    def get(self, hook: str, default: Any = None) -> Any:  # (Mapping's, in one step)
        """The spec of ``hook``, or ``default`` if this set has no such hook."""
        return self._specs.get(hook, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"HookSet({self.name!r}, {list(self._specs)})"

    def to_worker(self) -> dict[str, Any]:
        """Every hook's worker-side description, keyed by hook name."""
        return {name: spec.to_worker() for name, spec in self._specs.items()}


PIPELINE = HookSet(
    "pipeline",
    [
        HookSpec(
            name="pre_process",
            args=("input_data",),
            mode="observe",
            doc="Sees the input before processing; return ignored.",
        ),
        HookSpec(
            name="process",
            args=("input_data",),
            mode="chain",
            doc="Each plugin's non-None output is the next one's input; the last is the result.",
        ),
        HookSpec(
            name="post_process",
            args=("input_data", "output"),
            mode="observe",
            doc="Sees the input and the final output; return ignored.",
        ),
    ],
)


#: The shapes the AGENT hooks' arguments take by convention (plain msgpack data; the
#: host framework builds them, plugbox only checks that they can cross the boundary):
#:
#: - ``context``: ``{"invocation_id": str, "agent_name": str, "state": {...}}`` and, in
#:   tool hooks, ``"tool_call_id"``; ``state`` is where plugins keep per-run data.
#: - ``message``: ``{"role": "user", "content": str}``; ``output``: a message
#:   ``{"role": "assistant", "content": str}``.
#: - ``agent``: ``{"name": str, ...}``; ``tool``: ``{"name": str, "description": str, ...}``;
#:   ``args``: the tool's arguments, a dict.
#: - ``request``: ``{"model": str, "messages": [message, ...], "tools": [...]}`` with
#:   ``"system"`` / ``"user"`` / ``"assistant"`` / ``"tool"`` roles; ``response``:
#:   ``{"content": str, "tool_calls": [{"id", "name", "args"}], ...}``.
#: - ``error``: ``{"type": str, "message": str}``; ``event``: ``{"id", "author",
#:   "type", "content", "tags": [str, ...], ...}``.
AGENT = HookSet(
    "agent",
    [
        HookSpec(
            name="on_user_message",
            args=("message", "context"),
            mode="first_result",
            mutable=frozenset({"message", "context"}),
            doc="The user's message as the run receives it. A non-None return replaces "
            "it (later plugins are not called); changes in place are kept.",
        ),
        HookSpec(
            name="before_run",
            args=("message", "context"),
            mode="first_result",
            mutable=frozenset({"message", "context"}),
            doc="Before the run starts. A non-None return ends the run early with that "
            "output: the agent does not run, later plugins are not called.",
        ),
        HookSpec(
            name="before_agent",
            args=("agent", "message", "context"),
            mode="first_result",
            mutable=frozenset({"message", "context"}),
            doc="Before an agent runs. A non-None return is the agent's output: the agent "
            "is skipped (trpc CustomResponse, ADK non-None).",
        ),
        HookSpec(
            name="after_agent",
            args=("agent", "message", "output", "context"),
            mode="first_result",
            mutable=frozenset({"output", "context"}),
            doc="After an agent finished. A non-None return replaces its output.",
        ),
        HookSpec(
            name="before_model",
            args=("request", "context"),
            mode="first_result",
            mutable=frozenset({"request", "context"}),
            doc="Before a model request is sent; the request may be changed in place. A "
            "non-None return is the response: the model is not called.",
        ),
        HookSpec(
            name="after_model",
            args=("request", "response", "context"),
            mode="first_result",
            mutable=frozenset({"response", "context"}),
            doc="After the model answered. A non-None return replaces the response.",
        ),
        HookSpec(
            name="on_model_error",
            args=("request", "error", "context"),
            mode="first_result",
            mutable=frozenset({"context"}),
            doc="The model call failed. A non-None return replaces the error (a response "
            "to use instead); None lets the error stand.",
        ),
        HookSpec(
            name="before_tool",
            args=("tool", "args", "context"),
            mode="first_result",
            mutable=frozenset({"args", "context"}),
            doc="Before a tool is called; its arguments may be rewritten in place (trpc "
            "ModifiedArguments). A non-None return is the result: the tool is not "
            "called.",
        ),
        HookSpec(
            name="after_tool",
            args=("tool", "args", "result", "context"),
            mode="first_result",
            mutable=frozenset({"result", "context"}),
            doc="After a tool returned. A non-None return replaces the result.",
        ),
        HookSpec(
            name="on_tool_error",
            args=("tool", "args", "error", "context"),
            mode="first_result",
            mutable=frozenset({"context"}),
            doc="The tool failed. A non-None return replaces the error (a result to use "
            "instead); None lets the error stand.",
        ),
        HookSpec(
            name="on_event",
            args=("event", "context"),
            mode="chain",
            mutable=frozenset({"event", "context"}),
            on_failure="skip",
            doc="Every event the run emits. A plugin may change it in place or return a "
            "replacement, which the next plugin sees; the last is the result. A "
            "failing plugin is logged and skipped: the event goes on as it was.",
        ),
        HookSpec(
            name="after_run",
            args=("message", "output", "context"),
            mode="observe",
            doc="After the run. Plugins run concurrently; returns are ignored; failures "
            "are collected (outcome.failures) and logged.",
        ),
    ],
)
