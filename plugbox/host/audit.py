"""The audit trail: a record of every registration and hook call, to the logger
``plugbox.audit`` and a JSON Lines file written one whole line per record. Schema and
guarantees: ``docs/AUDIT.md``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import PluginFailure
from ..protocol import LocalProtocolError, pack
from ..reports import bytes_as_json
from .calling import call_hook

if TYPE_CHECKING:
    from ..reports import Outcome
    from ..specs import HookSpec, OnFailure
    from .calling import HookCaller
    from .options import PluginOptions
    from .supervision import SentCall, SupervisedPlugin

__all__ = ["SCHEMA_VERSION", "AuditTrail", "audited_call_hook"]

#: the ``schema`` field of every record; bumped when a field changes meaning.
SCHEMA_VERSION = 1

logger = logging.getLogger("plugbox.audit")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_as_json(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return repr(value)


def _jsonable_keys(value: Any) -> Any:
    """msgpack maps may have keys JSON cannot (bytes): turn them into strings."""
    if isinstance(value, dict):
        return {
            (k if isinstance(k, (str, int, float, bool)) or k is None else repr(k)): _jsonable_keys(
                v
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_jsonable_keys(v) for v in value]
    return value


class AuditTrail:
    """Where a host's audit records go.

    ``path``: a JSON Lines file, appended to (created 0600 if missing); ``args``:
    include hook arguments, return values and changes in call records (off by default:
    they may hold user data).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, args: bool = False) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.args = args
        self.logger = logger
        self._fd: int | None = None
        if self.path is not None:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        self._calls = 0

    def active(self) -> bool:
        """Whether records go anywhere (checked once per hook call)."""
        return self._fd is not None or self.logger.isEnabledFor(logging.INFO)

    def next_call_id(self) -> int:
        """A new host-level call id (one per ``host.call``)."""
        self._calls += 1
        return self._calls

    def emit(self, record: dict[str, Any]) -> None:
        """Write one record to the file (one whole line, one write) and the logger."""
        record.setdefault("schema", SCHEMA_VERSION)
        if self._fd is not None:
            try:
                line = json.dumps(
                    record,
                    default=_json_default,
                    ensure_ascii=False,
                    separators=(",", ":"),
                    allow_nan=False,
                )
            except (TypeError, ValueError):
                line = json.dumps(
                    _jsonable_keys(record),
                    default=_json_default,
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
            data = (line + "\n").encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("%s", summary(record), extra={"audit": record})

    def close(self) -> None:
        """Close the file (records already written stay)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    # ---------------------------------------------------------------- records
    def registration(self, plugin: SupervisedPlugin, sha256: str | None) -> None:
        """The record of a plugin registered by ``host.add``."""
        o = plugin.options
        self.emit(
            {
                "event": "register",
                "time": time.time(),
                "host_pid": os.getpid(),
                "plugin": plugin.name,
                "ref": o.ref,
                "version": plugin.version,
                "distribution": (
                    {"name": plugin.dist_name, "version": plugin.dist_version}
                    if plugin.dist_name
                    else None
                ),
                "sha256": sha256,
                "sha256_pinned": o.sha256 is not None,
                "version_pins": [pin.spec for pin in o.pins],
                "hooks": dict(plugin.hooks),
                "limits": dataclasses.asdict(o.limits),
                "sandbox": dataclasses.asdict(o.sandbox),
                "layers": dict(plugin.layers),
                "pid": plugin.worker.pid if plugin.worker is not None else None,
                "problems": list(plugin.problems),
            }
        )

    def refusal(self, ref: str, exc: BaseException) -> None:
        """The record of a ``host.add`` that raised (a pin not met, a load error)."""
        self.emit(
            {
                "event": "refuse",
                "time": time.time(),
                "host_pid": os.getpid(),
                "ref": ref,
                "error": type(exc).__name__,
                "reason": getattr(exc, "reason", str(exc)),
            }
        )

    def removal(self, name: str, why: str) -> None:
        """The record of a plugin removed (``host.remove``) or closed with the host."""
        self.emit({"event": why, "time": time.time(), "host_pid": os.getpid(), "plugin": name})


def audited_call_hook(trail: AuditTrail) -> HookCaller:
    """``call_hook`` recording each plugin's invocation in ``trail``: what a host calls
    hooks with once auditing is on. The host installs it when it is made or a plugin is
    added, so the plain ``call_hook`` knows nothing of auditing. A call made while the
    records go nowhere (the logger turned down since) runs plain."""

    async def call_audited(
        spec: HookSpec,
        plugins: Sequence[SupervisedPlugin],
        args: dict[str, Any],
        default_policy: OnFailure | None = None,
        packed: dict[str, bytes] | None = None,
    ) -> Outcome:
        if not trail.active():
            return await call_hook(spec, plugins, args, default_policy, packed)
        audit = CallAudit(trail, spec, default_policy)
        audited = [AuditedPlugin(plugin, audit) for plugin in plugins]
        return await call_hook(spec, audited, args, default_policy, packed)

    return call_audited


class AuditedPlugin:
    """A plugin as an audited call sees it: ``invoke`` records what happened. ``send``
    gives None, so an observe hook invokes it too, and each record times its own
    plugin."""

    __slots__ = ("_audit", "_plugin")

    def __init__(self, plugin: SupervisedPlugin, audit: CallAudit) -> None:
        self._plugin = plugin
        self._audit = audit

    @property
    def name(self) -> str:
        return self._plugin.name

    @property
    def hooks(self) -> Mapping[str, Sequence[str]]:
        return self._plugin.hooks

    @property
    def closed(self) -> bool:
        return self._plugin.closed

    @property
    def options(self) -> PluginOptions:
        return self._plugin.options

    async def invoke(
        self, hook: str, args: dict[str, Any], packed: dict[str, bytes]
    ) -> tuple[Any, dict[str, Any]]:
        return await self._audit.invoke(self._plugin, args, packed)

    def send(self, hook: str, args: dict[str, Any], packed: dict[str, bytes]) -> None:
        return None

    async def finish(self, call: SentCall) -> tuple[Any, dict[str, Any]]:
        return await self._plugin.finish(call)

    def abandon(self, call: SentCall) -> None:
        self._plugin.abandon(call)

    def refuse(self, hook: str, detail: str) -> PluginFailure:
        failure = self._plugin.refuse(hook, detail)
        self._audit.refused(self._plugin, failure)
        return failure


class CallAudit:
    """The audit of one ``host.call``: one record per plugin invocation."""

    __slots__ = ("call_id", "default_policy", "spec", "trail")

    def __init__(self, trail: AuditTrail, spec: HookSpec, default_policy: OnFailure | None) -> None:
        self.trail = trail
        self.spec = spec
        self.default_policy = default_policy
        self.call_id = trail.next_call_id()

    async def invoke(
        self, plugin: SupervisedPlugin, args: dict[str, Any], packed: dict[str, bytes]
    ) -> tuple[Any, dict[str, Any]]:
        """``plugin.invoke`` with a record of what happened (sent with ``begin`` and
        read with ``finish``, to know which worker and wire id served it)."""
        spec = self.spec
        served: dict[str, Any] = {}
        started_at = time.time()
        started = time.monotonic()
        record: dict[str, Any] = {
            "event": "call",
            "time": started_at,
            "host_pid": os.getpid(),
            "call": self.call_id,
            "hook": spec.name,
            "mode": spec.mode,
            "plugin": plugin.name,
            "version": plugin.version,
            "bytes_in": sum(len(b) for b in packed.values()),
        }
        try:
            call = await plugin.begin(spec.name, args, packed)
            served = {"pid": call.worker.pid, "wire_id": call.call_id}
            value, changed = await plugin.finish(call)
        except PluginFailure as failure:
            report = failure.report
            record.update(
                served,
                duration=time.monotonic() - started,
                outcome=report.cause,
                detail=report.detail,
                bytes_out=0,
                returned=False,
                short_circuit=False,
                changed=[],
                policy=(
                    plugin.options.on_failure or self.default_policy or spec.default_on_failure
                ),
            )
            if report.pid is not None:
                record["pid"] = report.pid
            self._finish(record, args, None, None)
            raise
        except LocalProtocolError:  # over its frame cap: not sent, so not called (calling)
            raise
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            record.update(
                served,
                duration=time.monotonic() - started,
                outcome="cancelled" if cancelled else "error",
                detail="the caller was cancelled" if cancelled else f"{type(exc).__name__}: {exc}",
                bytes_out=0,
                returned=False,
                short_circuit=False,
                changed=[],
            )
            self._finish(record, args, None, None)
            raise
        kept = [name for name in changed if name in spec.mutable]
        out = len(pack(value)) + sum(len(pack(changed[name])) for name in changed)
        record.update(
            served,
            duration=time.monotonic() - started,
            outcome="ok",
            detail=None,
            bytes_out=out,
            returned=value is not None,
            short_circuit=spec.mode == "first_result" and value is not None,
            changed=kept,
        )
        self._finish(record, args, value, {k: changed[k] for k in kept})
        return value, changed

    def refused(self, plugin: SupervisedPlugin, failure: PluginFailure) -> None:
        """The record of a value ``plugin`` answered with (its call recorded ``ok``) that
        could not be passed on to the next plugin: a second record of its call, with
        the failure's cause."""
        report = failure.report
        spec = self.spec
        record: dict[str, Any] = {
            "event": "call",
            "time": report.time,
            "host_pid": os.getpid(),
            "call": self.call_id,
            "hook": spec.name,
            "mode": spec.mode,
            "plugin": plugin.name,
            "version": plugin.version,
            "bytes_in": 0,
            "pid": report.pid,
            "duration": 0.0,
            "outcome": report.cause,
            "detail": report.detail,
            "bytes_out": 0,
            "returned": False,
            "short_circuit": False,
            "changed": [],
            "policy": plugin.options.on_failure or self.default_policy or spec.default_on_failure,
        }
        self.trail.emit(record)

    def _finish(
        self,
        record: dict[str, Any],
        args: dict[str, Any],
        value: Any,
        changes: dict[str, Any] | None,
    ) -> None:
        if self.trail.args:
            record["args"] = dict(args)
            record["result"] = value
            record["changes"] = changes
        self.trail.emit(record)


def summary(record: Mapping[str, Any]) -> str:
    """The compact one-line message logged for a record."""
    event = record.get("event")
    if event == "call":
        extra = " short-circuit" if record.get("short_circuit") else ""
        if record.get("changed"):
            extra += f" changed={','.join(record['changed'])}"
        return (
            f"call #{record['call']} {record['hook']} -> {record['plugin']}: "
            f"{record['outcome']} in {record['duration'] * 1000:.1f} ms "
            f"({record['bytes_in']} B in, {record['bytes_out']} B out){extra}"
        )
    if event == "register":
        return (
            f"register {record['plugin']} {record['version'] or '(no version)'} from "
            f"{record['ref']} sha256={record['sha256'] or '-'} pid={record['pid']}"
        )
    if event == "refuse":
        return f"refuse {record['ref']}: {record['error']}: {record['reason']}"
    return f"{event} {record.get('plugin', '')}".rstrip()
