"""How one hook call runs across the plugins that implement it: per the hook's mode
(``observe`` all at once, the others in the order of adding), each plugin's failure
policy, and the arguments it changed in place applied for the next and the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from ..errors import PluginFailure
from ..protocol import check_crossable, pack
from ..reports import Outcome
from ..specs import HookSpec, OnFailure
from .options import PluginOptions
from .supervision import SentCall, SupervisedPlugin


class Callee(Protocol):
    """What a hook call calls: a ``SupervisedPlugin``, or the audit's wrapper of one."""

    @property
    def name(self) -> str: ...
    @property
    def hooks(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def options(self) -> PluginOptions: ...

    async def invoke(
        self, hook: str, args: dict[str, Any], packed: dict[str, bytes]
    ) -> tuple[Any, dict[str, Any]]: ...
    def send(
        self, hook: str, args: dict[str, Any], packed: dict[str, bytes]
    ) -> SentCall | None: ...
    async def finish(self, call: SentCall) -> tuple[Any, dict[str, Any]]: ...
    def abandon(self, call: SentCall) -> None: ...


#: what a host calls hooks with: ``call_hook``, or the audit's wrapper of it
HookCaller = Callable[
    [
        HookSpec,
        Sequence[SupervisedPlugin],
        dict[str, Any],
        OnFailure | None,
        dict[str, bytes] | None,
    ],
    Awaitable[Outcome],
]


def check_args(spec: HookSpec, args: dict[str, Any]) -> dict[str, bytes]:
    """Each argument msgpack-encoded, once for all plugins; TypeError, naming hook and
    argument, for anything the host cannot send."""
    if len(args) != len(spec.args) or not all(map(args.__contains__, spec.args)):
        unknown = [name for name in args if name not in spec.args]
        if unknown:
            raise TypeError(
                f"hook {spec.name!r} has no argument {unknown[0]!r} "
                f"(it has: {', '.join(spec.args) or 'none'})"
            )
        missing = [name for name in spec.args if name not in args]
        raise TypeError(f"hook {spec.name!r} needs argument {missing[0]!r}")
    packed: dict[str, bytes] = {}
    for name, value in args.items():
        try:
            packed[name] = check_crossable(value)
        except TypeError as exc:
            raise TypeError(
                f"hook {spec.name!r} argument {name!r}: a "
                f"{type(value).__name__} cannot cross the process boundary "
                f"(only None, bool, int, float, str, bytes, list and dict can): "
                f"{exc}"
            ) from None
    return packed


def apply_changes(args: dict[str, Any], changed: dict[str, Any]) -> None:
    """Apply a plugin's in-place changes, keeping the caller's containers."""
    for name, value in changed.items():
        current = args.get(name)
        if isinstance(current, dict) and isinstance(value, dict):
            current.clear()
            current.update(value)
        elif isinstance(current, list) and isinstance(value, list):
            current[:] = value
        else:
            args[name] = value


def _policy(spec: HookSpec, plugin: Callee, default: OnFailure | None) -> OnFailure:
    return plugin.options.on_failure or default or spec.default_on_failure


async def call_hook(
    spec: HookSpec,
    plugins: Sequence[Callee],
    args: dict[str, Any],
    default_policy: OnFailure | None = None,
    packed: dict[str, bytes] | None = None,
) -> Outcome:
    """Run ``spec``'s hook across ``plugins`` and combine the results per its mode.

    ``packed`` is ``check_args``'s encoding of ``args``; it is kept in step with every
    change a plugin makes, so each argument is encoded once per value, not per plugin.
    """
    if packed is None:
        packed = check_args(spec, args)
    outcome = Outcome(args=args)
    targets = [p for p in plugins if spec.name in p.hooks and not p.closed]
    if spec.mode == "observe":
        await _observe(spec, targets, args, packed, outcome, default_policy)
        return outcome
    collected: list[Any] = []
    first = spec.args[0] if spec.args else None
    for plugin in targets:
        try:
            value = await _invoke(plugin, spec, args, packed)
        except PluginFailure as failure:
            if _policy(spec, plugin, default_policy) == "raise":
                raise
            outcome.failures.append(failure.report)
            continue
        outcome.called.append(plugin.name)
        if value is None:
            continue
        if spec.mode == "first_result":
            outcome.value = value
            return outcome
        if spec.mode == "chain":
            assert first is not None
            args[first] = value
            packed[first] = pack(value)
        else:
            collected.append(value)
    if spec.mode == "chain":
        outcome.value = args[first] if first is not None else None
    elif spec.mode == "collect":
        outcome.value = collected
    return outcome


async def _invoke(
    plugin: Callee, spec: HookSpec, args: dict[str, Any], packed: dict[str, bytes]
) -> Any:
    sent, sent_packed = _accepted(plugin, spec, args, packed)
    value, changed = await plugin.invoke(spec.name, sent, sent_packed)
    if changed:
        kept = {k: v for k, v in changed.items() if k in spec.mutable}
        apply_changes(args, kept)
        for name in kept:
            packed[name] = pack(args[name])
    return value


def _accepted(
    plugin: Callee, spec: HookSpec, args: dict[str, Any], packed: dict[str, bytes]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The arguments ``plugin`` takes (the host checked its Handshake's list to be a
    set of the hook's arguments: as long, it is all of them)."""
    accepted = plugin.hooks[spec.name]
    if len(accepted) == len(spec.args):
        return args, packed
    return {k: args[k] for k in accepted}, {k: packed[k] for k in accepted}


async def _observe(
    spec: HookSpec,
    plugins: Sequence[Callee],
    args: dict[str, Any],
    packed: dict[str, bytes],
    outcome: Outcome,
    default_policy: OnFailure | None,
) -> None:
    """Every plugin at once. The call goes to each running worker first, then their
    replies are read in turn, with no task per plugin (each call's deadline runs from
    its send, and kills its worker when it passes, read or not). A plugin whose worker
    must be started first (``send`` gives None) is invoked in a task, beside the
    reading. ``called`` and ``failures`` come in
    the order the plugins were added, whichever answered first."""
    raised: list[PluginFailure] = []

    def failed(plugin: Callee, failure: PluginFailure) -> None:
        outcome.failures.append(failure.report)
        if _policy(spec, plugin, default_policy) == "raise":
            raised.append(failure)

    sent: list[tuple[Callee, SentCall]] = []
    starting: list[Callee] = []
    read = 0  # how many of ``sent`` have been read (or failed)

    async def read_replies() -> None:
        nonlocal read
        while read < len(sent):
            plugin, call = sent[read]
            read += 1
            try:
                await plugin.finish(call)
            except PluginFailure as failure:
                failed(plugin, failure)
                continue
            outcome.called.append(plugin.name)

    async def one(plugin: Callee) -> None:
        accepted, accepted_packed = _accepted(plugin, spec, args, packed)
        try:
            await plugin.invoke(spec.name, accepted, accepted_packed)
        except PluginFailure as failure:
            failed(plugin, failure)
            return
        outcome.called.append(plugin.name)

    try:
        for plugin in plugins:
            accepted, accepted_packed = _accepted(plugin, spec, args, packed)
            try:
                call = plugin.send(spec.name, accepted, accepted_packed)
            except PluginFailure as failure:  # quarantined
                failed(plugin, failure)
                continue
            if call is None:
                starting.append(plugin)
            else:
                sent.append((plugin, call))
        if not starting:
            await read_replies()
        elif not sent and len(starting) == 1:  # nothing to run beside it: no task group
            await one(starting[0])
        else:
            async with anyio.create_task_group() as tg:
                for plugin in starting:
                    tg.start_soon(one, plugin)
                await read_replies()
    finally:
        for plugin, call in sent[read:]:  # cancelled or failed before reading them
            plugin.abandon(call)
    if (starting and len(outcome.called) > 1) or len(outcome.failures) > 1:
        # in the order of adding: tasks end in any order, and a quarantined plugin's
        # failure comes as the calls are sent, before any read
        order = {plugin.name: i for i, plugin in enumerate(plugins)}
        outcome.called.sort(key=order.__getitem__)
        outcome.failures.sort(key=lambda report: order.get(report.plugin, len(order)))
    if raised:
        raise raised[0]
