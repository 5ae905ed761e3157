"""How one hook call runs across the plugins that implement it: per the hook's mode
(``observe`` all at once, the others in the order of adding), each plugin's failure
policy, and what a plugin returns or changes passed on to the next and the caller (a
value the next plugin cannot take fails the plugin that produced it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from ..errors import PluginFailure
from ..protocol import (
    MAX_VALUE_DEPTH,
    LocalProtocolError,
    check_crossable,
    pack_decoded,
    unpack_as_peer,
)
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
    def refuse(self, hook: str, detail: str) -> PluginFailure: ...


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
    handoff: Handoff | None = None  # made once a plugin changes an argument
    for plugin in targets:
        try:
            value, changed = await _invoke(plugin, spec, args, packed, handoff, outcome)
        except PluginFailure as failure:
            if _policy(spec, plugin, default_policy) == "raise":
                raise
            outcome.failures.append(failure.report)
            continue
        except _Blamed as blamed:  # a producer's failure, under "raise"
            raise blamed.failure from None
        if changed or (value is not None and spec.mode == "chain"):
            if handoff is None:
                handoff = Handoff(spec, default_policy)
            problem = handoff.take(plugin, args, packed, value, changed)
            if problem is not None:  # nothing of it was taken
                refused = plugin.refuse(spec.name, problem)
                if _policy(spec, plugin, default_policy) == "raise":
                    raise refused
                outcome.failures.append(refused.report)
                continue
        outcome.called.append(plugin.name)
        if value is None or spec.mode == "chain":
            continue
        if spec.mode == "first_result":
            outcome.value = value
            return outcome
        collected.append(value)
    if spec.mode == "chain":
        outcome.value = args[first] if first is not None else None
    elif spec.mode == "collect":
        outcome.value = collected
    return outcome


async def _invoke(
    plugin: Callee,
    spec: HookSpec,
    args: dict[str, Any],
    packed: dict[str, bytes],
    handoff: Handoff | None,
    outcome: Outcome,
) -> tuple[Any, dict[str, Any]]:
    """``plugin.invoke`` with the arguments it takes. A Call over its worker's frame cap
    is not sent (LocalProtocolError): the plugin that produced the largest value in it
    fails instead (``Handoff.blame``) and, under "skip", the call is made again with the
    value before. If the caller's own arguments do not fit: TypeError."""
    while True:
        sent, sent_packed = _accepted(plugin, spec, args, packed)
        try:
            return await plugin.invoke(spec.name, sent, sent_packed)
        except LocalProtocolError as exc:
            if handoff is None or not handoff.blame(
                plugin, args, packed, sent_packed, exc, outcome
            ):
                raise _too_large(spec, plugin, sent_packed, exc) from None


class _Blamed(Exception):
    """A producer's failure under "raise", found as the next plugin's call was made."""

    def __init__(self, failure: PluginFailure) -> None:
        self.failure = failure


class Handoff:
    """The arguments plugins changed during one hook call: which plugin changed each,
    and its value before, packed. A value the next plugin cannot take fails the plugin
    that produced it, and the call goes on with the value before."""

    __slots__ = ("changes", "default_policy", "spec")

    def __init__(self, spec: HookSpec, default_policy: OnFailure | None) -> None:
        self.spec = spec
        self.default_policy = default_policy
        #: (argument, the plugin that changed it, its packed value before), in order
        self.changes: list[tuple[str, Callee, bytes]] = []

    def take(
        self,
        plugin: Callee,
        args: dict[str, Any],
        packed: dict[str, bytes],
        value: Any,
        changed: dict[str, Any],
    ) -> str | None:
        """Apply what ``plugin`` answered for the plugins after it: its changes to
        mutable arguments and, in chain mode, its value as the first argument, each
        packed once. Why one cannot be passed on (then nothing is applied), or None.
        A value decoded from its reply may nest one level deeper than an argument."""
        spec = self.spec
        first = spec.args[0] if spec.mode == "chain" and value is not None else None
        name = first
        try:
            if changed:
                names = [n for n in changed if n in spec.mutable and n != first]
                packs = []
                for name in names:  # (``name`` says which one failed)
                    packs.append(pack_decoded(changed[name], MAX_VALUE_DEPTH))
                name = first
            if first is not None:
                value_packed = pack_decoded(value, MAX_VALUE_DEPTH)
        except (TypeError, ValueError, OverflowError) as exc:
            what = "the value it returned" if name == first else "the value it left"
            return (
                f"hook {spec.name!r}: {what} cannot be passed on as argument {name!r} "
                f"(it broke the contract of what may cross): {exc}"
            )
        if changed:
            for name, new_packed in zip(names, packs, strict=True):
                self.changes.append((name, plugin, packed[name]))
                apply_changes(args, {name: changed[name]})
                packed[name] = new_packed
        if first is not None:
            self.changes.append((first, plugin, packed[first]))
            args[first] = value
            packed[first] = value_packed
        return None

    def blame(
        self,
        plugin: Callee,
        args: dict[str, Any],
        packed: dict[str, bytes],
        sent: dict[str, bytes],
        exc: LocalProtocolError,
        outcome: Outcome,
    ) -> bool:
        """The Call to ``plugin`` with ``sent`` is over its frame cap (``exc``): fail the
        plugin that produced the largest argument value in it, if a plugin did (False if
        none did: the caller's arguments are too large). Under "skip" its changes still
        in force are undone, for the call to be made again; under "raise", _Blamed."""
        latest = {name: producer for name, producer, _ in self.changes}
        produced = [name for name in sent if name in latest]
        if not produced:
            return False
        name = max(produced, key=lambda n: len(sent[n]))
        producer = latest[name]
        failure = producer.refuse(
            self.spec.name,
            f"hook {self.spec.name!r}: the value it left as argument {name!r} "
            f"({len(sent[name])} bytes) cannot be sent to plugin {plugin.name!r}: "
            f"{exc.reason}",
        )
        if _policy(self.spec, producer, self.default_policy) == "raise":
            raise _Blamed(failure)
        outcome.failures.append(failure.report)
        if producer.name in outcome.called:
            outcome.called.remove(producer.name)
        for i in range(len(self.changes) - 1, -1, -1):  # its changes no later plugin redid
            arg, changer, before = self.changes[i]
            if changer is producer and latest[arg] is producer:
                del self.changes[i]
                apply_changes(args, {arg: unpack_as_peer(before)})
                packed[arg] = before
        return True


def _too_large(
    spec: HookSpec, plugin: Callee, sent: dict[str, bytes], exc: LocalProtocolError
) -> TypeError:
    """The caller's error for arguments over ``plugin``'s frame cap."""
    sizes = ", ".join(f"{name!r}: {len(value)} bytes" for name, value in sent.items())
    return TypeError(
        f"hook {spec.name!r}: the arguments ({sizes}) cannot be sent to plugin "
        f"{plugin.name!r}: {exc.reason} (its Limits.max_message_mb)"
    )


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
    raised: list[PluginFailure | TypeError] = []  # a TypeError first: the caller's

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
        except LocalProtocolError as exc:  # (raised after the task group, not in a group)
            raised.insert(0, _too_large(spec, plugin, accepted_packed, exc))
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
            except LocalProtocolError as exc:
                raise _too_large(spec, plugin, accepted_packed, exc) from None
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
