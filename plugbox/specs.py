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

Ready sets: ``PIPELINE`` (the seed chapter's pre_process / process / post_process).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["first_result", "chain", "collect", "observe"]
OnFailure = Literal["raise", "skip"]
MODES: tuple[str, ...] = ("first_result", "chain", "collect", "observe")

__all__ = ["MODES", "PIPELINE", "HookSet", "HookSpec", "Mode", "OnFailure"]


@dataclass(frozen=True, kw_only=True, slots=True)
class HookSpec:
    """One hook: its name, arguments, mutable arguments, mode and failure default."""

    name: str
    args: tuple[str, ...]
    mode: Mode = "collect"
    mutable: frozenset[str] = field(default_factory=frozenset)
    on_failure: OnFailure | None = None
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
        if self.on_failure not in (None, "raise", "skip"):
            raise ValueError(f"hook {self.name}: on_failure must be 'raise' or 'skip'")
        object.__setattr__(self, "mutable", frozenset(self.mutable))

    @property
    def default_on_failure(self) -> OnFailure:
        """The spec's failure policy: explicit, else observe hooks skip, others raise."""
        if self.on_failure is not None:
            return self.on_failure
        return "skip" if self.mode == "observe" else "raise"

    def to_worker(self) -> dict[str, Any]:
        """What the worker needs to validate and dispatch this hook."""
        return {"args": list(self.args), "mutable": sorted(self.mutable)}


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

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"HookSet({self.name!r}, {list(self._specs)})"

    def to_worker(self) -> dict[str, Any]:
        """Every hook's worker-side description, keyed by hook name."""
        return {name: spec.to_worker() for name, spec in self._specs.items()}


PIPELINE = HookSet("pipeline", [
    HookSpec(name="pre_process", args=("input_data",), mode="observe",
             doc="Sees the input before processing; return ignored."),
    HookSpec(name="process", args=("input_data",), mode="chain",
             doc="Each plugin's non-None output is the next one's input; the last is the result."),
    HookSpec(name="post_process", args=("input_data", "output"), mode="observe",
             doc="Sees the input and the final output; return ignored."),
])
